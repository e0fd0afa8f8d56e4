import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createAuditLogger } from '../../../services/ca/audit/audit-log';
import { systemClock } from '../../../services/common/clock';
import { createLogger } from '../../../services/common/logger';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import {
  CA_BACKEND_ERROR,
  TOKEN_ERROR,
  VERSIONS,
  issuedStatus,
  requestCertificate,
  type Answer,
  type ApiVersion,
} from './client';
import { until } from '../../helpers/wait';

/**
 * The CA's signer fails: it throws (an HSM or KMS error), it returns a signature that is
 * not one (garbage, or a signature by another key), or it never answers. The client gets
 * Fulcio's 500 (code 13, "error communicating with CA backend") and nothing else: no
 * detail, no stack, no certificate. The failure is in the metrics, in the operational log
 * with the request id, and in the audit log as a failed request; the process keeps serving
 * and issues again as soon as the signer does.
 */

const EMAIL = 'signer-faults@example.com';
/** What the failing signer says: it must reach the operational log and nothing else. */
const SIGNER_DETAIL = 'pkcs11: C_Sign failed on slot 3 (CKR_DEVICE_ERROR) /opt/hsm/libsofthsm2.so';

/** What the post-sign check logs about a certificate whose signature is not the CA's. */
const WRONG_SIGNATURE = /issued certificate failed its check: signature does not verify/;

/** Short enough for a test, long enough for the checks made while a request waits. */
const SIGN_TIMEOUT_MS = 3000;

type SignerMode = 'ok' | 'rejects' | 'throws' | 'random-bytes' | 'empty' | 'other-key' | 'hangs';

/** A real ephemeral CA whose signature step a test can break and mend. */
async function controllableSigner() {
  const inner = await createEphemeralChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    systemClock,
  );
  const otherKey = generateEphemeralKey();
  const hung: { tbs: Uint8Array; resolve: (signature: Uint8Array) => void }[] = [];
  let mode: SignerMode = 'ok';
  const signer: CaSigner = {
    chain: inner.chain,
    publicKey: inner.publicKey,
    hash: inner.hash,
    sign(tbs) {
      switch (mode) {
        case 'rejects':
          return Promise.reject(new Error(SIGNER_DETAIL));
        case 'throws':
          throw new Error(SIGNER_DETAIL);
        case 'random-bytes':
          return Promise.resolve(new Uint8Array(randomBytes(71)));
        case 'empty':
          return Promise.resolve(new Uint8Array(0));
        case 'other-key':
          return otherKey.sign(tbs);
        case 'hangs':
          return new Promise((resolve) => hung.push({ tbs, resolve }));
        default:
          return inner.sign(tbs);
      }
    },
  };
  return {
    signer,
    setMode: (next: SignerMode) => (mode = next),
    hungCalls: () => hung.length,
    /** Lets every hung call finish with a real signature. */
    async release(): Promise<void> {
      for (const call of hung.splice(0)) call.resolve(await inner.sign(call.tbs));
    },
  };
}

function sink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

const audit = sink();
const operational = sink();
let control: Awaited<ReturnType<typeof controllableSigner>>;
let ca: TestCa;

beforeAll(async () => {
  control = await controllableSigner();
  ca = await startTestCa({
    env: { MAYFLY_CA_SIGN_TIMEOUT_MS: String(SIGN_TIMEOUT_MS) },
    overrides: { signer: control.signer },
    logger: createLogger('info', operational.stream),
    auditLogger: createAuditLogger({ destination: audit.stream }),
  });
  await ca.listen();
});
afterAll(async () => {
  await control.release();
  await ca.close();
});
afterEach(() => control.setMode('ok'));

