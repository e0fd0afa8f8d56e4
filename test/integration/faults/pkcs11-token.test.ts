import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIssuer, type DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import {
  chainsTo,
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  probe,
  signingBody,
  startMayflyProcess,
  waitFor,
  type MayflyProcess,
  type SigningOutcome,
} from '../../helpers/mayfly-process';
import { SoftHsm, makeChain } from '../../helpers/softhsm';
import { CA_BACKEND_ERROR } from './client';

/**
 * The HSM goes away under load and comes back: the SoftHSM token holding the CA key is
 * deleted while three clients keep asking for certificates, then re-created with the same
 * key. The compiled process must answer 500 (Fulcio's fixed message) for the gap only,
 * report not-ready while no session can sign, reconnect by itself (no restart) and issue
 * again; nothing but 200 and 500 is ever answered and every certificate verifies.
 */

// Long and not hex, so that finding it in the log can only mean the PIN leaked (a short
// numeric PIN turns up by chance in serials and digests).
const PIN = 'pin-never-logged-Zq7';
const TOKEN = `fault-${process.pid}-${Date.now().toString(36)}`;
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

test('token deleted and re-created under load: 500 for the gap only, then signing resumes', async () => {
  const ca = await makeChain('p256');
  hsm.initToken(TOKEN, PIN);
  hsm.importKey(TOKEN, PIN, ca.key, 'issuing', '01');
  const dir = mkdtempSync(join(hsm.dir, 'fault-'));
  writeFileSync(join(dir, 'chain.pem'), ca.chainPem);
  writeFileSync(join(dir, 'pin'), `${PIN}\n`);
  proc = await startMayflyProcess({
    ...hsm.env,
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer),
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'pkcs11',
    MAYFLY_CA_CERT: join(dir, 'chain.pem'),
    MAYFLY_CA_PKCS11_MODULE: hsm.module,
    MAYFLY_CA_PKCS11_TOKEN_LABEL: TOKEN,
    MAYFLY_CA_PKCS11_KEY_LABEL: 'issuing',
    MAYFLY_CA_PKCS11_PIN_FILE: join(dir, 'pin'),
    MAYFLY_CA_PKCS11_SESSIONS: '2',
    MAYFLY_CA_PKCS11_RECONNECT_MS: '100',
  });
  const url = proc.url;
  const outcomes: SigningOutcome[] = [];
  const readiness: { at: number; status: number | string }[] = [];
  let stop = false;
  let n = 0;
  const clients = Array.from({ length: 3 }, async () => {
    while (!stop) {
      const body = await signingBody(issuer, `hsm-fault-${++n}@example.com`);
      outcomes.push(await postSigningRequest(url, body));
    }
  });
  const watcher = (async () => {
    while (!stop) {
      readiness.push({ at: Date.now(), status: await probe(`${url}/readyz`) });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const ok = (after: number) => outcomes.filter((o) => o.status === 200 && o.startedAt >= after);
  try {
    await waitFor(() => ok(0).length >= 20, 'certificates before the fault', 30_000);
    const deletedAt = Date.now();
    hsm.deleteToken(TOKEN);
    await waitFor(() => outcomes.some((o) => o.status === 500), 'a 500 while the token is gone');
    await waitFor(
      () => readiness.some((r) => r.at > deletedAt && r.status === 503),
      'not ready while the token is gone',
    );
    // The token stays away for a while under load.
    await new Promise((r) => setTimeout(r, 1000));
    const recreatedAt = Date.now();
    hsm.initToken(TOKEN, PIN);
    hsm.importKey(TOKEN, PIN, ca.key, 'issuing', '01');
    await waitFor(
      () => ok(recreatedAt).length >= 20,
      'certificates after the token is back',
      30_000,
    );
    const recoveredAt = Math.min(...ok(recreatedAt).map((o) => o.endedAt));
    await waitFor(
      () => readiness.some((r) => r.at > recoveredAt && r.status === 200),
      'ready again',
    );
    stop = true;
    await Promise.all([...clients, watcher]);

    // Only 200 and 500, never a dropped connection or another status.
    expect(outcomes.filter((o) => o.status !== 200 && o.status !== 500)).toEqual([]);
    const failures = outcomes.filter((o) => o.status === 500);
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) {
      // The gap: after the token went, before signing was seen to work again.
      expect(f.endedAt).toBeGreaterThanOrEqual(deletedAt);
      expect(f.startedAt).toBeLessThanOrEqual(recoveredAt);
      expect(f.body).toBe(CA_BACKEND_ERROR);
    }
    // Nothing fails once signing works again.
    expect(outcomes.filter((o) => o.startedAt > recoveredAt && o.status !== 200)).toEqual([]);
    expect(readiness.some((r) => r.at < deletedAt && r.status === 200)).toBe(true);
    // Every certificate, before and after, chains to the same CA.
    const chain = ca.chain.map((d) => new X509Certificate(d));
    for (const o of outcomes.filter((x) => x.status === 200))
      expect(chainsTo(o.certificates![0]!, chain)).toBe(true);
    // The process reconnected by itself: same process, logs say so.
    expect(proc.child.exitCode).toBeNull();
    const messages = proc.logs().map((l) => l.msg);
    expect(messages).toContain('PKCS#11 token lost: signing stops until it is back');
    expect(messages).toContain('PKCS#11 token back: signing resumes');
    expect(proc.stdout()).not.toContain(PIN);
  } finally {
    stop = true;
    await Promise.allSettled([...clients, watcher]);
  }
}, 120_000);
