import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { ConfigError, loadServerConfig } from '../../../services/ca/config/loader';
import { systemClock } from '../../../services/common/clock';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import type { CtlogApp } from '../../../services/ctlog/app';
import { buildGo } from '../../helpers/go-refs';
import { startTestGrpc, v2Message } from '../../helpers/grpc';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../../helpers/mayfly';
import { startTestCtlog } from '../../helpers/ctlog';

/**
 * The API with a CT log configured (MAYFLY_CT_LOG_URL, MAYFLY_CT_LOG_PUBLIC_KEY_FILE): v2
 * answers signedCertificateEmbeddedSct, v1 answers the chain with no SCT header (as Fulcio in
 * the embedded flow), the CT metrics count per log, and a log that cannot give an SCT gets
 * Fulcio's 500 within the CT timeout with no certificate issued.
 */

const EMAIL = 'alice@example.com';
let work: string;
let signer: CaSigner;
let log: CtlogApp;
let logKeyFile: string;
let ca: TestCa;
const sockets: Socket[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-api-ct-'));
  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  ({ app: log, keyFile: logKeyFile } = await startTestCtlog({
    roots: [{ der: Buffer.from(signer.chain[signer.chain.length - 1]!) }],
    work,
  }));
  ca = await startTestCa({
    env: { MAYFLY_CT_LOG_URL: `${log.url}/`, MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile },
    overrides: { signer },
  });
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await ca?.close();
  await log?.close();
  rmSync(work, { recursive: true, force: true });
});

function checkedByCtGo(chainPems: readonly string[]): void {
  const ders = chainPems.map((p) => new X509Certificate(p).raw);
  execFileSync(buildGo('test/go/embedded-sct-check'), {
    input: JSON.stringify({
      keys: [log.key.spki.toString('base64')],
      chain: ders.map((d) => d.toString('base64')),
    }),
  });
}

async function metric(target: TestCa, name: string): Promise<string> {
  return target.app.metrics.registry.getSingleMetricAsString(name);
}

test('v2 answers signedCertificateEmbeddedSct: leaf with a verified SCT, then the CA chain', async () => {
  const key = makeKey('p256');
  const token = await ca.issuer.mintEmail(EMAIL);
  const res = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
  expect(res.status).toBe(200);
  const body = res.body as { signedCertificateEmbeddedSct: { chain: { certificates: string[] } } };
  expect(Object.keys(body)).toEqual(['signedCertificateEmbeddedSct']);
  const pems = body.signedCertificateEmbeddedSct.chain.certificates;
  expect(pems).toHaveLength(1 + signer.chain.length);
  checkedByCtGo(pems);
  expect(await metric(ca, 'mayfly_ct_scts_embedded_total')).toContain(
    `mayfly_ct_scts_embedded_total{log="${log.url}"} 1`,
  );
  expect(await metric(ca, 'mayfly_ct_submission_duration_seconds')).toContain(
    `mayfly_ct_submission_duration_seconds_count{log="${log.url}",result="ok"} 1`,
  );
});

test('v1 answers the chain with an embedded SCT and no SCT header', async () => {
  const key = makeKey('p256');
  const token = await ca.issuer.mintEmail(EMAIL);
  const res = await request(ca.app.api)
    .post('/api/v1/signingCert')
    .set('Authorization', `Bearer ${token}`)
    .send(v1Body(key.pem, proofFor(key, EMAIL)));
  expect(res.status).toBe(201);
  expect(res.headers.sct).toBeUndefined();
  const pems = (res.text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ??
    []) as string[];
  expect(pems).toHaveLength(1 + signer.chain.length);
  checkedByCtGo(pems);
});

