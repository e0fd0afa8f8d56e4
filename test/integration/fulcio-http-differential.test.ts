/**
 * The HTTP differential run for hostile keys and CSRs: Fulcio's own server (built from
 * Debian's source package by scripts/go-refs.sh) and mayfly, on loopback, with the same file
 * CA and an identity config trusting the same local OIDC issuer, get the same JSON requests
 * on the v2 and v1 APIs. The status and the body of every refusal must be equal, mayfly must
 * sign nothing for them, and the reason goes to mayfly's log only. The rows are the inputs
 * where mayfly used to differ from Fulcio (each fails against that older behaviour):
 *
 * - a SubjectPublicKeyInfo followed by extra bytes (Go: "x509: trailing data after ASN.1 of
 *   public-key"), in v2's PEM and in v1's base64 key (DER and PEM);
 * - a PKCS#10 request without its mandatory `attributes [0]` field;
 * - `"certificateSigningRequest": ""` on v2, which Fulcio treats as no CSR at all.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import { createLogger } from '../../services/common/logger';
import { writeFileCa } from '../helpers/ca-files';
import { makeCsr, makeKey, proofFor, toPem, type TestKey } from '../helpers/keys';
import { startTestCa, type TestCa } from '../helpers/mayfly';
import { logSink } from '../helpers/security';
import { startFulcio, type RunningFulcio } from '../helpers/fulcio';

jest.setTimeout(120_000);

const EMAIL = 'diff-http@example.com';
let work: string;
let mayfly: TestCa;
let fulcio: RunningFulcio;
const operational = logSink();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-fulcio-http-diff-'));
  const ca = await writeFileCa(work, 'fulcio-http-diff-password');
  mayfly = await startTestCa({
    env: {
      ...ca.env,
    },
    logger: createLogger('debug', operational.stream),
  });
  await mayfly.listen();
  fulcio = await startFulcio({
    work: work,
    chainFile: ca.chainFile,
    keyFile: ca.keyFile,
    keyPassword: ca.password,
    issuerUrl: mayfly.issuer.url,
    tag: 'http-diff',
  });
}, 900_000);

afterAll(async () => {
  fulcio?.stop();
  await mayfly?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Answer {
  status: number;
  /** The parsed JSON body of a refusal; the content type of a success. */
  body: unknown;
}

async function post(base: string, version: 'v1' | 'v2', token: string, body: object) {
  const res = await fetch(`${base}/api/${version}/signingCert`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.ok) return { status: res.status, body: 'issued' };
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: compared as text.
  }
  return { status: res.status, body: parsed } satisfies Answer;
}

const b64 = (x: Buffer | string) => Buffer.from(x).toString('base64');
const spki = (key: TestKey) => key.publicKey.export({ type: 'spki', format: 'der' });
const withTrailing = (key: TestKey, extra: Buffer) => Buffer.concat([spki(key), extra]);

