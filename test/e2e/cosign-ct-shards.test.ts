/**
 * The shard rollover of the README ("Rolling over to the next shard"), verified by clients we
 * did not write. Two shards of mayfly's CT log with adjacent temporal windows; the CA is given
 * both in its YAML config, each with its window; `mayfly trusted-root` gets one `--ctlog` per
 * shard. A certificate whose notAfter is before the boundary carries shard A's SCT, one after
 * it shard B's; cosign 2.5 `verify-blob` (SCTs required: no --insecure-ignore-sct) and
 * sigstore-js (ctlogThreshold 1, the very trusted_root.json) accept both. Without shard B in
 * the trusted root, cosign refuses B's certificate: publishing the next shard to verifiers
 * before it signs is a step of the rollover, not a formality.
 *
 * To get both sides of the boundary today, the second CA (same key, same config) issues
 * hour-long certificates: their notAfter is past the boundary, as ten-minute certificates'
 * will be once the clock reaches it.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';
import { run as trustedRootCommand } from '../../services/cli/trusted-root';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { systemClock } from '../../services/common/clock';
import { encodePem } from '../../services/common/encoding';
import { generateEphemeralKey, type CaSigner } from '../../services/common/signer/signer';
import type { TestCert } from '../helpers/ct-certs';
import { startTestCtlog, type TestCtlog } from '../helpers/ctlog';
import {
  runCosignIn,
  signBlobArgs,
  startTripwire,
  type CosignRun,
  type Tripwire,
} from '../helpers/cosign';
import { startTestCa, type TestCa } from '../helpers/mayfly';
import { startTestTsa, type TestTsa } from '../helpers/mayfly-tsa';

jest.setTimeout(180_000);

const REPO_ROOT = resolve(__dirname, '../..');
const EMAIL = 'alice@example.com';
const BLOB = Buffer.from('hello mayfly, logged in the right shard\n');
const DAY = 86_400_000;

let work: string;
let cosign: string;
let signer: CaSigner;
let boundary: number;
let shardA: TestCtlog;
let shardB: TestCtlog;
let tenMinutes: TestCa;
let anHour: TestCa;
let tsa: TestTsa;
let tripwire: Tripwire;
let bothShards: string;
let onlyA: string;
let blobPath: string;
const bundles: { a?: string; b?: string } = {};

function runCosign(args: string[]): Promise<CosignRun> {
  return runCosignIn(cosign, work, tripwire, args);
}

async function signBlob(ca: TestCa, name: string): Promise<string> {
  const bundle = join(work, `${name}.sigstore.json`);
  const run = await runCosign(
    signBlobArgs({
      blob: blobPath,
      token: await ca.issuer.mintEmail(EMAIL),
      fulcioUrl: ca.url,
      tsaUrl: tsa.url,
      bundle,
    }),
  );
  if (run.code !== 0) throw new Error(`cosign sign-blob failed:\n${run.stderr}`);
  return bundle;
}

function verifyArgs(bundle: string, trustedRoot: string, ca: TestCa): string[] {
  return [
    'verify-blob',
    blobPath,
    '--bundle',
    bundle,
    '--new-bundle-format',
    '--trusted-root',
    trustedRoot,
    '--certificate-identity',
    EMAIL,
    '--certificate-oidc-issuer',
    ca.issuer.url,
    '--insecure-ignore-tlog=true',
    '--use-signed-timestamps=true',
  ];
}

async function leafOf(bundle: string): Promise<X509Certificate> {
  const json = JSON.parse(await readFile(bundle, 'utf8')) as {
    verificationMaterial: { certificate: { rawBytes: string } };
  };
  return new X509Certificate(Buffer.from(json.verificationMaterial.certificate.rawBytes, 'base64'));
}

/** The log IDs OpenSSL reads in the certificate's SCT list. */
function sctLogIds(leaf: X509Certificate): string[] {
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], {
    input: leaf.toString(),
    encoding: 'utf8',
  });
  return [...text.matchAll(/Log ID\s*:\s*([0-9A-F:\s]+?)\s*Timestamp/g)].map((m) =>
    m[1]!.replace(/[:\s]/g, '').toLowerCase(),
  );
}

const logId = (shard: TestCtlog) => createHash('sha256').update(shard.app.key.spki).digest('hex');

async function sigstoreJs(bundle: string, trustedRoot: string, ca: TestCa): Promise<void> {
  const root = TrustedRoot.fromJSON(JSON.parse(await readFile(trustedRoot, 'utf8')));
  const verifier = new Verifier(toTrustMaterial(root), {
    tlogThreshold: 0,
    ctlogThreshold: 1,
    timestampThreshold: 1,
  });
  const parsed = bundleFromJSON(JSON.parse(await readFile(bundle, 'utf8')));
  verifier.verify(toSignedEntity(parsed, BLOB), {
    subjectAlternativeName: `^${EMAIL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`,
    extensions: { issuer: ca.issuer.url },
  });
}

