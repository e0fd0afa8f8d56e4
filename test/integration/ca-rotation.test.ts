import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import { SecretVolume, makeTestCa, type TestCaFiles } from '../helpers/ca-files';
import {
  chainsTo,
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  signingBody,
  startMayflyProcess,
  trustBundle,
  waitFor,
  type SigningOutcome,
} from '../helpers/mayfly-process';

/**
 * Zero-downtime CA rotation on the compiled process, with the CA in a folder laid out like
 * a Kubernetes Secret volume (files behind a `..data` symlink that is swapped in one
 * rename), under a steady stream of signing requests:
 *
 *   1. stage: the next chain is published in the trust bundle while the old CA signs;
 *   2. swap: the new chain and key sign, the old chain stays published as the previous one;
 *   3. a bad update (a key that does not match its chain) is refused: the CA keeps signing.
 *
 * No request may fail at any point, and every request started after the first certificate
 * from the new CA came back must chain to the new CA.
 */

let issuer: DevIssuer;
let identityConfig: string;
let oldCa: TestCaFiles;
let newCa: TestCaFiles;
let strayCa: TestCaFiles;

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
  [oldCa, newCa, strayCa] = await Promise.all([
    makeTestCa('old password'),
    makeTestCa('new password'),
    makeTestCa(),
  ]);
}, 120_000);

afterAll(async () => {
  await issuer?.close();
});

const sameCert = (a: { raw: Buffer }, b: { raw: Buffer }) => a.raw.equals(b.raw);

test('staged next chain, swap and a refused bad key, under load, without one failed request', async () => {
  const volume = new SecretVolume(join(mkdtempSync(join(tmpdir(), 'mayfly-rotation-')), 'ca'));
  volume.write(SecretVolume.filesFor(oldCa, { 'next-chain.pem': '' }));
  const proc = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'file',
    MAYFLY_CA_CERT: volume.path('chain.pem'),
    MAYFLY_CA_KEY: volume.path('key.pem'),
    MAYFLY_CA_KEY_PASSWORD_FILE: volume.path('key-password'),
    MAYFLY_CA_NEXT_CERT: volume.path('next-chain.pem'),
    MAYFLY_CA_PREVIOUS_CERT: volume.path('previous-chain.pem'),
    // The watch sees the swap at once; the timer is the fallback.
    MAYFLY_CA_RELOAD_INTERVAL_MS: '1000',
  });
  const outcomes: SigningOutcome[] = [];
  let stop = false;
  let n = 0;
  const clients = Array.from({ length: 3 }, async () => {
    while (!stop) {
      const body = await signingBody(issuer, `rotation-${++n}@example.com`);
      outcomes.push(await postSigningRequest(proc.url, body));
    }
  });
  const issuedBy = (o: SigningOutcome) => o.certificates?.[1];
  try {
    await waitFor(() => outcomes.length >= 10, 'certificates from the old CA');
    let bundle = await trustBundle(proc.url);
    expect(bundle).toHaveLength(1);
    expect(sameCert(bundle[0]![0]!, oldCa.issuing)).toBe(true);

    // 1. Stage the next chain: published first, the old CA still signs.
    volume.write(SecretVolume.filesFor(oldCa, { 'next-chain.pem': newCa.chainPem }));
    const stagedUntil = Date.now() + 15_000;
    while (bundle.length !== 2 && Date.now() < stagedUntil) {
      await new Promise((r) => setTimeout(r, 50));
      bundle = await trustBundle(proc.url);
    }
    expect(bundle).toHaveLength(2);
    expect(sameCert(bundle[0]![0]!, oldCa.issuing)).toBe(true);
    expect(sameCert(bundle[1]![0]!, newCa.issuing)).toBe(true);
    const staged = outcomes.length;
    await waitFor(() => outcomes.length >= staged + 10, 'more certificates while staged');
    expect(outcomes.slice(staged).every((o) => sameCert(issuedBy(o)!, oldCa.issuing))).toBe(true);

    // 2. Swap: the new CA signs, the old chain stays published as the previous one.
    volume.write(SecretVolume.filesFor(newCa, { 'previous-chain.pem': oldCa.chainPem }));
    const firstNew = await waitFor(
      () => outcomes.find((o) => issuedBy(o) && sameCert(issuedBy(o)!, newCa.issuing)),
      'a certificate from the new CA',
    );
    const swapSeen = firstNew.endedAt;
    await waitFor(
      () => outcomes.filter((o) => o.startedAt > swapSeen).length >= 10,
      'more certificates after the swap',
    );
    bundle = await trustBundle(proc.url);
    expect(bundle.map((c) => c[0]!.fingerprint256)).toEqual([
      newCa.issuing.fingerprint256,
      oldCa.issuing.fingerprint256,
    ]);

    // 3. A bad update: the stray CA's chain with the new CA's key. Refused; still signing.
    volume.write({
      ...SecretVolume.filesFor(newCa, { 'previous-chain.pem': oldCa.chainPem }),
      'chain.pem': strayCa.chainPem,
    });
    await waitFor(
      () => proc.logs().some((l) => String(l.msg).includes('were refused')),
      'the bad update to be refused',
    );
    const refusedAt = Date.now();
    await waitFor(
      () => outcomes.filter((o) => o.startedAt > refusedAt).length >= 10,
      'certificates after the refused update',
    );

    stop = true;
    await Promise.all(clients);

    // Not one request failed, before, during or after any of the three updates.
    expect(outcomes.filter((o) => o.status !== 200)).toEqual([]);
    // Each certificate chains to the chain it came with, which is the old or the new CA.
    for (const o of outcomes) {
      const [leaf, ...chain] = o.certificates!;
      expect(chainsTo(leaf!, chain)).toBe(true);
    }
    // Everything started after the first new certificate came back is from the new CA.
    const late = outcomes.filter((o) => o.startedAt > swapSeen);
    expect(late.length).toBeGreaterThan(0);
    expect(late.filter((o) => !sameCert(issuedBy(o)!, newCa.issuing))).toEqual([]);
    const reloads = proc.logs().filter((l) => String(l.msg).startsWith('CA files changed'));
    expect(reloads.map((l) => l.msg)).toEqual([
      'CA files changed: now signing with the reloaded CA',
      'CA files changed: now signing with the reloaded CA',
      'CA files changed but were refused; still signing with the previous CA',
    ]);

    const metrics = await (await fetch(`http://127.0.0.1:${proc.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/mayfly_ca_reloads_total\{result="reloaded"\} 2/);
    expect(metrics).toMatch(/mayfly_ca_reloads_total\{result="refused"\} 1/);
    expect(metrics).toMatch(/mayfly_ca_trust_bundle_chains 2/);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  } finally {
    stop = true;
    proc.child.kill('SIGKILL');
  }
}, 60_000);
