/**
 * End to end: the unmodified cosign 2.x binary against a listening mayfly.
 *
 * `cosign sign-blob` gets an ephemeral certificate over the legacy v1 API
 * (`POST /api/v1/signingCert`, the only one cosign 2.5 speaks), has the signature timestamped by
 * mayfly's own RFC 3161 TSA (services/tsa), and writes a protobuf bundle; `cosign verify-blob` checks it against a
 * trusted root made of mayfly's `GET /api/v2/trustBundle` and the TSA chain. No Rekor, no CT log,
 * no TUF, and no traffic beyond 127.0.0.1. See docs/cosign-offline.md.
 *
 * cosign is required, never skipped: CI installs it with `bash scripts/install-cosign.sh`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

import * as pkijs from 'pkijs';

import { run as trustedRootCommand } from '../../services/cli/trusted-root';
import { startTripwire, type Tripwire } from '../helpers/cosign';
import { startTestCa, type TestCa } from '../helpers/mayfly';
import {
  buildTrustedRootJSON,
  signWithSigstoreJs,
  verifyWithSigstoreJs,
  type TrustBundleJSON,
} from '../helpers/sigstore-js';
import { startTestTsa, type TestTsa } from '../helpers/mayfly-tsa';

jest.setTimeout(120_000);

const REPO_ROOT = resolve(__dirname, '../..');
const TOOLS_COSIGN = join(REPO_ROOT, '.tools/cosign/usr/bin/cosign');
const COSIGN_TIMEOUT_MS = 60_000;
const EMAIL = 'alice@example.com';
const BLOB = Buffer.from('hello mayfly, from cosign\n');

// ---------------------------------------------------------------------------------------------
// Finding cosign 2.x
// ---------------------------------------------------------------------------------------------

/** The cosign package version of a binary: upstream builds say `GitVersion: v2.5.0`, Debian's `devel`. */
function cosignVersion(bin: string): string | undefined {
  let out: string;
  try {
    out = execFileSync(bin, ['version'], { encoding: 'utf8', stdio: 'pipe', timeout: 30_000 });
  } catch {
    return undefined;
  }
  const tagged = /^GitVersion:\s+v?(\d+\.\S+)/m.exec(out);
  if (tagged) return tagged[1];
  if (!/^GitVersion:\s+devel/m.test(out)) return undefined;
  // A distribution build: ask for its package version, as scripts/install-cosign.sh does.
  if (bin === TOOLS_COSIGN) {
    const file = join(REPO_ROOT, '.tools/cosign/VERSION');
    return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  }
  try {
    const owner = execFileSync('dpkg', ['-S', realpathSync(bin)], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
    const pkg = owner.split(':')[0];
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg ?? ''], {
      encoding: 'utf8',
      stdio: 'pipe',
    }).trim();
  } catch {
    return undefined;
  }
}

function isCosign2(bin: string): boolean {
  const version = cosignVersion(bin);
  return version !== undefined && /^(\d+:)?2\./.test(version);
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** `cosign` 2.x on PATH, else the copy scripts/install-cosign.sh unpacks; fails loudly otherwise. */
function locateCosign(): string {
  const fromPath = onPath('cosign');
  if (fromPath && isCosign2(fromPath)) return fromPath;
  if (existsSync(TOOLS_COSIGN) && isCosign2(TOOLS_COSIGN)) return TOOLS_COSIGN;
  throw new Error(
    `cosign 2.x not found (looked for \`cosign\` on PATH${fromPath ? ` — ${fromPath} is not 2.x` : ''} ` +
      `and for ${TOOLS_COSIGN}). Run \`bash scripts/install-cosign.sh\` to install it; ` +
      'CI runs it before the e2e tests. This test never skips.',
  );
}

// ---------------------------------------------------------------------------------------------
// Running cosign offline
// ---------------------------------------------------------------------------------------------

interface CosignResult {
  args: string[];
  /** Exit code, or null if cosign was killed (see `signal`). */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The cosign binary, or why there is none (then every test that needs cosign fails with it). */
let cosign: string | Error;
let work: string;
let home: string;
let tufRoot: string;
let tripwire: Tripwire;

/** A minimal environment: no ambient OIDC providers, no user config, no way off the machine. */
function cosignEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TUF_ROOT: tufRoot,
    HTTP_PROXY: tripwire.url,
    HTTPS_PROXY: tripwire.url,
    http_proxy: tripwire.url,
    https_proxy: tripwire.url,
    NO_PROXY: '',
    no_proxy: '',
  };
}

