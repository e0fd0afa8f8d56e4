import fc from 'fast-check';
import request from 'supertest';
import {
  flipBit,
  fuzzParams,
  fuzzTimeout,
  guardUnhandledRejections,
  named,
  type Mutation,
} from '../helpers/fuzz';
import { makeKey, proofFor, type TestKey } from '../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../helpers/mayfly';

const EMAIL = 'fuzz@example.com';
const RUNS = 200;
const REFUSAL = {
  code: 3,
  message: 'There was an error processing the identity token',
  details: [],
};

guardUnhandledRejections();

let ca: TestCa;
let key: TestKey;
let token: string;
let proof: Buffer;
beforeAll(async () => {
  ca = await startTestCa({ env: { MAYFLY_RATELIMITS: 'off' } });
  key = makeKey('p256');
  token = await ca.issuer.mintEmail(EMAIL);
  proof = proofFor(key, EMAIL);
});
afterAll(() => ca.close());

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const segments = () => token.split('.') as [string, string, string];

type TokenMutation = Mutation<string>;

/** Decodes a JSON segment; a segment an earlier mutation broke leaves the token alone. */
function decodeJson(segment: string | undefined): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment ?? '', 'base64url').toString());
    return value !== null && typeof value === 'object'
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Ways to damage a compact JWS; each yields a token string. */
const tokenMutation: fc.Arbitrary<TokenMutation> = fc.oneof(
  // A bit flip in the decoded bytes of one segment, re-encoded.
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.nat(), fc.nat(7)).map(([seg, i, bit]) =>
    named<string>(`flip segment ${seg} byte ${i} bit ${bit}`, (t) => {
      const parts = t.split('.');
      if (parts[seg] === undefined) return t;
      parts[seg] = b64url(flipBit(Buffer.from(parts[seg], 'base64url'), i, bit));
      return parts.join('.');
    }),
  ),
  // A character of the compact form replaced.
  fc
    .tuple(fc.nat(), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }))
    .map(([i, c]) =>
      named<string>(`char ${i}=${JSON.stringify(c)}`, (t) => {
        const at = i % Math.max(t.length, 1);
        return t.slice(0, at) + c + t.slice(at + 1);
      }),
    ),
  // Segments swapped, dropped or duplicated.
  fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 5 }).map((order) =>
    named<string>(`segments [${order.join(',')}]`, (t) => {
      const parts = t.split('.');
      return order.map((i) => parts[i] ?? '').join('.');
    }),
  ),
  // Extra dots inserted.
  fc.tuple(fc.nat(), fc.constantFrom('.', '..')).map(([i, dots]) =>
    named<string>(`insert ${JSON.stringify(dots)} at ${i}`, (t) => {
      const at = i % Math.max(t.length, 1);
      return t.slice(0, at) + dots + t.slice(at);
    }),
  ),
  // Truncated or extended.
  fc
    .nat()
    .map((n) => named<string>(`truncate to ${n}`, (t) => t.slice(0, n % Math.max(t.length, 1)))),
  fc
    .string({ minLength: 1, maxLength: 2000 })
    .map((extra) =>
      named<string>(`append ${JSON.stringify(extra.slice(0, 20))}`, (t) => t + extra),
    ),
  // A header with another alg (none, HS256 with the key as secret, ...) and the old signature.
  fc.constantFrom('none', 'HS256', 'RS256', 'ES384', 'EdDSA', '', 'es256').map((alg) =>
    named<string>(`alg=${alg}`, (t) => {
      const [h, p, s] = t.split('.');
      const header = decodeJson(h);
      if (!header) return t;
      return [b64url(JSON.stringify({ ...header, alg })), p, alg === 'none' ? '' : s].join('.');
    }),
  ),
  // A payload with changed claims, re-encoded, under the original signature.
  fc
    .tuple(
      fc.constantFrom('email', 'sub', 'email_verified', 'iss', 'aud', 'exp', 'iat', 'nbf', 'extra'),
      fc.jsonValue({ maxDepth: 2 }),
    )
    .map(([claim, value]) =>
      named<string>(`claim ${claim}=${JSON.stringify(value)}`, (t) => {
        const [h, p, s] = t.split('.');
        const payload = decodeJson(p);
        if (!payload) return t;
        return [h, b64url(JSON.stringify({ ...payload, [claim]: value })), s].join('.');
      }),
    ),
);

describe('identity tokens under fuzzing', () => {
  test(
    'refuses every changed token with the identity-token error and issues nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(tokenMutation, { minLength: 1, maxLength: 3 }), async (ms) => {
          const mutated = ms.reduce((t, m) => m(t), token);
          const before = ca.signCount();
          const res = await request(ca.app.api)
            .post('/api/v2/signingCert')
            .send(v2Body(mutated, key.pem, proof));
          if (mutated === token) {
            expect(res.status).toBe(200);
            return;
          }
          expect({ status: res.status, body: res.body as unknown }).toEqual({
            status: 400,
            body: REFUSAL,
          });
          expect(ca.signCount()).toBe(before);
        }),
        fuzzParams(RUNS),
      );
    },
    fuzzTimeout(RUNS, 20),
  );

  test('the unchanged token still gets its certificate', async () => {
    expect(segments()).toHaveLength(3);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proof));
    expect(res.status).toBe(200);
  });
});
