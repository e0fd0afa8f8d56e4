/**
 * Issue #17, interop: mayfly's CA with mayfly's CT log, verified by clients we did not write,
 * with SCTs required. cosign 2.5 signs a blob (certificate from the CA over v1, SCT embedded,
 * timestamp from the TSA) and `verify-blob` accepts it with the trusted root `mayfly
 * trusted-root --ctlog` writes — without --insecure-ignore-sct; sigstore-js verifies the same
 * bundle with ctlogThreshold 1. Both refuse the same certificate once a bit of its SCT's
 * signature is flipped (the certificate re-signed by the CA key, so that only the SCT is
 * wrong; the same re-signing without the flip still verifies, so the refusal is the SCT's).
 */
import { encodePem } from '../../services/common/encoding';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run as trustedRootCommand } from '../../services/cli/trusted-root';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { systemClock } from '../../services/common/clock';
import { generateEphemeralKey, type CaSigner } from '../../services/common/signer/signer';
import type { CtlogApp } from '../../services/ctlog/app';
import {
  runCosignIn,
  signBlobArgs,
  startTripwire,
  type CosignRun,
  type Tripwire,
} from '../helpers/cosign';
import { startTestCa, type TestCa } from '../helpers/mayfly';
import { startTestTsa, type TestTsa } from '../helpers/mayfly-tsa';
import { verifyWithSigstoreJs, type TrustBundleJSON } from '../helpers/sigstore-js';
import { startTestCtlog } from '../helpers/ctlog';

jest.setTimeout(120_000);

const REPO_ROOT = resolve(__dirname, '../..');
const EMAIL = 'alice@example.com';
const BLOB = Buffer.from('hello mayfly, with an SCT\n');

let work: string;
let cosign: string;
let signer: CaSigner;
let log: CtlogApp;
let logKeyPem: string;
let ca: TestCa;
let tsa: TestTsa;
let tripwire: Tripwire;
let trustedRootPath: string;
let blobPath: string;
let bundlePath: string;
let bundle: {
  verificationMaterial: { certificate: { rawBytes: string } };
} & Record<string, unknown>;

function runCosign(args: string[]): Promise<CosignRun> {
  return runCosignIn(cosign, work, tripwire, args);
}

function verifyArgs(bundleFile: string): string[] {
  return [
    'verify-blob',
    blobPath,
    '--bundle',
    bundleFile,
    '--new-bundle-format',
    '--trusted-root',
    trustedRootPath,
    '--certificate-identity',
    EMAIL,
    '--certificate-oidc-issuer',
    ca.issuer.url,
    '--insecure-ignore-tlog=true',
    '--use-signed-timestamps=true',
  ];
}