test('gRPC answers signedCertificateEmbeddedSct, and Internal "Error entering certificate in CTL" without a log', async () => {
  const grpc = await startTestGrpc(ca);
  try {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const { value, error } = await grpc.client.sign(
      v2Message(token, key.pem, proofFor(key, EMAIL)),
    );
    expect(error).toBeUndefined();
    expect(value?.signedCertificateDetachedSct).toBeUndefined();
    const pems = value!.signedCertificateEmbeddedSct!.chain.certificates;
    expect(pems).toHaveLength(1 + signer.chain.length);
    checkedByCtGo(pems);
  } finally {
    grpc.close();
  }
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((r) => closed.close(r));
  const down = await startTestCa({
    env: {
      MAYFLY_CT_LOG_URL: url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
      MAYFLY_CT_TIMEOUT_MS: '300',
    },
    overrides: { signer },
  });
  const downGrpc = await startTestGrpc(down);
  try {
    const key = makeKey('p256');
    const token = await down.issuer.mintEmail(EMAIL);
    const { error } = await downGrpc.client.sign(v2Message(token, key.pem, proofFor(key, EMAIL)));
    expect(error?.code).toBe(13);
    expect(error?.details).toBe('Error entering certificate in CTL');
    expect(await metric(down, 'mayfly_ct_errors_total')).toContain(
      `mayfly_ct_errors_total{log="${url}",reason="unavailable"} 1`,
    );
  } finally {
    downGrpc.close();
    await down.close();
  }
});

test('no SCT in time: 500 "Error entering certificate in CTL", within the CT timeout, nothing issued', async () => {
  // A log that accepts connections and never answers (Fulcio would wait for the client).
  const hanging = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
  const stuck = await startTestCa({
    env: {
      MAYFLY_CT_LOG_URL: url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
      MAYFLY_CT_TIMEOUT_MS: '300',
    },
    overrides: { signer },
  });
  try {
    const key = makeKey('p256');
    const token = await stuck.issuer.mintEmail(EMAIL);
    // jest's 5 s test timeout is the guard against a hang.
    const res = await request(stuck.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      code: 13,
      message: 'Error entering certificate in CTL',
      details: [],
    });
    // The precertificate was signed, and nothing else: it is poisoned, not a certificate.
    expect(stuck.signCount()).toBe(1);
    expect(await metric(stuck, 'mayfly_ct_errors_total')).toContain(
      `mayfly_ct_errors_total{log="${url}",reason="timeout"} 1`,
    );
    expect(await metric(stuck, 'mayfly_ct_scts_embedded_total')).not.toContain(`log="${url}"`);
  } finally {
    await stuck.close();
    hanging.close();
  }
});

test('configuration: unset or empty URL is no CT; a URL needs its key; several logs in YAML', () => {
  expect(loadServerConfig({ env: { MAYFLY_CT_LOG_URL: '' } }).ct.logUrl).toBe('');
  expect(loadServerConfig({ env: {} }).ct).toEqual({ minScts: 1, timeoutMs: 10000 });
  expect(() => loadServerConfig({ env: { MAYFLY_CT_LOG_URL: 'http://127.0.0.1:1' } })).toThrow(
    /ct\.logPublicKeyFile.*required with a CT log URL/s,
  );
  expect(() =>
    loadServerConfig({
      env: {
        MAYFLY_CT_LOG_URL: 'http://127.0.0.1:1',
        MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
        MAYFLY_CT_MIN_SCTS: '2',
      },
    }),
  ).toThrow(ConfigError);
  const yaml = join(work, 'mayfly.yaml');
  writeFileSync(
    yaml,
    [
      'ct:',
      '  minScts: 2',
      '  timeoutMs: 3000',
      '  logs:',
      `    - url: ${log.url}`,
      '      publicKeyFile: log.pub',
      '    - url: http://127.0.0.1:2/',
      `      publicKeyFile: ${logKeyFile}`,
      '',
    ].join('\n'),
  );
  const ct = loadServerConfig({ configPath: yaml, env: {} }).ct;
  expect(ct.minScts).toBe(2);
  expect(ct.timeoutMs).toBe(3000);
  expect(ct.logs).toEqual([
    { url: log.url, publicKeyFile: logKeyFile },
    { url: 'http://127.0.0.1:2/', publicKeyFile: logKeyFile },
  ]);
});
