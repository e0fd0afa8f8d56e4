import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIssuer, type DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import {
  chainsTo,
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  repoRoot,
  signingBody,
  startMayflyProcess,
  trustBundle,
  waitFor,
  type MayflyProcess,
  type SigningOutcome,
} from '../../helpers/mayfly-process';
import { SoftHsm } from '../../helpers/softhsm';

/**
 * The rotation drill with the CA key in an HSM (SoftHSM2), on the compiled process, under
 * a steady load of signing requests:
 *
 *   ceremony   `mayfly ca create`: root and intermediate keys generated in the token;
 *   stage      `mayfly ca rotate`: a new intermediate key in the token, its chain published
 *              as next (the trust bundle carries both) while the old key signs;
 *   switch     `mayfly ca promote`: the new key signs, the old chain stays published.
 *
 * The server finds each key in the token from its certificate alone (no key label), so the
 * whole rotation is a change of files. Not one request may fail, and every certificate must
 * verify against the trust bundle that was published when its request started, and the one
 * published after it was answered.
 */

const PIN = '8642';
const TOKEN = `drill-${process.pid}-${Date.now().toString(36)}`;
let hsm: SoftHsm;
let issuer: DevIssuer;
let proc: MayflyProcess | undefined;

beforeAll(async () => {
  ensureBuilt();
  hsm = new SoftHsm();
  issuer = await startDevIssuer();
}, 120_000);

afterAll(async () => {
  proc?.child.kill('SIGKILL');
  await issuer?.close();
  hsm?.close();
});

test('rotation drill under load: next published, signing switches, previous kept; zero failures', async () => {
  hsm.initToken(TOKEN, PIN);
  const pinFile = join(mkdtempSync(join(hsm.dir, 'pin-')), 'pin');
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });
  const out = mkdtempSync(join(hsm.dir, 'drill-'));
  const token = ['--module', hsm.module, '--token-label', TOKEN, '--pin-file', pinFile];
  const mayfly = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'dist/services/cli/main.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', ...hsm.env },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`mayfly ${args.join(' ')}: ${r.stderr}`);
  };
  mayfly(['ca', 'create', '--out', out, ...token]);
  writeFileSync(join(out, 'next-chain.pem'), '');

  proc = await startMayflyProcess({
    ...hsm.env,
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer),
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'pkcs11',
    MAYFLY_CA_CERT: join(out, 'chain.pem'),
    MAYFLY_CA_NEXT_CERT: join(out, 'next-chain.pem'),
    MAYFLY_CA_PREVIOUS_CERT: join(out, 'previous-chain.pem'),
    MAYFLY_CA_PKCS11_MODULE: hsm.module,
    MAYFLY_CA_PKCS11_TOKEN_LABEL: TOKEN,
    MAYFLY_CA_PKCS11_PIN_FILE: pinFile,
    MAYFLY_CA_RELOAD_INTERVAL_MS: '200',
  });
  const url = proc.url;

  // What verifiers see: the trust bundle, polled all along.
  // `at`: when the fetch started; `done`: when its answer was in.
  const bundles: { at: number; done: number; chains: X509Certificate[][] }[] = [];
  const snapshot = async () => {
    const at = Date.now();
    const chains = await trustBundle(url);
    bundles.push({ at, done: Date.now(), chains });
  };
  await snapshot();
  const outcomes: SigningOutcome[] = [];
  let stop = false;
  let n = 0;
  const poller = (async () => {
    while (!stop) {
      await snapshot();
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const clients = Array.from({ length: 3 }, async () => {
    while (!stop) {
      const body = await signingBody(issuer, `drill-${++n}@example.com`);
      outcomes.push(await postSigningRequest(url, body));
    }
  });
  const issuedBy = (o: SigningOutcome) => o.certificates?.[1]?.raw.toString('base64');
  try {
    await waitFor(() => outcomes.length >= 20, 'certificates from the first intermediate', 30_000);
    const first = issuedBy(outcomes[0]!)!;

    mayfly(['ca', 'rotate', '--out', out, ...token, '--key-label', 'mayfly-intermediate-2']);
    await waitFor(
      () => bundles.some((b) => b.chains.length === 2),
      'the next chain in the trust bundle',
    );
    // Verifiers refresh; the old key still signs meanwhile.
    const stagedAt = Date.now();
    await waitFor(
      () => outcomes.filter((o) => o.startedAt > stagedAt).length >= 20,
      'load while staged',
      30_000,
    );
    expect(outcomes.filter((o) => o.startedAt > stagedAt).every((o) => issuedBy(o) === first)).toBe(
      true,
    );

    mayfly(['ca', 'promote', '--out', out]);
    const second = await waitFor(
      () => outcomes.map(issuedBy).find((i) => i !== undefined && i !== first),
      'a certificate from the new intermediate',
    );
    const switchedAt = outcomes.find((o) => issuedBy(o) === second)!.endedAt;
    await waitFor(
      () => outcomes.filter((o) => o.startedAt > switchedAt).length >= 20,
      'load after the switch',
      30_000,
    );
    stop = true;
    await Promise.all([...clients, poller]);
    await snapshot();

    // Zero failed requests.
    expect(outcomes.filter((o) => o.status !== 200)).toEqual([]);
    // Requests that started after the switch was seen all come from the new intermediate.
    expect(
      outcomes.filter((o) => o.startedAt > switchedAt).every((o) => issuedBy(o) === second),
    ).toBe(true);
    // The previous chain is still published at the end, next to the new one.
    const last = bundles[bundles.length - 1]!.chains.map((c) => c[0]!.raw.toString('base64'));
    expect(last).toEqual([second, first]);

    // Each certificate verifies against the bundle published when its request started and
    // the one published after it was answered.
    const bundleAt = (t: number, after: boolean) =>
      after ? bundles.find((b) => b.at >= t) : [...bundles].reverse().find((b) => b.at <= t);
    for (const o of outcomes) {
      const leaf = o.certificates![0]!;
      for (const bundle of [bundleAt(o.startedAt, false), bundleAt(o.endedAt, true)]) {
        expect(bundle).toBeDefined();
        expect(bundle!.chains.some((chain) => chainsTo(leaf, chain))).toBe(true);
      }
    }
    expect(proc.child.exitCode).toBeNull();
  } finally {
    stop = true;
    await Promise.allSettled([...clients, poller]);
  }
}, 180_000);