/** DER TLV header length and total length at `offset`. */
function tlvAt(der: Buffer, offset: number): { header: number; total: number } {
  const first = der[offset + 1]!;
  if (first < 0x80) return { header: 2, total: 2 + first };
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[offset + 2 + i]!;
  return { header: 2 + n, total: 2 + n + len };
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/**
 * The certificate re-signed by the CA key, optionally with the last byte of its TBS flipped.
 * The SCT list is the TBS's last extension and the SCT's ECDSA signature its last field, so
 * that byte belongs to the SCT's signature and nothing else.
 */
async function resigned(der: Buffer, flipSctSignature: boolean): Promise<Buffer> {
  const outer = tlvAt(der, 0);
  const tbsStart = outer.header;
  const tbs = Buffer.from(der.subarray(tbsStart, tbsStart + tlvAt(der, tbsStart).total));
  const algStart = tbsStart + tbs.length;
  const alg = der.subarray(algStart, algStart + tlvAt(der, algStart).total);
  if (flipSctSignature) tbs[tbs.length - 1]! ^= 0x01;
  const signature = Buffer.from(await signer.sign(tbs));
  const bits = Buffer.concat([
    Buffer.from([0x03]),
    derLength(signature.length + 1),
    Buffer.from([0]),
    signature,
  ]);
  const body = Buffer.concat([tbs, alg, bits]);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

async function bundleWith(name: string, cert: Buffer): Promise<string> {
  const copy = JSON.parse(JSON.stringify(bundle)) as typeof bundle;
  copy.verificationMaterial.certificate.rawBytes = cert.toString('base64');
  const path = join(work, name);
  await writeFile(path, JSON.stringify(copy));
  return path;
}

async function sigstoreJs(bundleFile: string): Promise<{ san: string; issuer: string }> {
  const trustBundle = (await (
    await fetch(`${ca.url}/api/v2/trustBundle`)
  ).json()) as TrustBundleJSON;
  return verifyWithSigstoreJs({
    bundle: JSON.parse(await readFile(bundleFile, 'utf8')) as never,
    payload: BLOB,
    trustBundle,
    tsaChain: tsa.certChainPem,
    identity: { san: EMAIL, issuer: ca.issuer.url },
    ctLogPublicKeys: [logKeyPem],
  });
}

beforeAll(async () => {
  cosign = execFileSync('bash', [join(REPO_ROOT, 'scripts/install-cosign.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  work = await mkdtemp(join(tmpdir(), 'mayfly-cosign-sct-'));
  tripwire = await startTripwire();

  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  const started = await startTestCtlog({
    roots: [{ der: Buffer.from(signer.chain[signer.chain.length - 1]!) }],
    work,
  });
  log = started.app;
  const logKeyFile = started.keyFile;
  logKeyPem = encodePem('PUBLIC KEY', log.key.spki);
  tsa = await startTestTsa();
  ca = await startTestCa({
    env: {
      // A trailing slash, as an operator may write it.
      MAYFLY_CT_LOG_URL: `${log.url}/`,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
    },
    overrides: { signer },
  });
  await ca.listen();
  trustedRootPath = join(work, 'trusted_root.json');
  expect(
    await trustedRootCommand([
      '--ca-url',
      ca.url,
      '--tsa-url',
      tsa.url,
      '--ctlog',
      `${log.url},${logKeyFile}`,
      '--out',
      trustedRootPath,
    ]),
  ).toBe(0);

  blobPath = join(work, 'blob.txt');
  bundlePath = join(work, 'blob.sigstore.json');
  await writeFile(blobPath, BLOB);
  const sign = await runCosign(
    signBlobArgs({
      blob: blobPath,
      token: await ca.issuer.mintEmail(EMAIL),
      fulcioUrl: ca.url,
      tsaUrl: tsa.url,
      bundle: bundlePath,
    }),
  );
  if (sign.code !== 0) throw new Error(`cosign sign-blob failed:\n${sign.stderr}`);
  bundle = JSON.parse(await readFile(bundlePath, 'utf8')) as typeof bundle;
});

afterAll(async () => {
  await ca?.close();
  await tsa?.close();
  await log?.close();
  if (tripwire) await tripwire.close();
  if (work) await rm(work, { recursive: true, force: true });
});

afterEach(() => {
  expect(tripwire.hits).toEqual([]);
});

test('the certificate cosign got carries an SCT of the log (OpenSSL reads it)', () => {
  const der = Buffer.from(bundle.verificationMaterial.certificate.rawBytes, 'base64');
  const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], {
    input: der,
    encoding: 'utf8',
  });
  expect(text).toContain('CT Precertificate SCTs:');
  expect(text.replace(/\s+/g, '')).toContain(
    log.key.logId
      .toString('hex')
      .toUpperCase()
      .replace(/(..)(?!$)/g, '$1:'),
  );
});

test('cosign verify-blob accepts it with SCTs required (no --insecure-ignore-sct)', async () => {
  const run = await runCosign(verifyArgs(bundlePath));
  expect(run.stderr).toContain('Verified OK');
  expect(run.code).toBe(0);
});

test('sigstore-js verifies it with ctlogThreshold 1', async () => {
  await expect(sigstoreJs(bundlePath)).resolves.toEqual({ san: EMAIL, issuer: ca.issuer.url });
});

test('both accept the certificate re-signed by the CA key (the control)', async () => {
  const der = Buffer.from(bundle.verificationMaterial.certificate.rawBytes, 'base64');
  const file = await bundleWith('resigned.json', await resigned(der, false));
  const run = await runCosign(verifyArgs(file));
  expect(run.stderr).toContain('Verified OK');
  await expect(sigstoreJs(file)).resolves.toEqual({ san: EMAIL, issuer: ca.issuer.url });
});

test('both refuse it once its SCT signature is tampered with', async () => {
  const der = Buffer.from(bundle.verificationMaterial.certificate.rawBytes, 'base64');
  const file = await bundleWith('tampered.json', await resigned(der, true));
  const run = await runCosign(verifyArgs(file));
  expect(run.code).not.toBe(0);
  expect(run.stderr).not.toContain('Verified OK');
  expect(run.stderr).toMatch(/SCT|signed certificate timestamp/i);
  await expect(sigstoreJs(file)).rejects.toThrow(/SCT|certificate timestamp/i);
});
