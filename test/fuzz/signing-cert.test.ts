import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import request from 'supertest';
import { fuzzParams, fuzzTimeout, guardUnhandledRejections } from '../helpers/fuzz';
import { makeKey, proofFor, type TestKey } from '../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../helpers/mayfly';

const EMAIL = 'fuzz@example.com';
const RUNS = 150;

guardUnhandledRejections();

let ca: TestCa;
let key: TestKey;
let token: string;
let proof: Buffer;
beforeAll(async () => {
  // Rate limits off: the fuzzer sends one identity hundreds of times; a 429 would hide
  // whether the unchanged body still gets its certificate.
  ca = await startTestCa({ env: { MAYFLY_RATELIMITS: 'off' } });
  key = makeKey('p256');
  token = await ca.issuer.mintEmail(EMAIL);
  proof = proofFor(key, EMAIL);
});
afterAll(() => ca.close());

type Json = unknown;

/** A path into a JSON value and what to do there. */
type Mutation =
  { kind: 'delete'; path: number[] } | { kind: 'replace'; path: number[]; value: Json };

const hugeString = fc.integer({ min: 10_000, max: 200_000 }).map((n) => 'A'.repeat(n));
const badBase64 = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.constantFrom('====', 'A', 'AB=', '!!!', '\u0000', 'Zm9v\n\nYmFy', '-_-_'),
);
const replacement: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  badBase64,
  hugeString,
  fc.constantFrom(null, true, 0, -1, 1e308, [], {}, '', ' '),
  fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      fc.constant('x'),
      fc.dictionary(fc.string(), tie('node')),
    ),
  })).node,
);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('delete' as const),
    path: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant('replace' as const),
    path: fc.array(fc.nat(), { maxLength: 4 }),
    value: replacement,
  }),
);

/** Applies a mutation: each path step picks a key (by index, modulo) of the current object. */
function mutate(value: Json, m: Mutation): Json {
  const copy = structuredClone(value) as Json;
  if (m.path.length === 0) return m.kind === 'replace' ? m.value : copy;
  let node = copy;
  for (let i = 0; i < m.path.length; i++) {
    if (node === null || typeof node !== 'object') return copy;
    const record = node as Record<string, Json>;
    const keys = Object.keys(record);
    if (keys.length === 0) return copy;
    const k = keys[m.path[i]! % keys.length]!;
    if (i === m.path.length - 1) {
      if (m.kind === 'delete') delete record[k];
      else record[k] = m.value;
    } else node = record[k];
  }
  return copy;
}

function isUnchanged(a: Json, b: Json): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

interface Answer {
  status: number;
  body: unknown;
  text: string;
}

/** The contract every answer meets: a Fulcio-style 4xx refusal, or a certificate for EMAIL. */
function expectFulcioAnswer(res: Answer, before: number, okStatus: 200 | 201): void {
  expect(res.status).toBeLessThan(500);
  if (res.status === okStatus) {
    const pem =
      okStatus === 200
        ? (res.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } })
            .signedCertificateDetachedSct.chain.certificates[0]!
        : res.text.split(/(?<=-----END CERTIFICATE-----)\n/)[0]!;
    expect(new X509Certificate(pem).subjectAltName).toBe(`email:${EMAIL}`);
    expect(ca.signCount()).toBe(before + 1);
    return;
  }
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(ca.signCount()).toBe(before);
  expect(res.body).toEqual({ code: expect.any(Number), message: expect.any(String), details: [] });
  expect(Number.isInteger((res.body as { code: number }).code)).toBe(true);
}

async function postV2(body: Json): Promise<Answer> {
  const before = ca.signCount();
  const res = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .set('Content-Type', 'application/json')
    .send(JSON.stringify(body));
  expectFulcioAnswer(res, before, 200);
  return res;
}

async function postV1(body: Json, auth: string | undefined): Promise<Answer> {
  const before = ca.signCount();
  let req = request(ca.app.api).post('/api/v1/signingCert').set('Content-Type', 'application/json');
  if (auth !== undefined) req = req.set('Authorization', auth);
  const res = await req.send(JSON.stringify(body));
  expectFulcioAnswer(res, before, 201);
  return res;
}

describe('POST /api/v2/signingCert under fuzzing', () => {
  test(
    'answers any JSON value with a Fulcio-style 4xx and issues nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (body) => {
          const res = await postV2(body);
          expect(res.status).toBeGreaterThanOrEqual(400);
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 20),
  );

  test(
    'answers any mutation of a valid body with a 4xx or a certificate for the token’s email',
    async () => {
      const valid = v2Body(token, key.pem, proof);
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (ms) => {
          const body = ms.reduce<Json>(mutate, valid);
          const res = await postV2(body);
          if (isUnchanged(body, valid)) expect(res.status).toBe(200);
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 30),
  );

  test(
    'answers arbitrary bytes sent as JSON with a Fulcio-style 4xx',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 200 }), async (raw) => {
          const before = ca.signCount();
          const res = await request(ca.app.api)
            .post('/api/v2/signingCert')
            .set('Content-Type', 'application/json')
            .send(raw);
          expect(res.status).toBeGreaterThanOrEqual(400);
          expectFulcioAnswer(res, before, 200);
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 20),
  );
});

/** Found by the CSR fuzzer: a CSR whose signatureAlgorithm is a GeneralizedTime of garbage. */
const CSR_WITH_BAD_TIME = [
  '-----BEGIN CERTIFICATE REQUEST-----',
  'MIGPMEMCAQAwEjEQMA4GA1UEAwwHaWdub3JlZDAqMAUGAytlcAMhAADswjr8w/Hp',
  'JNRkq+yN/eK71UMVPgDhNPeNf9n4qklgGDAFBgMrZXADQQB34dEZfRL1YSPOFeuO',
  '7VZ0r4ykJVWa6KPQWkc+qEopF7MVZ1ekt6jxyfPxAR0MHaYu2CETqI6B1JEJEYQZ',
  '1L4E',
  '-----END CERTIFICATE REQUEST-----',
  '',
].join('\n');

describe('POST /api/v2/signingCert regressions found by fuzzing', () => {
  test('refuses a CSR whose DER asn1js cannot decode with a 400, not a 500', async () => {
    const res = await postV2({
      credentials: { oidcIdentityToken: token },
      certificateSigningRequest: Buffer.from(CSR_WITH_BAD_TIME).toString('base64'),
    });
    expect(res.status).toBe(400);
  });
});

describe('POST /api/v1/signingCert under fuzzing', () => {
  test(
    'answers any JSON value with a Fulcio-style 4xx and issues nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (body) => {
          const res = await postV1(body, `Bearer ${token}`);
          expect(res.status).toBeGreaterThanOrEqual(400);
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 20),
  );

  test(
    'answers any mutation of a valid body or header with a 4xx or a certificate for the token’s email',
    async () => {
      const valid = v1Body(key.pem, proof);
      const auth = fc.oneof(
        fc.constant(`Bearer ${token}`),
        fc.constant(undefined),
        fc.string({ unit: 'grapheme-ascii', maxLength: 60 }),
        fc.constantFrom(
          'Bearer',
          'Bearer ',
          `bearer ${token}`,
          `Basic ${token}`,
          `Bearer  ${token}`,
        ),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { maxLength: 3 }), auth, async (ms, header) => {
          const body = ms.reduce<Json>(mutate, valid);
          const res = await postV1(body, header);
          if (isUnchanged(body, valid) && header === `Bearer ${token}`) {
            expect(res.status).toBe(201);
          }
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 30),
  );
});
