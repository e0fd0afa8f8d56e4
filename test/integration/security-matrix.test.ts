import { createPrivateKey, createPublicKey, type JsonWebKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { createAuditLogger } from '../../services/ca/audit/audit-log';
import { systemClock } from '../../services/common/clock';
import { createLogger } from '../../services/common/logger';
import type { OidcIssuerConfig } from '../../services/ca/config/identity-config';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../../services/common/signer/signer';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import { guardUnhandledRejections } from '../helpers/fuzz';
import { makeCsr, makeKey, proofFor, toPem, weakKeys, type TestKey } from '../helpers/keys';
import { startTestCa, v1Body, type TestCa } from '../helpers/mayfly';
import {
  SecretLedger,
  algNoneToken,
  hs256Token,
  logSink,
  postOverNetwork,
  rawExchange,
  recordingFetch,
  type HttpAnswer,
} from '../helpers/security';

/**
 * The security matrix (issue #8): hostile requests against a real mayfly — the real dev
 * OIDC issuer over HTTP on 127.0.0.1, real jose, pkijs and node:crypto — each sent to both
 * API versions and through both routers: the Express app alone (supertest on
 * `app.api.express`) and the node:http fast path over the network (`app.api` listening on
 * 127.0.0.1). Every row asserts the exact Fulcio-compatible status and body and that the
 * CA signed nothing. Every answer and every log line (operational and audit) is kept, and
 * the last test scans them all for any token, proof or key the suite sent, and for the CA
 * private key.
 */

guardUnhandledRejections();

const EMAIL_A = 'alice@example.com';
const EMAIL_B = 'bob@example.com';
const SUBJECT_B = 'bob-subject-0042';
const EKS = 'https://oidc.eks.*.amazonaws.com/id/*';
const PATHS = { v1: '/api/v1/signingCert', v2: '/api/v2/signingCert' } as const;
const MAX_REQUEST_BYTES = 4 * 1024 * 1024; // the most the config allows (Fulcio's cap)
const EIGHT_MB = 8 * 1024 * 1024;

const refusal = (message: string) => ({ code: 3, message, details: [] });
// Fulcio's messages (fulcio-reference §1.5), as error-table.test.ts pins them.
const TOKEN_ERROR = refusal('There was an error processing the identity token');
const CSR_ERROR = refusal('The certificate signing request could not be parsed');
const KEY_ERROR = refusal('The public key supplied in the request could not be parsed');
const INSECURE = refusal('The public key supplied in the request is insecure');
const SIGNATURE = refusal('The signature supplied in the request could not be verified');
const MALFORMED = refusal('The request body could not be parsed');
const TOO_LARGE = refusal('http: request body too large');

type Transport = 'Express' | 'fast path';
type Version = keyof typeof PATHS;
const TRANSPORTS: readonly Transport[] = ['Express', 'fast path'];
const VERSIONS: readonly Version[] = ['v2', 'v1'];

const operational = logSink();
const audit = logSink();
const secrets = new SecretLedger();
const recorder = recordingFetch();
/** Every answer the CA gave during the matrix, for the secret scan. */
const answers: { readonly row: string; readonly status: number; readonly text: string }[] = [];
/** Row → the answers it got, one per transport and version (for the report). */
const observed = new Map<string, Set<string>>();
/** Requests that reached the issuers that must never be contacted. */
const outbound = { trap: 0, tenants: 0 };

let ca: TestCa;
/** Never configured: any request reaching it is an SSRF. */
let trap: DevIssuer;
/** Serves one issuer per path (`<url>/tenant-x`): the meta issuer's target. */
let tenants: DevIssuer;
/** A proof from an earlier, successful request (identity A), for the replay rows. */
let earlier: { key: TestKey; proof: Buffer };
let limitsDir: string | undefined;

// ---------------------------------------------------------------------------------------
// Requests

interface Attempt {
  readonly token: string;
  readonly key:
    | { readonly pem: string; readonly proof: Buffer }
    /** `published`: public by design (the CA's own certificate), no secret to look for. */
    | { readonly csr: string; readonly published?: boolean };
}

/** The wire form of an attempt: v2 carries the token in the body, v1 in Authorization. */
function wire(
  version: Version,
  attempt: Attempt,
): { body: string; headers: Record<string, string> } {
  const { token, key } = attempt;
  secrets.token(token);
  if ('pem' in key) {
    secrets.publicKey(key.pem, 'submitted public key');
    secrets.proof(key.proof);
  } else if (!key.published) secrets.pem(key.csr, 'submitted CSR');
  const csr = 'csr' in key ? Buffer.from(key.csr).toString('base64') : undefined;
  if (version === 'v2') {
    const body = {
      credentials: { oidcIdentityToken: token },
      ...('pem' in key
        ? {
            publicKeyRequest: {
              publicKey: { algorithm: 'ECDSA', content: key.pem },
              proofOfPossession: key.proof.toString('base64'),
            },
          }
        : { certificateSigningRequest: csr }),
    };
    return { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
  }
  const body = 'pem' in key ? v1Body(key.pem, key.proof) : { certificateSigningRequest: csr };
  return {
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  };
}

/** Sends one request through a router, keeping the answer for the scan. */
async function send(
  transport: Transport,
  version: Version,
  body: string | Buffer,
  headers: Record<string, string>,
  row: string,
  options: { readonly chunked?: boolean } = {},
): Promise<HttpAnswer> {
  let answer: HttpAnswer;
  if (transport === 'fast path') {
    answer = await postOverNetwork(ca.url, PATHS[version], body, headers, options);
  } else {
    const req = request(ca.app.api.express).post(PATHS[version]).set(headers);
    // superagent would JSON-serialise a Buffer sent as application/json: send its bytes.
    if (Buffer.isBuffer(body)) req.serialize((bytes: unknown) => bytes as string);
    const res = await req.send(body);
    answer = {
      status: res.status,
      contentType: res.headers['content-type'] as string | undefined,
      text: res.text,
    };
  }
  answers.push({ row, status: answer.status, text: answer.text });
  return answer;
}

function note(row: string, answer: HttpAnswer): void {
  let message: string;
  if (answer.status === 200 || answer.status === 201) message = 'certificate chain';
  else {
    try {
      message = (JSON.parse(answer.text) as { message: string }).message;
    } catch {
      message = answer.text.slice(0, 40);
    }
  }
  const set = observed.get(row) ?? new Set<string>();
  set.add(`${answer.status} ${message}`);
  observed.set(row, set);
}

/** Sends a body and asserts the exact status and JSON body, and that nothing was signed. */
async function expectRawRefusal(
  transport: Transport,
  version: Version,
  body: string | Buffer,
  headers: Record<string, string>,
  expected: { code: number; message: string; details: never[] },
  row: string,
  options: { readonly chunked?: boolean } = {},
): Promise<void> {
  const before = ca.signCount();
  const answer = await send(transport, version, body, headers, row, options);
  note(row, answer);
  expect({ status: answer.status, body: JSON.parse(answer.text) as unknown }).toEqual({
    status: 400,
    body: expected,
  });
  expect(answer.contentType).toBe('application/json');
  expect(ca.signCount()).toBe(before);
}

async function expectRefusal(
  transport: Transport,
  version: Version,
  attempt: Attempt,
  expected: { code: number; message: string; details: never[] },
  row: string,
): Promise<void> {
  const { body, headers } = wire(version, attempt);
  await expectRawRefusal(transport, version, body, headers, expected, row);
}

/** A valid request is answered with a certificate (200 JSON for v2, 201 PEM for v1). */
async function expectIssued(
  transport: Transport,
  version: Version,
  attempt: Attempt,
  row: string,
): Promise<void> {
  const before = ca.signCount();
  const { body, headers } = wire(version, attempt);
  const answer = await send(transport, version, body, headers, row);
  note(row, answer);
  if (version === 'v2') {
    expect(answer.status).toBe(200);
    const parsed = JSON.parse(answer.text) as {
      signedCertificateDetachedSct: { chain: { certificates: string[] } };
    };
    expect(parsed.signedCertificateDetachedSct.chain.certificates).toHaveLength(3);
  } else {
    expect(answer.status).toBe(201);
    expect(answer.contentType).toBe('application/pem-certificate-chain');
    expect(answer.text.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(3);
  }
  expect(ca.signCount()).toBe(before + 1);
}

// ---------------------------------------------------------------------------------------
// Keys and tokens

/** A fresh client key, its secrets in the ledger (public half marked certified or not). */
function clientKey(kind: Parameters<typeof makeKey>[0] = 'p256', certified = false): TestKey {
  const key = makeKey(kind);
  secrets.keyPair(key, `client ${kind}`, certified);
  return key;
}

function weakKey(make: () => TestKey, label: string): TestKey {
  const key = make();
  secrets.keyPair(key, label);
  return key;
}

/** A P-256 SPKI whose point is off the curve (y changed), and the key it came from. */
function offCurve(): { pem: string; spki: Buffer; signer: TestKey } {
  const signer = clientKey();
  const spki = Buffer.from(signer.publicKey.export({ type: 'spki', format: 'der' }));
  spki[spki.length - 1] = spki[spki.length - 1]! ^ 0x01;
  const pem = toPem('PUBLIC KEY', spki);
  secrets.pem(pem, 'off-curve public key');
  return { pem, spki, signer };
}

const tokenA = () => ca.issuer.mintEmail(EMAIL_A);

function now(): number {
  return Math.floor(Date.now() / 1000);
}

/** Claims the dev issuer would sign for identity A. */
function claimsA(): Record<string, unknown> {
  return {
    iss: ca.issuer.url,
    aud: 'sigstore',
    sub: EMAIL_A,
    email: EMAIL_A,
    email_verified: true,
    iat: now(),
    exp: now() + 300,
  };
}

/** A valid key and proof for identity A, with a token of the row's choosing. */
function withGoodKey(token: string): Attempt {
  const key = clientKey();
  return { token, key: { pem: key.pem, proof: proofFor(key, EMAIL_A) } };
}

interface IssuerJwk extends JsonWebKey {
  readonly kid: string;
  readonly alg: string;
}

async function issuerJwks(): Promise<IssuerJwk[]> {
  const res = await fetch(`${ca.issuer.url}/keys`);
  return ((await res.json()) as { keys: IssuerJwk[] }).keys;
}

function jwkPem(jwk: JsonWebKey): string {
  return createPublicKey({ key: jwk, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
}

// ---------------------------------------------------------------------------------------

beforeAll(async () => {
  trap = await startDevIssuer({ onRequest: () => outbound.trap++ });
  tenants = await startDevIssuer({ tenants: true, onRequest: () => outbound.tenants++ });

  // The CA keys are made here so the scan can look for them.
  const root = generateEphemeralKey();
  const intermediate = generateEphemeralKey();
  const signer = await createEphemeralChain(root, intermediate, systemClock);
  for (const [label, key] of [
    ['CA root private key', root],
    ['CA issuing private key', intermediate],
  ] as const) {
    secrets.privateKey(createPrivateKey(key.exportForWorkers(signer.chain).key), label);
  }

  // Per-client-ip limits generous enough for the whole matrix from one address.
  limitsDir = mkdtempSync(join(tmpdir(), 'mayfly-security-'));
  const limits = join(limitsDir, 'ratelimits.yaml');
  writeFileSync(
    limits,
    'defaults:\n' +
      '  per-client-ip: { burst: 100000, count: 100000, period: 1s }\n' +
      '  per-identity: { burst: 1000, count: 1000, period: 1s }\n',
  );

  const meta = (url: string): [string, OidcIssuerConfig] => [
    url,
    { ...tenants.issuerConfig, issuerUrl: url },
  ];
  ca = await startTestCa({
    env: { MAYFLY_MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES), MAYFLY_RATELIMITS: limits },
    metaIssuers: new Map([meta(`${tenants.url}/tenant-*`), meta(EKS)]),
    logger: createLogger('debug', operational.stream),
    auditLogger: createAuditLogger({ destination: audit.stream }),
    overrides: { fetch: recorder.fetch, signer },
  });
  await ca.listen();

  // An earlier request, issued: its proof is what the replay rows resend.
  const key = clientKey('p256', true);
  earlier = { key, proof: proofFor(key, EMAIL_A) };
  await expectIssued(
    'fast path',
    'v2',
    { token: await tokenA(), key: { pem: key.pem, proof: earlier.proof } },
    'setup: the request whose proof is replayed',
  );
});

afterAll(async () => {
  const summary = process.env.SECURITY_MATRIX_SUMMARY;
  if (summary) {
    const rows = [...observed].map(([row, seen]) => ({ row, answers: [...seen] }));
    writeFileSync(summary, JSON.stringify(rows, null, 2));
  }
  await ca?.close();
  await trap?.close();
  await tenants?.close();
  if (limitsDir) rmSync(limitsDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------

describe.each(TRANSPORTS)('through the %s', (transport) => {
  describe.each(VERSIONS)('on %s', (version) => {
    const refuse = (row: string, attempt: Attempt, expected = TOKEN_ERROR) =>
      expectRefusal(transport, version, attempt, expected, row);

    describe('identity token', () => {
      test('refuses an unsigned token (alg: none), issuing nothing', async () => {
        await refuse('alg none', withGoodKey(algNoneToken(claimsA())));
      });

      test.each([
        ['the RS256 key as SPKI PEM', 'RS256', (jwk: IssuerJwk) => jwkPem(jwk)],
        ['the RS256 key as JWK JSON', 'RS256', (jwk: IssuerJwk) => JSON.stringify(jwk)],
        ['the ES256 key as SPKI PEM', 'ES256', (jwk: IssuerJwk) => jwkPem(jwk)],
      ])(
        'refuses HS256 MAC-ed with the issuer public key (%s) as the secret, issuing nothing',
        async (_form, alg, secretOf) => {
          const jwk = (await issuerJwks()).find((k) => k.alg === alg)!;
          const token = hs256Token(claimsA(), secretOf(jwk), jwk.kid);
          await refuse('HS256 with the issuer public key as secret', withGoodKey(token));
        },
      );

      test('refuses a token from an issuer that is not configured, contacting nobody', async () => {
        const calls = recorder.calls.length;
        const trapRequests = outbound.trap;
        await refuse('unconfigured issuer', withGoodKey(await trap.mintEmail(EMAIL_A)));
        expect(recorder.calls.slice(calls)).toEqual([]);
        expect(outbound.trap).toBe(trapRequests);
      });

      test('refuses a token naming the configured issuer but signed by another key, issuing nothing', async () => {
        const forged = await trap.mintEmail(EMAIL_A, { issuer: ca.issuer.url });
        await refuse('configured iss, foreign signature', withGoodKey(forged));
      });

      test.each([
        [
          'the GHSA-59jp shape (localhost with the pattern in the query)',
          () => 'http://localhost?issuer=https://oidc.eks.us-west-2.amazonaws.com/id/X',
        ],
        [
          'an unconfigured host with the EKS pattern in the query',
          () => `${trap.url}/?https://oidc.eks.us-west-2.amazonaws.com/id/X`,
        ],
        [
          'an unconfigured host with the tenant pattern in the query',
          () => `${trap.url}/?${tenants.url}/tenant-a`,
        ],
        ['a path escape after the tenant', () => `${tenants.url}/tenant-a/../../evil`],
        ['a dot inside the tenant wildcard', () => `${tenants.url}/tenant-a.evil.example`],
        ['a query after the tenant', () => `${tenants.url}/tenant-a?next=${trap.url}`],
        ['a newline after the tenant', () => `${tenants.url}/tenant-a\n`],
        [
          'user info after the EKS id',
          () => 'https://oidc.eks.us-west-2.amazonaws.com/id/X@203.0.113.7',
        ],
        [
          'an extra host label in the EKS wildcard',
          () => 'https://oidc.eks.us-west-2.evil.example.amazonaws.com/id/X',
        ],
      ])('refuses the meta-issuer bypass %s, contacting nobody', async (_name, issuer) => {
        const calls = recorder.calls.length;
        const before = { ...outbound };
        const token = await trap.mintEmail(EMAIL_A, { issuer: issuer() });
        await refuse('meta-issuer bypass strings', withGoodKey(token));
        expect(recorder.calls.slice(calls)).toEqual([]);
        expect(outbound).toEqual(before);
      });

      test('refuses a token whose audience is not sigstore, issuing nothing', async () => {
        await refuse(
          'wrong audience',
          withGoodKey(await ca.issuer.mintEmail(EMAIL_A, { audience: 'not-sigstore' })),
        );
      });

      test('refuses an expired token, issuing nothing', async () => {
        await refuse('expired', withGoodKey(await ca.issuer.mintEmail(EMAIL_A, { expiresIn: -1 })));
      });

      test('refuses a token not valid before more than five minutes from now, issuing nothing', async () => {
        const token = await ca.issuer.mint({
          sub: EMAIL_A,
          email: EMAIL_A,
          email_verified: true,
          nbf: now() + 400,
        });
        await refuse('nbf beyond the 5-minute leeway', withGoodKey(token));
      });

      test('refuses a token without exp, issuing nothing', async () => {
        await refuse(
          'missing exp',
          withGoodKey(await ca.issuer.mintEmail(EMAIL_A, { omitExp: true })),
        );
      });

      test('refuses a token of 10,000 dots, issuing nothing', async () => {
        await refuse('10,000 dots', withGoodKey('.'.repeat(10_000)));
      });
    });

    describe('proof of possession and keys', () => {
      test("refuses a token for A with a proof over B's email, issuing nothing", async () => {
        const key = clientKey();
        await refuse(
          "proof over identity B's email",
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(key, EMAIL_B) } },
          SIGNATURE,
        );
      });

      test("refuses a token for A with a proof over B's subject, issuing nothing", async () => {
        const key = clientKey();
        await refuse(
          "proof over identity B's subject",
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(key, SUBJECT_B) } },
          SIGNATURE,
        );
      });

      test('refuses a proof made by a different key than the one submitted, issuing nothing', async () => {
        const key = clientKey();
        const other = clientKey();
        await refuse(
          'proof by a different key',
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(other, EMAIL_A) } },
          SIGNATURE,
        );
      });

      test('refuses an earlier request’s proof replayed with another public key, issuing nothing', async () => {
        const key = clientKey();
        await refuse(
          'replayed proof, another key',
          { token: await tokenA(), key: { pem: key.pem, proof: earlier.proof } },
          SIGNATURE,
        );
      });

      test('refuses an earlier request’s proof and key replayed with a token for B, issuing nothing', async () => {
        await refuse(
          'replayed proof and key, token for B',
          {
            token: await ca.issuer.mintEmail(EMAIL_B),
            key: { pem: earlier.key.pem, proof: earlier.proof },
          },
          SIGNATURE,
        );
      });

      test.each([
        ['RSA-1024', () => weakKey(weakKeys.rsa1024, 'RSA-1024')],
        ['RSA with e = 3', () => weakKey(weakKeys.rsaExponent3, 'RSA e=3')],
        ['P-224', () => weakKey(weakKeys.p224, 'P-224')],
      ])('refuses a %s public key as insecure, issuing nothing', async (name, make) => {
        const key = make();
        await refuse(
          `weak key (PEM): ${name}`,
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(key, EMAIL_A) } },
          INSECURE,
        );
      });

      test('refuses an off-curve P-256 public key as insecure, issuing nothing', async () => {
        const { pem, signer } = offCurve();
        await refuse(
          'weak key (PEM): off-curve P-256',
          { token: await tokenA(), key: { pem, proof: proofFor(signer, EMAIL_A) } },
          INSECURE,
        );
      });

      test.each([
        ['RSA-1024', () => makeCsr(weakKey(weakKeys.rsa1024, 'RSA-1024'))],
        ['RSA with e = 3', () => makeCsr(weakKey(weakKeys.rsaExponent3, 'RSA e=3'))],
        ['P-224', () => makeCsr(weakKey(weakKeys.p224, 'P-224'))],
        [
          'off-curve P-256',
          () => {
            const { spki, signer } = offCurve();
            return makeCsr(signer, { spki });
          },
        ],
      ])('refuses a CSR for a %s key as insecure, issuing nothing', async (name, csr) => {
        await refuse(
          `weak key (CSR): ${name}`,
          { token: await tokenA(), key: { csr: csr() } },
          INSECURE,
        );
      });

      test('refuses a CSR whose self-signature is broken, issuing nothing', async () => {
        const csr = makeCsr(clientKey(), { corrupt: true });
        await refuse(
          'CSR with a broken signature',
          { token: await tokenA(), key: { csr } },
          SIGNATURE,
        );
      });

      test('refuses the CA certificate sent in place of a CSR, issuing nothing', async () => {
        const issuing = ca.app.ca.trustBundle()[0]![0]!;
        await refuse(
          'CA certificate as the CSR',
          { token: await tokenA(), key: { csr: toPem('CERTIFICATE', issuing), published: true } },
          CSR_ERROR,
        );
      });

      test('refuses a private key sent in place of the public key, issuing nothing', async () => {
        const key = clientKey();
        const pem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
        await refuse(
          'private key as the public key',
          { token: await tokenA(), key: { pem, proof: proofFor(key, EMAIL_A) } },
          KEY_ERROR,
        );
      });
    });

    describe('transport', () => {
      const json = { 'content-type': 'application/json' };

      /** A valid request through the same router right after a hostile one. */
      const stillServes = async (row: string) => {
        const key = clientKey('p256', true);
        await expectIssued(
          transport,
          version,
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(key, EMAIL_A) } },
          `${row} (next valid request)`,
        );
      };

      test('refuses an 8 MB body as too large, issuing nothing, and serves the next request', async () => {
        const token = await tokenA();
        secrets.token(token);
        const body = JSON.stringify({
          credentials: { oidcIdentityToken: token },
          padding: 'x'.repeat(EIGHT_MB),
        });
        const headers = version === 'v1' ? { ...json, authorization: `Bearer ${token}` } : json;
        await expectRawRefusal(transport, version, body, headers, TOO_LARGE, '8 MB body');
        await stillServes('8 MB body');
      });

      if (transport === 'fast path') {
        test('refuses an 8 MB chunked body (no Content-Length) as too large, and serves the next request', async () => {
          const body = Buffer.alloc(EIGHT_MB, 0x20);
          await expectRawRefusal(transport, version, body, json, TOO_LARGE, '8 MB chunked body', {
            chunked: true,
          });
          await stillServes('8 MB chunked body');
        });
      }

      test('refuses a gzip bomb (8 MB inflated) as too large, issuing nothing', async () => {
        const bomb = gzipSync(Buffer.from(`{"padding":"${'x'.repeat(EIGHT_MB)}"}`));
        expect(bomb.length).toBeLessThan(64 * 1024);
        await expectRawRefusal(
          transport,
          version,
          bomb,
          { ...json, 'content-encoding': 'gzip' },
          TOO_LARGE,
          'gzip bomb',
        );
      });

      test('refuses a body that claims gzip but is not gzip as unparsable, issuing nothing', async () => {
        const token = await tokenA();
        secrets.token(token);
        await expectRawRefusal(
          transport,
          version,
          Buffer.from(JSON.stringify({ credentials: { oidcIdentityToken: token } })),
          { ...json, 'content-encoding': 'gzip' },
          MALFORMED,
          'body that claims gzip but is not',
        );
      });

      const DEPTH = 100_000;
      const arrays = '['.repeat(DEPTH) + ']'.repeat(DEPTH);
      const objects = '{"a":'.repeat(DEPTH) + '1' + '}'.repeat(DEPTH);
      // v2 nests inside the token; v1 (whose token is a header) inside the key.
      const inKnownString = (deep: string) =>
        version === 'v2'
          ? `{"credentials":{"oidcIdentityToken":${deep}}}`
          : `{"publicKey":{"content":${deep}}}`;
      const inKnownObject = (deep: string) =>
        version === 'v2' ? `{"credentials":${deep}}` : `{"publicKey":${deep}}`;

      test.each([
        ['100,000 unclosed [', () => '['.repeat(DEPTH), MALFORMED],
        ['100,000 nested arrays', () => arrays, MALFORMED],
        ['100,000 nested arrays in a string field', () => inKnownString(arrays), MALFORMED],
        [
          '100,000 nested {"a": as the body',
          () => objects,
          version === 'v2' ? TOKEN_ERROR : KEY_ERROR,
        ],
        ['100,000 nested {"a": in a message field', () => inKnownObject(objects), TOKEN_ERROR],
      ])('answers %s with a 4xx and no crash, issuing nothing', async (name, body, expected) => {
        const text = body();
        expect(text.length).toBeLessThan(MAX_REQUEST_BYTES);
        await expectRawRefusal(transport, version, text, json, expected, `deep JSON: ${name}`);
      });

      if (transport === 'fast path') {
        const flood = (headers: string) =>
          Buffer.from(
            `POST ${PATHS[version]} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
              `${headers}Content-Length: 2\r\n\r\n{}`,
            'latin1',
          );

        test.each([
          [
            '5,000 headers',
            () =>
              Array.from({ length: 5000 }, (_, i) => `X-Flood-${i}: ${'v'.repeat(8)}\r\n`).join(''),
          ],
          [
            'a 100 KB Authorization header',
            () => {
              const token = `${'a'.repeat(50_000)}.${'b'.repeat(50_000)}.c`;
              secrets.token(token, 'oversized bearer token');
              return `Authorization: Bearer ${token}\r\n`;
            },
          ],
        ])(
          'answers a header flood (%s) with 431 or a closed connection, and serves the next request',
          async (name, headers) => {
            const before = ca.signCount();
            const answer = await rawExchange(ca.url, flood(headers()));
            answers.push({ row: `header flood: ${name}`, status: 0, text: answer.text });
            const statusLine = answer.text.split('\r\n')[0] ?? '';
            observed.set(
              `header flood: ${name}`,
              new Set([`${statusLine || '(no answer)'}; closed: ${String(answer.closed)}`]),
            );
            expect(answer.closed).toBe(true);
            if (answer.text.length > 0)
              expect(statusLine).toBe('HTTP/1.1 431 Request Header Fields Too Large');
            expect(ca.signCount()).toBe(before);
            await stillServes(`header flood: ${name}`);
          },
        );
      }
    });

    describe('control', () => {
      test('issues a certificate for a valid public-key request', async () => {
        const key = clientKey('p256', true);
        await expectIssued(
          transport,
          version,
          { token: await tokenA(), key: { pem: key.pem, proof: proofFor(key, EMAIL_A) } },
          'control: valid public key',
        );
      });

      test('issues a certificate for a valid CSR', async () => {
        const key = clientKey('p256', true);
        await expectIssued(
          transport,
          version,
          { token: await tokenA(), key: { csr: makeCsr(key) } },
          'control: valid CSR',
        );
      });

      test('issues for a tenant the meta issuer matches, fetching its discovery (control for the bypass rows)', async () => {
        const calls = recorder.calls.length;
        const tenant = `${tenants.url}/tenant-${transport === 'Express' ? 'x' : 'f'}${version}`;
        const key = clientKey('p256', true);
        await expectIssued(
          transport,
          version,
          {
            token: await tenants.mintEmail(EMAIL_A, { issuer: tenant }),
            key: { pem: key.pem, proof: proofFor(key, EMAIL_A) },
          },
          'control: meta-issuer tenant',
        );
        expect(recorder.calls.slice(calls)).toEqual([
          `${tenant}/.well-known/openid-configuration`,
          `${tenant}/keys`,
        ]);
      });
    });
  });
});

describe('secret hygiene over the whole matrix', () => {
  test('no answer and no log line holds a token, proof or key sent, or the CA private key', () => {
    // The scan saw the matrix: answers from every row, operational and audit lines.
    expect(answers.length).toBeGreaterThan(150);
    expect(operational.lines.length).toBeGreaterThan(100);
    expect(audit.lines.length).toBeGreaterThan(100);
    expect(secrets.size).toBeGreaterThan(500);

    const leaks: string[] = [];
    for (const answer of answers) {
      const issued = answer.status === 200 || answer.status === 201;
      for (const label of secrets.leaksIn(answer.text, issued))
        leaks.push(`answer to "${answer.row}": ${label}`);
    }
    for (const [name, lines] of [
      ['operational log', operational.lines],
      ['audit log', audit.lines],
    ] as const) {
      lines.forEach((line, i) => {
        for (const label of secrets.leaksIn(line)) leaks.push(`${name} line ${i}: ${label}`);
      });
    }
    expect(leaks).toEqual([]);
  });

  test('the trap issuer was never contacted and nothing left 127.0.0.1', () => {
    expect(outbound.trap).toBe(0);
    expect(recorder.calls.filter((url) => new URL(url).hostname !== '127.0.0.1')).toEqual([]);
  });
});