/** The openssl CLI's CSR for the key: it carries the (empty) attributes field. */
function opensslCsr(key: TestKey): string {
  const keyFile = join(work, `csr-key-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(keyFile, key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return execFileSync(
    'openssl',
    ['req', '-new', '-key', keyFile, '-subj', '/CN=ignored', '-sha256'],
    { encoding: 'utf8' },
  );
}

/** True when the CSR's certificationRequestInfo has a fourth field (attributes [0]). */
function hasAttributes(pem: string): boolean {
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const outer = asn1js.fromBER(new Uint8Array(der)).result as asn1js.Sequence;
  const info = outer.valueBlock.value[0] as asn1js.Sequence;
  return info.valueBlock.value.length === 4;
}

/** makeCsr with its attributes field cut out and signed again: a CSR Go refuses. */
function csrWithoutAttributes(key: TestKey): string {
  const pem = makeCsr(key, { withoutAttributes: true });
  expect(hasAttributes(pem)).toBe(false);
  return pem;
}

describe('hostile keys and CSRs get Fulcio’s answer on both API versions', () => {
  test('every row: same status and body from Fulcio and mayfly; mayfly signs nothing', async () => {
    const key = makeKey('p256');
    const rsa = makeKey('rsa2048');
    const ed = makeKey('ed25519');
    const zero = Buffer.from([0]);
    const proof = (k: TestKey) => proofFor(k, EMAIL);
    type Row = [string, 'v1' | 'v2', object];
    const v2Key = (pem: string, k: TestKey) => ({
      publicKeyRequest: {
        publicKey: { algorithm: 'ECDSA', content: pem },
        proofOfPossession: b64(proof(k)),
      },
    });
    const v1Key = (content: Buffer | string, k: TestKey) => ({
      publicKey: { content: b64(content), algorithm: 'ecdsa' },
      signedEmailAddress: b64(proof(k)),
    });
    const refused: Row[] = [
      [
        'v2 P-256 SPKI PEM + 1 byte',
        'v2',
        v2Key(toPem('PUBLIC KEY', withTrailing(key, zero)), key),
      ],
      [
        'v2 P-256 SPKI PEM + an empty SEQUENCE',
        'v2',
        v2Key(toPem('PUBLIC KEY', withTrailing(key, Buffer.from('3000', 'hex'))), key),
      ],
      [
        'v2 RSA-2048 SPKI PEM + 1 byte',
        'v2',
        v2Key(toPem('PUBLIC KEY', withTrailing(rsa, zero)), rsa),
      ],
      [
        'v2 Ed25519 SPKI PEM + the key again',
        'v2',
        v2Key(toPem('PUBLIC KEY', withTrailing(ed, spki(ed))), ed),
      ],
      ['v1 P-256 SPKI DER + 1 byte', 'v1', v1Key(withTrailing(key, zero), key)],
      [
        'v1 P-256 SPKI PEM + 1 byte',
        'v1',
        v1Key(toPem('PUBLIC KEY', withTrailing(key, zero)), key),
      ],
      [
        'v2 CSR without attributes',
        'v2',
        { certificateSigningRequest: b64(csrWithoutAttributes(key)) },
      ],
      [
        'v1 CSR without attributes',
        'v1',
        { certificateSigningRequest: b64(csrWithoutAttributes(key)) },
      ],
      ['v2 empty certificateSigningRequest', 'v2', { certificateSigningRequest: '' }],
      ['v1 empty certificateSigningRequest', 'v1', { certificateSigningRequest: '' }],
    ];
    // Controls: the same keys and CSRs without the defect are issued by both.
    const issued: Row[] = [
      ['v2 P-256 SPKI PEM', 'v2', v2Key(key.pem, key)],
      ['v1 P-256 SPKI PEM', 'v1', v1Key(key.pem, key)],
      ['v1 P-256 SPKI DER', 'v1', v1Key(spki(key), key)],
      ['v2 RSA-2048 SPKI PEM', 'v2', v2Key(rsa.pem, rsa)],
      ['v2 CSR from makeCsr', 'v2', { certificateSigningRequest: b64(makeCsr(key)) }],
      ['v2 CSR from openssl', 'v2', { certificateSigningRequest: b64(opensslCsr(key)) }],
      ['v1 CSR from makeCsr', 'v1', { certificateSigningRequest: b64(makeCsr(ed)) }],
    ];
    const rows = [...refused, ...issued];
    const token = await mayfly.issuer.mintEmail(EMAIL);
    const fulcioView: [string, number, unknown][] = [];
    for (const [name, version, body] of rows) {
      const a = await post(fulcio.url, version, token, body);
      fulcioView.push([name, a.status, a.body]);
    }
    const signsBefore = mayfly.signCount();
    const mayflyView: [string, number, unknown][] = [];
    for (const [name, version, body] of refused) {
      const a = await post(mayfly.url, version, token, body);
      mayflyView.push([name, a.status, a.body]);
    }
    // Nothing was signed for any refused row.
    expect(mayfly.signCount()).toBe(signsBefore);
    for (const [name, version, body] of issued) {
      const a = await post(mayfly.url, version, token, body);
      mayflyView.push([name, a.status, a.body]);
    }
    expect(mayflyView).toEqual(fulcioView);
    expect(mayfly.signCount()).toBe(signsBefore + issued.length);
    // The rows reached both servers' checks: refusals are 400s, the controls were issued.
    expect(fulcioView.map(([, status]) => status)).toEqual([
      ...refused.map(() => 400),
      ...issued.map(([, version]) => (version === 'v1' ? 201 : 200)),
    ]);
    // Fulcio's answers, for the report: printed when MAYFLY_TEST_SHOW is set.
    if (process.env.MAYFLY_TEST_SHOW) console.log(JSON.stringify(fulcioView, null, 1));
  });

  test('the reasons are in mayfly’s log, not in the answers', async () => {
    const key = makeKey('p256');
    const token = await mayfly.issuer.mintEmail(EMAIL);
    const before = operational.lines.length;
    const answer = await post(mayfly.url, 'v2', token, {
      publicKeyRequest: {
        publicKey: { content: toPem('PUBLIC KEY', withTrailing(key, Buffer.from([0, 0]))) },
        proofOfPossession: b64(proofFor(key, EMAIL)),
      },
    });
    const csrAnswer = await post(mayfly.url, 'v2', token, {
      certificateSigningRequest: b64(csrWithoutAttributes(key)),
    });
    expect(JSON.stringify([answer, csrAnswer])).not.toMatch(/trailing|attributes/);
    const logged = operational.lines.slice(before).join('\n');
    expect(logged).toContain('trailing data after the spki key (2 bytes)');
    expect(logged).toContain('CSR has no attributes field');
  });
});
