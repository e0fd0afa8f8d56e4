import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkInclusion, makeLogKey, type LogKeyFiles } from '../../bench/lib/soak/ctlog';
import { verdict, type CtOutcome, type SoakReport } from '../../bench/lib/soak/report';
import { embeddedScts, verifyEmbeddedSct } from '../../bench/lib/soak/sct';
import { CertificateChecker } from '../../bench/lib/soak/verify';
import {
  FULCIO_OID,
  type CertificateIdentity,
} from '../../services/ca/certificate-identity/certificate-identity';
import {
  CertificateAuthority,
  type IssuedCertificate,
} from '../../services/ca/issuance/certificate-authority';
import { CtLogs } from '../../services/ca/issuance/ct-logs';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { randomSerial } from '../../services/ca/issuance/serial';
import { systemClock } from '../../services/common/clock';
import { ctLogKey } from '../../services/common/ct/sct';
import { encodePem } from '../../services/common/encoding';
import { silentLogger } from '../../services/common/logger';
import { generateEphemeralKey, type CaSigner } from '../../services/common/signer/signer';
import { startCtlog, type CtlogApp } from '../../services/ctlog/app';
import { loadCtlogConfig } from '../../services/ctlog/config';
import { buildGo } from '../helpers/go-refs';
import { makeKey } from '../helpers/keys';

/**
 * The soak's CT checks (`npm run soak -- --ct`) on real certificates from mayfly's CA with
 * SCTs from mayfly's log (a real log on a loopback port): the soak's own SCT verification
 * (bench/lib/soak/sct.ts) and the final check by certificate-transparency-go
 * (test/go/soak-ct-check) accept them, and each refuses what it must: a tampered SCT or
 * certificate, another log's key, no SCT, an entry that is not in the log it is checked
 * against (a second log with the same key: the SCT verifies, the inclusion cannot). And the
 * verdict fails the run on a missing SCT or a missing entry.
 */

let work: string;
let signer: CaSigner;
let logKey: LogKeyFiles;
let logA: CtlogApp;
let logB: CtlogApp;

function startLog(name: string): Promise<CtlogApp> {
  return startCtlog(
    loadCtlogConfig({
      MAYFLY_CTLOG_HOST: '127.0.0.1',
      MAYFLY_CTLOG_PORT: '0',
      MAYFLY_CTLOG_ROOTS: join(work, 'roots.pem'),
      MAYFLY_CTLOG_DIR: join(work, name),
      MAYFLY_CTLOG_KEY: logKey.keyFile,
      MAYFLY_CTLOG_SEQUENCE_INTERVAL_MS: '20',
      MAYFLY_CTLOG_SHUTDOWN_GRACE_MS: '500',
    }),
    silentLogger,
    systemClock,
  );
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-soak-ct-'));
  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  writeFileSync(
    join(work, 'roots.pem'),
    encodePem('CERTIFICATE', signer.chain[signer.chain.length - 1]!),
  );
  // The soak's own key maker: both logs load the same PKCS#8 file.
  logKey = makeLogKey(work);
  logA = await startLog('a');
  logB = await startLog('b');
}, 60_000);

afterAll(async () => {
  await logA.close();
  await logB.close();
  rmSync(work, { recursive: true, force: true });
});

const identity: CertificateIdentity = {
  san: { type: 'email', value: 'soak@example.com' },
  extensions: [{ oid: FULCIO_OID.issuerV2, value: 'https://issuer.example.com', encoding: 'utf8' }],
};

async function issue(logUrl?: string): Promise<{ issued: IssuedCertificate; spki: Buffer }> {
  const ct = logUrl
    ? new CtLogs({
        logs: [{ url: logUrl, publicKeyFile: logKey.publicKeyFile }],
        minScts: 1,
        timeoutMs: 5000,
      })
    : undefined;
  const ca = new CertificateAuthority(signer, ct ? { ct } : {});
  const spki = makeKey('p256').publicKey.export({ type: 'spki', format: 'der' });
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const issued = await ca.issue({
    publicKey: new Uint8Array(spki),
    identity,
    serial: randomSerial(),
    notBefore,
    notAfter: new Date(notBefore.getTime() + 600_000),
  });
  return { issued, spki };
}

const issuingSpki = () =>
  new X509Certificate(signer.chain[0]!).publicKey.export({ type: 'spki', format: 'der' });
const chainCerts = () => signer.chain.map((d) => new X509Certificate(d));
const pems = (issued: IssuedCertificate) =>
  [issued.der, ...issued.chain].map((d) => encodePem('CERTIFICATE', d));

/** The DER with one byte changed at `at` (from the end when negative). */
function flipped(der: Uint8Array, at: number): Buffer {
  const out = Buffer.from(der);
  const i = at < 0 ? out.length + at : at;
  out[i] = out[i]! ^ 0x01;
  return out;
}

