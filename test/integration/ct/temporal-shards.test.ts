import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import {
  FULCIO_OID,
  type CertificateIdentity,
} from '../../../services/ca/certificate-identity/certificate-identity';
import { CaError } from '../../../services/ca/common/errors';
import {
  CertificateAuthority,
  type IssuanceRequest,
} from '../../../services/ca/issuance/certificate-authority';
import { CtLogError, CtLogs } from '../../../services/ca/issuance/ct-logs';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { randomSerial } from '../../../services/ca/issuance/serial';
import { systemClock } from '../../../services/common/clock';
import { encodePem } from '../../../services/common/encoding';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import type { TestCert } from '../../helpers/ct-certs';
import { startLogFront, startTestCtlog, type TestCtlog } from '../../helpers/ctlog';
import { buildGo } from '../../helpers/go-refs';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body } from '../../helpers/mayfly';
import { ensureBuilt, mainJs } from '../../helpers/mayfly-process';

/**
 * Temporal shards (issue #17 item 2): two real mayfly CT logs (directory backend) with
 * adjacent windows [start, T) and [T, end), as a shard rollover has them. The CA asks a log
 * only for certificates whose notAfter its window holds: each certificate carries the SCT of
 * the right shard (checked by certificate-transparency-go against both shards' keys, which
 * names the log that signed), the other shard is never asked, and a certificate no window
 * holds fails at once with Fulcio's 500 and nothing signed — the log is not even asked.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let work: string;
let signer: CaSigner;
/** The boundary between the shards, a whole second a day from now. */
let boundary: number;
let shardA: TestCtlog;
let shardB: TestCtlog;
let keyA: string;
let keyB: string;
const servers: Server[] = [];
const sockets: Socket[] = [];

const iso = (ms: number) => new Date(ms).toISOString();
const logId = (log: TestCtlog) => createHash('sha256').update(log.app.key.spki).digest('hex');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-ct-shards-'));
  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  const root = { der: Buffer.from(signer.chain[signer.chain.length - 1]!) } as TestCert;
  boundary = Math.floor(Date.now() / 1000) * 1000 + DAY;
  const start = boundary - 30 * DAY;
  const end = boundary + 365 * DAY;
  shardA = await startTestCtlog({
    roots: [root],
    env: {
      MAYFLY_CTLOG_URL: 'https://ctlog.test/a',
      MAYFLY_CTLOG_TEMPORAL_START: iso(start),
      MAYFLY_CTLOG_TEMPORAL_END: iso(boundary),
    },
  });
  shardB = await startTestCtlog({
    roots: [root],
    env: {
      MAYFLY_CTLOG_URL: 'https://ctlog.test/b',
      MAYFLY_CTLOG_TEMPORAL_START: iso(boundary),
      MAYFLY_CTLOG_TEMPORAL_END: iso(end),
    },
  });
  keyA = join(work, 'a.pub');
  keyB = join(work, 'b.pub');
  writeFileSync(keyA, encodePem('PUBLIC KEY', shardA.app.key.spki));
  writeFileSync(keyB, encodePem('PUBLIC KEY', shardB.app.key.spki));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
  await shardA?.stop();
  await shardB?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The two shards as the CA's config names them, each with its window. */
function shards() {
  return [
    {
      url: shardA.url,
      publicKeyFile: keyA,
      temporal: { start: iso(boundary - 30 * DAY), end: iso(boundary) },
    },
    {
      url: shardB.url,
      publicKeyFile: keyB,
      temporal: { start: iso(boundary), end: iso(boundary + 365 * DAY) },
    },
  ];
}

function identity(): CertificateIdentity {
  return {
    san: { type: 'email', value: 'alice@example.com' },
    extensions: [
      { oid: FULCIO_OID.issuerV1, value: 'https://issuer.example.com', encoding: 'raw' },
      { oid: FULCIO_OID.issuerV2, value: 'https://issuer.example.com', encoding: 'utf8' },
    ],
  };
}

/** A ten-minute certificate ending at notAfter (ms, a whole second). */
function requestEnding(notAfter: number): IssuanceRequest {
  return {
    publicKey: new Uint8Array(makeKey('p256').publicKey.export({ type: 'spki', format: 'der' })),
    identity: identity(),
    serial: randomSerial(),
    notBefore: new Date(notAfter - 600_000),
    notAfter: new Date(notAfter),
  };
}

/** ct-go's verdict on the leaf's embedded SCTs, given both shards' keys: the logs that signed. */
function signedBy(chain: readonly Uint8Array[]): string[] {
  const out = execFileSync(buildGo('test/go/embedded-sct-check'), {
    input: JSON.stringify({
      keys: [shardA.app.key.spki, shardB.app.key.spki].map((k) => k.toString('base64')),
      chain: chain.map((c) => Buffer.from(c).toString('base64')),
    }),
    encoding: 'utf8',
  });
  return [...out.matchAll(/^sct log=([0-9a-f]+) timestamp=\d+ verified$/gm)].map((m) => m[1]!);
}