function runCosign(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CosignResult> {
  const bin = cosign;
  if (typeof bin !== 'string') return Promise.reject(bin);
  return new Promise((done) => {
    execFile(
      bin,
      args,
      {
        env: { ...cosignEnv(), ...env },
        cwd: work,
        timeout: COSIGN_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const failure = error as (Error & { code?: unknown; signal?: NodeJS.Signals }) | null;
        done({
          args,
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          signal: failure?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
  });
}

function describeRun(result: CosignResult): string {
  const how =
    result.code === null ? `was killed by ${result.signal ?? '?'}` : `exited ${result.code}`;
  return `cosign ${result.args.join(' ')}\n${how}\n--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout}`;
}

/** Fails with cosign's full output (stderr first) unless it exited 0. */
function expectSuccess(result: CosignResult): void {
  if (result.code !== 0) throw new Error(`cosign failed:\n${describeRun(result)}`);
}

/** Fails unless cosign exited non-zero (not killed) and said `pattern` on stderr. */
function expectFailure(result: CosignResult, pattern: RegExp): void {
  if (result.code === 0 || result.code === null || !pattern.test(result.stderr)) {
    throw new Error(`expected cosign to fail with ${String(pattern)}:\n${describeRun(result)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// mayfly, the TSA, and helpers over them
// ---------------------------------------------------------------------------------------------

let ca: TestCa;
let otherCa: TestCa;
let tsa: TestTsa;
let trustBundle: TrustBundleJSON;

async function fetchTrustBundle(baseUrl: string): Promise<TrustBundleJSON> {
  const response = await fetch(`${baseUrl}/api/v2/trustBundle`);
  expect(response.status).toBe(200);
  return (await response.json()) as TrustBundleJSON;
}

/** Count of finished requests per route and status code, from mayfly's own latency histogram. */
async function requestCount(target: TestCa, route: string, code: string): Promise<number> {
  const text = await target.app.metrics.registry.getSingleMetricAsString(
    'mayfly_http_request_duration_seconds',
  );
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^mayfly_http_request_duration_seconds_count\{([^}]*)\} (\d+)$/.exec(line);
    if (!match) continue;
    const labels = new Map(
      [...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as const),
    );
    if (labels.get('route') === route && labels.get('code') === code) total += Number(match[2]);
  }
  return total;
}

async function writeTrustedRoot(
  file: string,
  bundle: TrustBundleJSON,
  tsaChain: readonly string[] = tsa.certChainPem,
): Promise<string> {
  const path = join(work, file);
  await writeFile(path, JSON.stringify(buildTrustedRootJSON(bundle, tsaChain), null, 2));
  return path;
}

beforeAll(async () => {
  try {
    cosign = locateCosign();
  } catch (err) {
    cosign = err as Error;
  }
  work = await mkdtemp(join(tmpdir(), 'mayfly-cosign-'));
  home = join(work, 'home');
  tufRoot = join(work, 'tuf');
  await mkdir(home);
  tripwire = await startTripwire();
  tsa = await startTestTsa();
  ca = await startTestCa();
  otherCa = await startTestCa();
  await ca.listen();
  await otherCa.listen();
  trustBundle = await fetchTrustBundle(ca.url);
});

afterAll(async () => {
  await ca?.close();
  await otherCa?.close();
  await tsa?.close();
  await tripwire?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

afterEach(() => {
  // Nothing cosign did may have tried to leave 127.0.0.1 (checked after every test).
  expect(tripwire?.hits ?? []).toEqual([]);
});

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

describe('cosign sign-blob / verify-blob against mayfly', () => {
  let blobPath: string;
  let bundlePath: string;
  let trustedRootPath: string;
  let bundleJson: {
    mediaType: string;
    verificationMaterial: {
      certificate?: { rawBytes: string };
      tlogEntries?: unknown[];
      timestampVerificationData?: { rfc3161Timestamps?: unknown[] };
    };
    messageSignature?: { messageDigest: { algorithm: string; digest: string } };
  };
  let signRun: CosignResult;
  const before = { v1: 0, v2: 0, signs: 0, tsaDer: 0 };

  beforeAll(async () => {
    blobPath = join(work, 'blob.txt');
    bundlePath = join(work, 'blob.sigstore.json');
    await writeFile(blobPath, BLOB);
    // The trusted root cosign verifies with is the one `mayfly trusted-root` writes from the
    // running CA and TSA.
    trustedRootPath = join(work, 'trusted_root.json');
    expect(
      await trustedRootCommand([
        '--ca-url',
        ca.url,
        '--tsa-url',
        tsa.url,
        '--out',
        trustedRootPath,
      ]),
    ).toBe(0);

    before.v1 = await requestCount(ca, '/api/v1/signingCert', '201');
    before.v2 = await requestCount(ca, '/api/v2/signingCert', '200');
    before.signs = ca.signCount();
    before.tsaDer = tsa.issued.der;

    const token = await ca.issuer.mintEmail(EMAIL);
    // cosign uses the flag's value verbatim; a trailing newline would break the header.
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    signRun = await runCosign([
      'sign-blob',
      blobPath,
      '--identity-token',
      token,
      '--fulcio-url',
      ca.url,
      '--insecure-skip-verify=true',
      '--tlog-upload=false',
      '--timestamp-server-url',
      `${tsa.url}/api/v1/timestamp`,
      '--new-bundle-format',
      '--bundle',
      bundlePath,
    ]);
    if (signRun.code === 0) {
      bundleJson = JSON.parse(await readFile(bundlePath, 'utf8')) as typeof bundleJson;
    }
  });

  test('sign-blob gets a certificate from mayfly over v1 and a timestamp from the TSA', async () => {
    expectSuccess(signRun);
    expect(signRun.stderr).toContain('Wrote bundle to file');

    // cosign 2.x speaks only the legacy API: exactly one 201 on /api/v1/signingCert, none on v2.
    expect(await requestCount(ca, '/api/v1/signingCert', '201')).toBe(before.v1 + 1);
    expect(await requestCount(ca, '/api/v2/signingCert', '200')).toBe(before.v2);
    expect(ca.signCount()).toBe(before.signs + 1);
    // cosign sends a DER TimeStampReq (not sigstore-js's JSON).
    expect(tsa.issued.der).toBe(before.tsaDer + 1);

    expect(bundleJson.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundleJson.verificationMaterial.tlogEntries ?? []).toEqual([]);
    expect(
      bundleJson.verificationMaterial.timestampVerificationData?.rfc3161Timestamps,
    ).toHaveLength(1);
    expect(bundleJson.messageSignature?.messageDigest.digest).toBe(
      createHash('sha256').update(BLOB).digest('base64'),
    );

    // The certificate in the bundle is mayfly's leaf for the token's identity.
    const leaf = new X509Certificate(
      Buffer.from(bundleJson.verificationMaterial.certificate!.rawBytes, 'base64'),
    );
    const intermediate = new X509Certificate(trustBundle.chains[0]!.certificates[0]!);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
  });

  test('cosign left nothing in HOME (where it would cache TUF metadata) or TUF_ROOT', async () => {
    expectSuccess(signRun);
    expect(await readdir(home)).toEqual([]);
    expect(existsSync(tufRoot)).toBe(false);
  });

  test('verify-blob accepts it with mayfly trust bundle, the TSA chain and the identity', async () => {
    expectSuccess(signRun);
    const run = await runCosign(verifyArgs({ blobPath, bundlePath, trustedRootPath }));
    expectSuccess(run);
    expect(run.stderr).toContain('Verified OK');
    expect(await readdir(home)).toEqual([]);
    expect(existsSync(tufRoot)).toBe(false);
  });

  test('verify-blob refuses a different certificate identity', async () => {
    expectSuccess(signRun);
    const run = await runCosign(
      verifyArgs({ blobPath, bundlePath, trustedRootPath, identity: 'bob@example.com' }),
    );
    expectFailure(run, /expected SAN value "bob@example\.com", got "alice@example\.com"/);
  });

  test('verify-blob refuses a different OIDC issuer', async () => {
    expectSuccess(signRun);
    const run = await runCosign(
      verifyArgs({ blobPath, bundlePath, trustedRootPath, issuer: otherCa.issuer.url }),
    );
    expectFailure(
      run,
      new RegExp(
        `expected issuer value "${escapeRegExp(otherCa.issuer.url)}", got "${escapeRegExp(ca.issuer.url)}"`,
      ),
    );
  });

  test('verify-blob refuses a tampered blob', async () => {
    expectSuccess(signRun);
    const tampered = join(work, 'tampered.txt');
    await writeFile(tampered, Buffer.concat([BLOB, Buffer.from('!')]));
    const run = await runCosign(verifyArgs({ blobPath: tampered, bundlePath, trustedRootPath }));
    expectFailure(run, /invalid signature when validating ASN\.1 encoded signature/);
  });

  test('verify-blob refuses the trust bundle of another mayfly instance', async () => {
    expectSuccess(signRun);
    const foreign = await writeTrustedRoot(
      'foreign_trusted_root.json',
      await fetchTrustBundle(otherCa.url),
    );
    const run = await runCosign(verifyArgs({ blobPath, bundlePath, trustedRootPath: foreign }));
    expectFailure(run, /leaf certificate verification failed/);
  });

  test('verify-blob refuses a trusted root with another TSA', async () => {
    expectSuccess(signRun);
    const otherTsa = await startTestTsa();
    try {
      const root = await writeTrustedRoot(
        'other_tsa_trusted_root.json',
        trustBundle,
        otherTsa.certChainPem,
      );
      const run = await runCosign(verifyArgs({ blobPath, bundlePath, trustedRootPath: root }));
      // sigstore-go counts only timestamps that verify, so a foreign TSA shows as a threshold miss.
      expectFailure(run, /threshold not met for verified signed timestamps: 0 < 1/);
    } finally {
      await otherTsa.close();
    }
  });

  test('sigstore-js verifies the bundle cosign made', async () => {
    expectSuccess(signRun);
    await expect(
      verifyWithSigstoreJs({
        bundle: JSON.parse(await readFile(bundlePath, 'utf8')) as Parameters<
          typeof verifyWithSigstoreJs
        >[0]['bundle'],
        payload: BLOB,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).resolves.toEqual({ san: EMAIL, issuer: ca.issuer.url });
  });

  test('cosign verifies a bundle sigstore-js made with a mayfly v2 certificate', async () => {
    const payload = Buffer.from('hello mayfly, from sigstore-js\n');
    const payloadPath = join(work, 'from-sigstore-js.txt');
    const jsBundlePath = join(work, 'from-sigstore-js.sigstore.json');
    await writeFile(payloadPath, payload);
    const bundle = await signWithSigstoreJs({
      fulcioURL: ca.url,
      tsaURL: tsa.url,
      identityToken: await ca.issuer.mintEmail(EMAIL),
      payload,
    });
    await writeFile(jsBundlePath, JSON.stringify(bundle));
    const run = await runCosign(
      verifyArgs({ blobPath: payloadPath, bundlePath: jsBundlePath, trustedRootPath }),
    );
    expectSuccess(run);
    expect(run.stderr).toContain('Verified OK');
  });
});

test('cosign 2.x is installed', () => {
  if (typeof cosign !== 'string') throw cosign;
  expect(isCosign2(cosign)).toBe(true);
});

test('the TSA signing certificate has the EKU cosign requires: critical, timeStamping only', () => {
  // timestamp-authority's verifier (used by cosign) refuses any other TSA leaf; without this a
  // change in mayfly's TSA chain would only show as "threshold not met for verified signed timestamps".
  const [leafDer, rootDer] = tsa.certChainDer;
  const leaf = pkijs.Certificate.fromBER(leafDer!);
  const eku = leaf.extensions?.find((e) => e.extnID === '2.5.29.37');
  expect(eku?.critical).toBe(true);
  expect((eku?.parsedValue as pkijs.ExtKeyUsage | undefined)?.keyPurposes).toEqual([
    '1.3.6.1.5.5.7.3.8',
  ]);
  // The leaf is not a CA (so cosign takes it as the TSA leaf from the trusted root), and the
  // only other certificate is the self-signed root with no EKU to restrict it.
  expect(new X509Certificate(leafDer!).ca).toBe(false);
  const root = new X509Certificate(rootDer!);
  expect(root.ca).toBe(true);
  expect(root.checkIssued(root)).toBe(true);
  expect(
    pkijs.Certificate.fromBER(rootDer!).extensions?.some((e) => e.extnID === '2.5.29.37'),
  ).toBe(false);
});

test('the tripwire proxy catches cosign reaching off the machine (harness self-check)', async () => {
  // Without --trusted-root cosign fetches Sigstore's TUF repository. That must land on the
  // tripwire, or the "nothing left 127.0.0.1" checks after every test would prove nothing.
  const scratchHome = await mkdtemp(join(work, 'tuf-home-'));
  const bundlePath = join(work, 'empty.sigstore.json');
  await writeFile(bundlePath, '{}');
  const run = await runCosign(
    [
      'verify-blob',
      bundlePath,
      '--bundle',
      bundlePath,
      '--new-bundle-format',
      '--certificate-identity',
      EMAIL,
      '--certificate-oidc-issuer',
      ca.issuer.url,
    ],
    { HOME: scratchHome, TUF_ROOT: join(scratchHome, 'tuf') },
  );
  expectFailure(run, /tuf refresh failed/);
  expect(tripwire.hits).toContain('CONNECT tuf-repo-cdn.sigstore.dev:443');
  tripwire.hits.length = 0;
});

function verifyArgs(options: {
  blobPath: string;
  bundlePath: string;
  trustedRootPath: string;
  identity?: string;
  issuer?: string;
}): string[] {
  return [
    'verify-blob',
    options.blobPath,
    '--bundle',
    options.bundlePath,
    '--new-bundle-format',
    '--trusted-root',
    options.trustedRootPath,
    '--certificate-identity',
    options.identity ?? EMAIL,
    '--certificate-oidc-issuer',
    options.issuer ?? ca.issuer.url,
    '--insecure-ignore-tlog=true',
    '--insecure-ignore-sct=true',
    '--use-signed-timestamps=true',
  ];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