beforeAll(async () => {
  cosign = execFileSync('bash', [join(REPO_ROOT, 'scripts/install-cosign.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  work = await mkdtemp(join(tmpdir(), 'mayfly-cosign-shards-'));
  tripwire = await startTripwire();

  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  const root = { der: Buffer.from(signer.chain[signer.chain.length - 1]!) } as TestCert;
  // Half an hour ahead: a ten-minute certificate ends before it, an hour-long one after.
  boundary = Math.floor(Date.now() / 1000) * 1000 + 30 * 60_000;
  const windows = {
    a: {
      start: new Date(boundary - 30 * DAY).toISOString(),
      end: new Date(boundary).toISOString(),
    },
    b: {
      start: new Date(boundary).toISOString(),
      end: new Date(boundary + 365 * DAY).toISOString(),
    },
  };
  shardA = await startTestCtlog({
    roots: [root],
    env: {
      MAYFLY_CTLOG_URL: 'https://ctlog.test/2026',
      MAYFLY_CTLOG_TEMPORAL_START: windows.a.start,
      MAYFLY_CTLOG_TEMPORAL_END: windows.a.end,
    },
  });
  shardB = await startTestCtlog({
    roots: [root],
    env: {
      MAYFLY_CTLOG_URL: 'https://ctlog.test/2027',
      MAYFLY_CTLOG_TEMPORAL_START: windows.b.start,
      MAYFLY_CTLOG_TEMPORAL_END: windows.b.end,
    },
  });
  const keyA = join(work, 'ctlog-a.pub');
  const keyB = join(work, 'ctlog-b.pub');
  await writeFile(keyA, encodePem('PUBLIC KEY', shardA.app.key.spki));
  await writeFile(keyB, encodePem('PUBLIC KEY', shardB.app.key.spki));
  const config = join(work, 'mayfly.yaml');
  await writeFile(
    config,
    [
      'ct:',
      '  minScts: 1',
      '  logs:',
      `    - url: ${shardA.url}`,
      '      publicKeyFile: ctlog-a.pub',
      `      temporal: { start: ${windows.a.start}, end: ${windows.a.end} }`,
      `    - url: ${shardB.url}`,
      '      publicKeyFile: ctlog-b.pub',
      `      temporal: { start: ${windows.b.start}, end: ${windows.b.end} }`,
      '',
    ].join('\n'),
  );
  tsa = await startTestTsa();
  tenMinutes = await startTestCa({ env: { MAYFLY_CONFIG: config }, overrides: { signer } });
  anHour = await startTestCa({
    env: { MAYFLY_CONFIG: config, MAYFLY_CERT_LIFETIME_SECONDS: '3600' },
    overrides: { signer },
  });
  await tenMinutes.listen();
  await anHour.listen();

  // Both shards valid from a day ago (each "from when it started").
  const since = new Date(Date.now() - DAY).toISOString();
  bothShards = join(work, 'trusted_root.json');
  onlyA = join(work, 'trusted_root_only_a.json');
  for (const [out, logs] of [
    [bothShards, [`${shardA.url},${keyA},${since}`, `${shardB.url},${keyB},${since}`]],
    [onlyA, [`${shardA.url},${keyA},${since}`]],
  ] as const) {
    expect(
      await trustedRootCommand([
        '--ca-url',
        tenMinutes.url,
        '--tsa-url',
        tsa.url,
        ...logs.flatMap((l) => ['--ctlog', l]),
        '--out',
        out,
      ]),
    ).toBe(0);
  }
  blobPath = join(work, 'blob.txt');
  await writeFile(blobPath, BLOB);
  bundles.a = await signBlob(tenMinutes, 'before-boundary');
  bundles.b = await signBlob(anHour, 'after-boundary');
});

afterAll(async () => {
  await tenMinutes?.close();
  await anHour?.close();
  await tsa?.close();
  await shardA?.stop();
  await shardB?.stop();
  if (tripwire) await tripwire.close();
  if (work) await rm(work, { recursive: true, force: true });
});

afterEach(() => {
  expect(tripwire.hits).toEqual([]);
});

test('each certificate carries the SCT of the shard whose window holds its notAfter (OpenSSL reads them)', async () => {
  const a = await leafOf(bundles.a!);
  const b = await leafOf(bundles.b!);
  expect(Date.parse(a.validTo)).toBeLessThan(boundary);
  expect(Date.parse(b.validTo)).toBeGreaterThanOrEqual(boundary);
  expect(sctLogIds(a)).toEqual([logId(shardA)]);
  expect(sctLogIds(b)).toEqual([logId(shardB)]);
});

test('cosign verify-blob accepts both with both shards in the trusted root (SCTs required)', async () => {
  for (const [bundle, ca] of [
    [bundles.a!, tenMinutes],
    [bundles.b!, anHour],
  ] as const) {
    const run = await runCosign(verifyArgs(bundle, bothShards, ca));
    expect([bundle, run.code, run.stderr]).toEqual([
      bundle,
      0,
      expect.stringContaining('Verified OK'),
    ]);
  }
});

test('sigstore-js accepts both with the same trusted_root.json, ctlogThreshold 1', async () => {
  await expect(sigstoreJs(bundles.a!, bothShards, tenMinutes)).resolves.toBeUndefined();
  await expect(sigstoreJs(bundles.b!, bothShards, anHour)).resolves.toBeUndefined();
});

test('without the next shard in the trusted root, its certificates are refused (and the old one still verifies)', async () => {
  const ok = await runCosign(verifyArgs(bundles.a!, onlyA, tenMinutes));
  expect([ok.code, ok.stderr]).toEqual([0, expect.stringContaining('Verified OK')]);
  const refused = await runCosign(verifyArgs(bundles.b!, onlyA, anHour));
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).not.toContain('Verified OK');
  expect(refused.stderr).toMatch(/SCT|signed certificate timestamp/i);
  await expect(sigstoreJs(bundles.b!, onlyA, anHour)).rejects.toThrow(/SCT|certificate timestamp/i);
});