/** A CA with both shards; `asked` lists the logs each submission went to. */
function shardedCa(minScts = 1): {
  ca: CertificateAuthority;
  asked: string[];
  signs: () => number;
} {
  const asked: string[] = [];
  let signs = 0;
  const counting: CaSigner = {
    chain: signer.chain,
    publicKey: signer.publicKey,
    hash: signer.hash,
    sign: (tbs) => {
      signs++;
      return signer.sign(tbs);
    },
  };
  const ct = new CtLogs(
    { logs: shards(), minScts, timeoutMs: 5000 },
    { submitted: (log) => void asked.push(log) },
  );
  return { ca: new CertificateAuthority(counting, { ct }), asked, signs: () => signs };
}

test('each certificate goes to the shard whose window holds its notAfter, the boundary to the later one', async () => {
  const { ca, asked } = shardedCa();
  const cases = [
    { notAfter: Math.floor(Date.now() / 1000) * 1000 + 600_000, shard: shardA },
    { notAfter: boundary - 1000, shard: shardA },
    { notAfter: boundary, shard: shardB },
    { notAfter: boundary + 1000, shard: shardB },
  ];
  for (const { notAfter, shard } of cases) {
    asked.length = 0;
    const issued = await ca.issue(requestEnding(notAfter));
    expect([iso(notAfter), issued.embeddedScts, asked]).toEqual([iso(notAfter), 1, [shard.url]]);
    expect([iso(notAfter), signedBy([issued.der, ...issued.chain])]).toEqual([
      iso(notAfter),
      [logId(shard)],
    ]);
  }
});

test('a certificate no window holds fails at once: ct_log, no log asked, nothing signed', async () => {
  const { ca, asked, signs } = shardedCa();
  for (const notAfter of [boundary - 31 * DAY, boundary + 366 * DAY]) {
    const err = await ca.issue(requestEnding(notAfter)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaError);
    expect((err as CaError).code).toBe('ct_log');
    expect((err as CaError).message).toMatch(/0 configured log\(s\) accept a notAfter/);
  }
  expect(asked).toEqual([]);
  expect(signs()).toBe(0);
  // Two SCTs wanted, but adjacent shards hold any notAfter in one window only.
  const two = shardedCa(2);
  const err = await two.ca.issue(requestEnding(boundary - 1000)).catch((e: unknown) => e);
  expect((err as CaError).message).toMatch(/1 configured log\(s\) accept .* 2 needed/);
  expect([two.asked, two.signs()]).toEqual([[], 0]);
});

test('CtLogs refuses a window that ends at or before its start, or is not a time', () => {
  const make = (temporal: { start: string; end: string }) => () =>
    new CtLogs({
      logs: [{ url: shardA.url, publicKeyFile: keyA, temporal }],
      minScts: 1,
      timeoutMs: 1000,
    });
  expect(make({ start: iso(boundary), end: iso(boundary) })).toThrow(CtLogError);
  expect(make({ start: iso(boundary), end: iso(boundary - 1000) })).toThrow(
    /at or before its start/,
  );
  expect(make({ start: 'soon', end: iso(boundary) })).toThrow(/not a pair of times/);
});

test('the CA process refuses to start on a window that ends at or before its start (status 2, the setting named)', () => {
  ensureBuilt();
  const run = spawnSync(process.execPath, [mainJs], {
    encoding: 'utf8',
    timeout: 30_000,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      MAYFLY_PORT: '0',
      MAYFLY_METRICS_PORT: '0',
      MAYFLY_GRPC_PORT: 'off',
      MAYFLY_CT_LOG_URL: shardA.url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: keyA,
      MAYFLY_CT_LOG_TEMPORAL_START: iso(boundary),
      MAYFLY_CT_LOG_TEMPORAL_END: iso(boundary),
    },
  });
  expect(run.status).toBe(2);
  expect(`${run.stdout}${run.stderr}`).toContain(
    `ct.logTemporal.end (MAYFLY_CT_LOG_TEMPORAL_END): must be after start (${iso(boundary)})`,
  );
});

async function scrape(target: { app: { metricsApp: Parameters<typeof request>[0] } }) {
  const res = await request(target.app.metricsApp).get('/metrics');
  expect(res.status).toBe(200);
  return res.text;
}