test("the soak's SCT check accepts mayfly's certificates and refuses tampered ones", async () => {
  const { issued, spki } = await issue(logA.url);
  const der = Buffer.from(issued.der);
  const ok = verifyEmbeddedSct(der, issuingSpki(), logKey.key);
  expect(ok.sct.logId).toEqual(logKey.key.logId);
  expect(ok.leafIndex).toBeGreaterThanOrEqual(0);

  // The SCT list's own bytes: the signature at its end, and the timestamp inside it.
  const list = embeddedScts(der)!.list;
  const at = der.indexOf(list);
  expect(at).toBeGreaterThan(0);
  expect(() =>
    verifyEmbeddedSct(flipped(der, at + list.length - 1), issuingSpki(), logKey.key),
  ).toThrow(/does not verify/);
  expect(() => verifyEmbeddedSct(flipped(der, at + 4 + 33 + 7), issuingSpki(), logKey.key)).toThrow(
    /does not verify/,
  );
  // A byte of the certificate outside the SCT list (the subject key): the precert TBS differs.
  const keyAt = der.indexOf(spki.subarray(spki.length - 8));
  expect(() => verifyEmbeddedSct(flipped(der, keyAt), issuingSpki(), logKey.key)).toThrow(
    /does not verify/,
  );
  // Another issuer key hash, another log.
  const other = makeKey('p256').publicKey;
  expect(() =>
    verifyEmbeddedSct(der, other.export({ type: 'spki', format: 'der' }), logKey.key),
  ).toThrow(/does not verify/);
  expect(() => verifyEmbeddedSct(der, issuingSpki(), ctLogKey(other))).toThrow(
    /0 SCTs of the soak's log/,
  );

  // The checker the soak runs: right with the SCT, wrong without one.
  const checker = new CertificateChecker(chainCerts(), logKey.key);
  expect(checker.check({ email: 'soak@example.com', spki }, pems(issued))).toBeUndefined();
  expect(checker.ctFigures.sctVerified).toBe(1);
  expect(checker.ctFigures.leaves).toHaveLength(1);
  const plain = await issue();
  expect(embeddedScts(Buffer.from(plain.issued.der))).toBeUndefined();
  expect(checker.check({ email: 'soak@example.com', spki: plain.spki }, pems(plain.issued))).toBe(
    'SCT: no embedded SCT list',
  );
  expect(checker.ctFigures.sctVerified).toBe(1);
});

test('ct-go finds every entry in the log, and not in another log with the same key', async () => {
  const inA = await Promise.all([1, 2, 3].map(() => issue(logA.url)));
  const inB = await issue(logB.url);
  const bin = buildGo('test/go/soak-ct-check');
  const leaves = inA.map((x) => Buffer.from(x.issued.der));
  const good = await checkInclusion(bin, logA.url, logKey, chainCerts(), leaves);
  expect(good).toMatchObject({ code: 0, checked: 3, sctVerified: 3, included: 3, failures: [] });
  expect(good.treeSize).toBeGreaterThanOrEqual(3);

  // B's SCT verifies with the shared key, but the entry is not in A's tree.
  const mixed = await checkInclusion(bin, logA.url, logKey, chainCerts(), [
    ...leaves,
    Buffer.from(inB.issued.der),
  ]);
  expect(mixed).toMatchObject({ code: 1, checked: 4, sctVerified: 4, included: 3 });
  expect(mixed.failures.join('\n')).toMatch(/^leaf 3: /m);

  // A certificate without SCT, and a wrong log key.
  const plain = await issue();
  const none = await checkInclusion(bin, logA.url, logKey, chainCerts(), [
    Buffer.from(plain.issued.der),
  ]);
  expect(none).toMatchObject({ code: 1, checked: 1, sctVerified: 0, included: 0 });
  const otherKey = makeLogKey(mkdtempSync(join(work, 'other-')));
  const wrongKey = await checkInclusion(bin, logA.url, otherKey, chainCerts(), leaves);
  // ct-go refuses the STH signed by another key before it checks any leaf.
  expect(wrongKey.code).not.toBe(0);
  expect(wrongKey.included).toBe(0);
}, 120_000);

test('the verdict fails a run with a certificate without SCT or an entry not in the log', () => {
  const inclusion = {
    treeSize: 10,
    checked: 10,
    sctVerified: 10,
    included: 10,
    failures: [],
    code: 0,
    ms: 1,
  };
  const ct: CtOutcome = {
    sctVerified: 10,
    maxLeafIndex: 9,
    skewMs: [0, 10],
    published: true,
    inclusion,
    logReplicas: [],
    access: {
      requests: 0,
      byStatus: {},
      retriedUpstream: 0,
      abandonedAttempts: {},
      cutAttempts: [],
    },
    logLines: new Map(),
  };
  const report = (c: CtOutcome) =>
    ({
      options: { target: 0.9999 },
      stats: { requests: 10, succeeded: 10, wrongCertificates: 0 },
      cuts: { duringDrain: 0, byReplica: {} },
      schedule: [],
      ct: c,
    }) as unknown as SoakReport;
  expect(verdict(report(ct))).toMatchObject({ pass: true, reasons: [] });
  expect(verdict(report({ ...ct, sctVerified: 9 })).pass).toBe(false);
  const missing = { ...inclusion, included: 9, code: 1, failures: ['leaf 4: inclusion'] };
  const v = verdict(report({ ...ct, inclusion: missing }));
  expect(v.pass).toBe(false);
  expect(v.reasons.join()).toMatch(/9 of 10 certificates' entries/);
});