/** The sum of a metric's samples whose labels include `labels`. */
async function metricSum(name: string, labels: Record<string, string> = {}): Promise<number> {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return (await ca.app.metrics.registry.metrics())
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => wanted.every((w) => l.includes(w)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function ask(version: ApiVersion, signal?: AbortSignal): Promise<Answer> {
  return requestCertificate(ca.url, await ca.issuer.mintEmail(EMAIL), version, EMAIL, signal);
}

function expectIssued(answer: Answer, version: ApiVersion): void {
  expect({ status: answer.status, certificates: answer.certificates }).toEqual({
    status: issuedStatus(version),
    certificates: 3,
  });
}

/** Fulcio's 500 byte for byte: no detail, no stack, no certificate. */
function expectCaBackendError(answer: Answer): void {
  expect({ status: answer.status, text: answer.text }).toEqual({
    status: 500,
    text: CA_BACKEND_ERROR,
  });
  expect(answer.certificates).toBe(0);
}

/**
 * Breaks the signer in `mode`, sends one request per API version, and checks everything a
 * failed signing must leave behind; then mends it and checks that issuance is back.
 */
async function failsCleanly(mode: SignerMode, signerResult: 'ok' | 'error', logged: RegExp) {
  const issuedBefore = await metricSum('mayfly_certificates_issued_total');
  const signerBefore = await metricSum('mayfly_signer_duration_seconds_count', {
    result: signerResult,
  });
  const http500Before = await metricSum('mayfly_http_request_duration_seconds_count', {
    code: '500',
  });
  const auditFrom = audit.lines.length;
  const logFrom = operational.lines.length;

  control.setMode(mode);
  const answers: Answer[] = [];
  for (const version of VERSIONS) {
    const answer = await ask(version);
    expectCaBackendError(answer);
    answers.push(answer);
  }
  // The process is fine meanwhile: liveness, the trust bundle and client errors answer.
  expect((await fetch(`${ca.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${ca.url}/api/v2/trustBundle`)).status).toBe(200);
  const refused = await requestCertificate(ca.url, 'not-a-token', 'v2', EMAIL);
  expect({ status: refused.status, text: refused.text }).toEqual({
    status: 400,
    text: TOKEN_ERROR,
  });

  // Metrics: no certificate counted, the signer's result and the 500s are.
  expect(await metricSum('mayfly_certificates_issued_total')).toBe(issuedBefore);
  expect(await metricSum('mayfly_signer_duration_seconds_count', { result: signerResult })).toBe(
    signerBefore + 2,
  );
  expect(await metricSum('mayfly_http_request_duration_seconds_count', { code: '500' })).toBe(
    http500Before + 2,
  );

  // The audit log, written by the CA: the certificate it was about to sign, then its
  // failure (same serial), on the request's route, without the detail.
  const audited = audit.lines.slice(auditFrom).filter((l) => l.event !== 'signing_refused');
  expect(audited.map((l) => [l.event, l.code, l.status, l.route, l.requestId])).toEqual(
    answers.flatMap((a, i) => [
      ['certificate_signing', undefined, undefined, `/api/${VERSIONS[i]}/signingCert`, a.requestId],
      ['signing_failed', 'ca_backend', 500, `/api/${VERSIONS[i]}/signingCert`, a.requestId],
    ]),
  );
  for (let i = 0; i < audited.length; i += 2)
    expect(audited[i + 1]!.serial).toBe(audited[i]!.serial);
  expect(JSON.stringify(audit.lines.slice(auditFrom))).not.toContain('slot 3');

  // The operational log has why, under the request id.
  for (const answer of answers) {
    const line = operational.lines
      .slice(logFrom)
      .find((l) => l.requestId === answer.requestId && l.msg === 'request failed');
    expect(line).toMatchObject({ code: 'ca_backend', level: 50 });
    expect(String(line?.detail)).toMatch(logged);
  }

  control.setMode('ok');
  for (const version of VERSIONS) expectIssued(await ask(version), version);
  expect(await metricSum('mayfly_certificates_issued_total')).toBe(issuedBefore + 2);
}

describe('a signer that fails', () => {
  test('rejecting (an HSM error): Fulcio 500 code 13 with no detail, counted, logged, audited as failed, and issuance resumes once it recovers', async () => {
    await failsCleanly('rejects', 'error', /signing failed: pkcs11: C_Sign failed on slot 3/);
  });

  test('throwing synchronously: the same clean 500, and the process keeps serving', async () => {
    await failsCleanly('throws', 'error', /signing failed: pkcs11: C_Sign failed on slot 3/);
  });
});

describe('a signer that returns a wrong signature', () => {
  test('random bytes: the check after signing catches it and no certificate leaves', async () => {
    await failsCleanly('random-bytes', 'ok', WRONG_SIGNATURE);
  });

  test('an empty signature: the check after signing catches it and no certificate leaves', async () => {
    await failsCleanly('empty', 'ok', WRONG_SIGNATURE);
  });

  test('a valid signature by another key: the check after signing catches it and no certificate leaves', async () => {
    await failsCleanly('other-key', 'ok', WRONG_SIGNATURE);
  });
});

describe('a signer that never answers', () => {
  test("fails its request with Fulcio's 500 once the signing timeout passes, while the rest of the service keeps answering and issuing; a late signature makes no certificate", async () => {
    const issuedBefore = await metricSum('mayfly_certificates_issued_total');
    const timeoutsBefore = await metricSum('mayfly_signer_duration_seconds_count', {
      result: 'error',
    });
    control.setMode('hangs');
    const sent = performance.now();
    const hung = ask('v2').then((answer) => ({ answer, ms: performance.now() - sent }));
    // The token and the proof of possession were verified and a serial drawn before this.
    await until(() => control.hungCalls() === 1, 'the request to reach the signer');

    const started = performance.now();
    expect((await fetch(`${ca.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${ca.url}/api/v2/trustBundle`)).status).toBe(200);
    const refused = await requestCertificate(ca.url, 'not-a-token', 'v1', EMAIL);
    expect(refused.status).toBe(400);
    control.setMode('ok');
    for (const version of VERSIONS) expectIssued(await ask(version), version);
    expect(performance.now() - started).toBeLessThan(SIGN_TIMEOUT_MS);

    const { answer, ms } = await hung;
    expectCaBackendError(answer);
    expect(ms).toBeGreaterThanOrEqual(SIGN_TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(SIGN_TIMEOUT_MS + 2000);
    expect(await metricSum('mayfly_signer_duration_seconds_count', { result: 'error' })).toBe(
      timeoutsBefore + 1,
    );

    // The signer answers at last: the request is long over, and nothing more is issued.
    await control.release();
    expect(await metricSum('mayfly_certificates_issued_total')).toBe(issuedBefore + 2);
    expectIssued(await ask('v1'), 'v1');
  });
});