test('the API with both shards in the YAML config: the certificate carries shard A’s SCT; /metrics shows each log', async () => {
  const yaml = join(work, 'shards.yaml');
  writeFileSync(
    yaml,
    [
      'ct:',
      '  logs:',
      ...shards().flatMap((s) => [
        `    - url: ${s.url}`,
        `      publicKeyFile: ${s.publicKeyFile}`,
        '      temporal:',
        `        start: ${s.temporal.start}`,
        `        end: ${s.temporal.end}`,
      ]),
      '',
    ].join('\n'),
  );
  const ca = await startTestCa({ env: { MAYFLY_CONFIG: yaml }, overrides: { signer } });
  try {
    expect(ca.config.ct.logs?.map((l) => l.temporal)).toEqual(shards().map((s) => s.temporal));
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail('alice@example.com');
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, 'alice@example.com')));
    expect(res.status).toBe(200);
    const pems = (
      res.body as { signedCertificateEmbeddedSct: { chain: { certificates: string[] } } }
    ).signedCertificateEmbeddedSct.chain.certificates;
    expect(signedBy(pems.map((p) => new X509Certificate(p).raw))).toEqual([logId(shardA)]);
    const text = await scrape(ca);
    expect(text).toContain(`mayfly_ct_scts_embedded_total{log="${shardA.url}"} 1`);
    expect(text).not.toContain(`mayfly_ct_scts_embedded_total{log="${shardB.url}"}`);
    expect(text).not.toContain(`mayfly_ct_submission_duration_seconds_count{log="${shardB.url}"`);
    expect(text).toContain(
      `mayfly_ct_log_window_end_seconds{log="${shardA.url}"} ${boundary / 1000}`,
    );
    expect(text).toContain(
      `mayfly_ct_log_window_end_seconds{log="${shardB.url}"} ${(boundary + 365 * DAY) / 1000}`,
    );
    expect(text).toContain(`mayfly_ct_breaker_open{log="${shardA.url}"} 0`);
    expect(text).toContain(`mayfly_ct_breaker_open{log="${shardB.url}"} 0`);
    expect(text).toContain('mayfly_ct_no_eligible_log_total 0');
  } finally {
    await ca.close();
  }
});

test('MAYFLY_CT_LOG_TEMPORAL_START/_END out of the certificate’s reach: 500 code 13 at once, the log never asked', async () => {
  // A log that accepts connections and never answers: asking it would hang the request
  // until the CT timeout (a minute, beyond the test's own timeout) — it must not be asked.
  let connections = 0;
  const hanging = createTcpServer((s) => {
    connections++;
    sockets.push(s);
  });
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
  const ca = await startTestCa({
    env: {
      MAYFLY_CT_LOG_URL: url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: keyA,
      MAYFLY_CT_TIMEOUT_MS: '60000',
      // The previous shard: its window ended a day before the certificates'.
      MAYFLY_CT_LOG_TEMPORAL_START: iso(boundary - 60 * DAY),
      MAYFLY_CT_LOG_TEMPORAL_END: iso(boundary - 2 * DAY),
    },
    overrides: { signer },
  });
  try {
    expect(ca.config.ct.logTemporal).toEqual({
      start: iso(boundary - 60 * DAY),
      end: iso(boundary - 2 * DAY),
    });
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail('alice@example.com');
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, 'alice@example.com')));
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      code: 13,
      message: 'Error entering certificate in CTL',
      details: [],
    });
    expect([ca.signCount(), connections]).toEqual([0, 0]);
    const text = await scrape(ca);
    expect(text).toContain('mayfly_ct_no_eligible_log_total 1');
    expect(text).not.toContain(`mayfly_ct_submission_duration_seconds_count{log="${url}"`);
  } finally {
    await ca.close();
    hanging.close();
  }
});

test('mayfly_ct_breaker_open on the real /metrics: 1 once the breaker trips, 0 again after the log’s return', async () => {
  // A log that fails (500, not retried) until told otherwise, then forwards to shard A.
  const front = await startLogFront(shardA.url);
  servers.push(front.server);
  const url = front.url;
  const ca = await startTestCa({
    env: { MAYFLY_CT_LOG_URL: url, MAYFLY_CT_LOG_PUBLIC_KEY_FILE: keyA },
    overrides: { signer },
  });
  const sign = async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail('alice@example.com');
    return request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, 'alice@example.com')));
  };
  try {
    // A log without a window: +Inf, closed.
    let text = await scrape(ca);
    expect(text).toContain(`mayfly_ct_log_window_end_seconds{log="${url}"} +Inf`);
    expect(text).toContain(`mayfly_ct_breaker_open{log="${url}"} 0`);
    // Five failures in a row (the default) trip the breaker.
    for (let i = 0; i < 4; i++) expect((await sign()).status).toBe(500);
    expect(await scrape(ca)).toContain(`mayfly_ct_breaker_open{log="${url}"} 0`);
    expect((await sign()).status).toBe(500);
    text = await scrape(ca);
    expect(text).toContain(`mayfly_ct_breaker_open{log="${url}"} 1`);
    expect((await sign()).status).toBe(500);
    expect(await scrape(ca)).toContain(
      `mayfly_ct_errors_total{log="${url}",reason="circuit_open"} 1`,
    );
    // The log returns: once the cool-off has passed a request is let through and succeeds.
    front.failing = false;
    let status = 0;
    while (status !== 200) {
      status = (await sign()).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(await scrape(ca)).toContain(`mayfly_ct_breaker_open{log="${url}"} 0`);
  } finally {
    await ca.close();
  }
}, 30_000);
