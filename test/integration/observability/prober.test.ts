import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../../../services/common/signer/signer';
import { systemClock } from '../../../services/common/clock';
import { loadProberConfig, ProberConfigError } from '../../../services/prober/config';
import { createProberMetrics, type ProberMetrics } from '../../../services/prober/metrics';
import { Prober } from '../../../services/prober/prober';
import { identityName } from '../../../services/prober/probes';
import { startTestGrpc } from '../../helpers/grpc';
import { startTestCa, type TestCa } from '../../helpers/mayfly';

/**
 * The prober against a live mayfly (every probe succeeds and the CA really issues), and
 * against a port where nothing listens (every probe fails, with the reason, and nothing
 * throws) — in process, and as the compiled deployable.
 */

const root = resolve(__dirname, '../../..');
const silent = pino({ level: 'silent' });
const ENDPOINTS = [
  ['/api/v2/trustBundle', 'GET'],
  ['/api/v2/configuration', 'GET'],
  ['/api/v1/rootCert', 'GET'],
  ['/api/v2/signingCert', 'POST'],
  ['/api/v1/signingCert', 'POST'],
] as const;

let ca: TestCa;
let dir: string;
let tokenFile: string;

beforeAll(async () => {
  ca = await startTestCa();
  await ca.listen();
  dir = mkdtempSync(join(tmpdir(), 'mayfly-prober-'));
  tokenFile = join(dir, 'oidc-token');
  writeFileSync(
    tokenFile,
    `${await ca.issuer.mintEmail('prober@example.com', { expiresIn: 3600 })}\n`,
  );
});
afterAll(() => ca.close());

function prober(url: string, extra: { trustedRootsFile?: string; grpcAddress?: string } = {}) {
  const metrics = createProberMetrics(new Registry());
  const instance = new Prober(
    {
      url,
      tokenFile,
      intervalSeconds: 1,
      timeoutMs: 5000,
      signingApis: ['v2', 'v1'],
      trustedRootsFile: extra.trustedRootsFile,
      grpcAddress: extra.grpcAddress,
    },
    { metrics, logger: silent },
  );
  return { prober: instance, metrics };
}

async function value(metrics: ProberMetrics, name: string, labels: Record<string, string>) {
  const metric = await metrics.registry.getSingleMetric(name)!.get();
  const found = metric.values.find((v) =>
    Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want),
  );
  return found?.value;
}

async function count(metrics: ProberMetrics, labels: Record<string, string>): Promise<number> {
  const metric = await metrics.registry
    .getSingleMetric('mayfly_prober_probe_duration_seconds')!
    .get();
  return metric.values
    .filter((v) => (v as { metricName?: string }).metricName?.endsWith('_count'))
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('against a live mayfly', () => {
  test('every endpoint succeeds, the CA issues one certificate per signing API, and the metrics say so', async () => {
    const { prober: p, metrics } = prober(ca.url);
    const signsBefore = ca.signCount();
    const outcomes = await p.runOnce();
    expect(outcomes.map((o) => [o.endpoint, o.method, o.ok, o.reason])).toEqual(
      ENDPOINTS.map(([endpoint, method]) => [endpoint, method, true, undefined]),
    );
    expect(ca.signCount() - signsBefore).toBe(2);
    for (const [endpoint, method] of ENDPOINTS) {
      expect(await value(metrics, 'mayfly_prober_probe_success', { endpoint, method })).toBe(1);
      expect(await count(metrics, { endpoint, method, result: 'success' })).toBe(1);
      expect(await count(metrics, { endpoint, method, result: 'failure' })).toBe(0);
      expect(
        await value(metrics, 'mayfly_prober_last_probe_timestamp_seconds', { endpoint, method }),
      ).toBeGreaterThan(0);
    }
    const text = await metrics.registry.metrics();
    expect(text).toContain('mayfly_prober_build_info{');
    expect(text).toContain('mayfly_prober_process_cpu_seconds_total');
  });

  test('checks the chain against pinned roots: the CA’s own root passes, another root fails with reason chain', async () => {
    const bundle = ca.app.ca.trustBundle()[0]!;
    const ownRoot = join(dir, 'own-root.pem');
    writeFileSync(ownRoot, new X509Certificate(bundle[bundle.length - 1]!).toString());
    const good = await prober(ca.url, { trustedRootsFile: ownRoot }).prober.runOnce();
    expect(good.every((o) => o.ok)).toBe(true);

    const other = await createEphemeralChain(
      generateEphemeralKey(),
      generateEphemeralKey(),
      systemClock,
    );
    const otherRoot = join(dir, 'other-root.pem');
    writeFileSync(otherRoot, new X509Certificate(other.chain[other.chain.length - 1]!).toString());
    const { prober: p, metrics } = prober(ca.url, { trustedRootsFile: otherRoot });
    const bad = await p.runOnce();
    const signing = bad.filter((o) => o.method === 'POST');
    expect(signing.map((o) => [o.ok, o.reason])).toEqual([
      [false, 'chain'],
      [false, 'chain'],
    ]);
    expect(
      await value(metrics, 'mayfly_prober_failures_total', {
        endpoint: '/api/v2/signingCert',
        reason: 'chain',
      }),
    ).toBe(1);
  });

  test('a token the CA refuses is a failed probe with the status, not a crash', async () => {
    const expiredFile = join(dir, 'expired-token');
    writeFileSync(expiredFile, await ca.issuer.mintEmail('prober@example.com', { expiresIn: -60 }));
    const metrics = createProberMetrics(new Registry());
    const p = new Prober(
      {
        url: ca.url,
        tokenFile: expiredFile,
        intervalSeconds: 1,
        timeoutMs: 5000,
        signingApis: ['v2'],
        trustedRootsFile: undefined,
      },
      { metrics, logger: silent },
    );
    const outcomes = await p.runOnce();
    const signing = outcomes.find((o) => o.endpoint === '/api/v2/signingCert')!;
    expect(signing).toMatchObject({ ok: false, reason: 'status' });
    expect(signing.detail).toMatch(/^HTTP 400/);
    expect(outcomes.filter((o) => o.method === 'GET').every((o) => o.ok)).toBe(true);
  });
});

describe('against a stopped mayfly', () => {
  test('every probe fails with reason connection; the round resolves', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { prober: p, metrics } = prober(url);
    const outcomes = await p.runOnce();
    expect(outcomes).toHaveLength(ENDPOINTS.length);
    for (const outcome of outcomes.filter((o) => o.method === 'GET')) {
      expect(outcome).toMatchObject({ ok: false, reason: 'connection' });
    }
    // No trust bundle could be fetched, so the signing probes cannot check a chain.
    for (const outcome of outcomes.filter((o) => o.method === 'POST')) {
      expect(outcome.ok).toBe(false);
    }
    for (const [endpoint, method] of ENDPOINTS) {
      expect(await value(metrics, 'mayfly_prober_probe_success', { endpoint, method })).toBe(0);
      expect(await count(metrics, { endpoint, method, result: 'failure' })).toBe(1);
    }
    expect(
      await value(metrics, 'mayfly_prober_failures_total', {
        endpoint: '/api/v2/trustBundle',
        reason: 'connection',
      }),
    ).toBe(1);
  });

  test('the loop keeps probing and stops cleanly', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const { prober: p, metrics } = prober(url);
    p.start();
    const until = Date.now() + 10_000;
    while ((await count(metrics, { endpoint: '/api/v2/trustBundle' })) < 2) {
      if (Date.now() > until) throw new Error('the prober did not run twice');
      await new Promise((r) => setTimeout(r, 50));
    }
    await p.stop();
  });

  test('the compiled prober reports failure on its metrics port and exits 0 on SIGTERM', async () => {
    const mainJs = join(root, 'dist/services/prober/main.js');
    if (!existsSync(mainJs))
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    const child = spawn(process.execPath, [mainJs], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        MAYFLY_PROBER_URL: `http://127.0.0.1:${await freePort()}`,
        MAYFLY_PROBER_TOKEN_FILE: tokenFile,
        MAYFLY_PROBER_METRICS_HOST: '127.0.0.1',
        MAYFLY_PROBER_METRICS_PORT: '0',
        MAYFLY_PROBER_INTERVAL_SECONDS: '1',
        MAYFLY_PROBER_LOG_LEVEL: 'silent',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const until = Date.now() + 15_000;
      let port: string | undefined;
      while (!(port = /metrics on port (\d+)/.exec(out)?.[1])) {
        if (Date.now() > until) throw new Error(`no listening line: ${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      let text = '';
      while (!/mayfly_prober_probe_success\{endpoint="\/api\/v2\/signingCert"/.test(text)) {
        if (Date.now() > until) throw new Error('no probe recorded');
        text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(text).toMatch(
        /mayfly_prober_probe_success\{endpoint="\/api\/v2\/trustBundle",method="GET"\} 0/,
      );
      expect(text).toMatch(
        /mayfly_prober_failures_total\{endpoint="\/api\/v2\/trustBundle",method="GET",reason="connection"\} [1-9]/,
      );
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 120_000);
});

describe('against a live mayfly over gRPC too', () => {
  test('GetTrustBundle and CreateSigningCertificate are probed, and a stopped listener fails them', async () => {
    const grpc = await startTestGrpc(ca);
    const { prober: p, metrics } = prober(ca.url, { grpcAddress: grpc.address });
    try {
      const signsBefore = ca.signCount();
      const outcomes = await p.runOnce();
      const grpcOutcomes = outcomes.filter((o) => o.endpoint.startsWith('/dev.sigstore'));
      expect(grpcOutcomes.map((o) => [o.endpoint, o.method, o.ok, o.detail])).toEqual([
        ['/dev.sigstore.fulcio.v2.CA/GetTrustBundle', 'POST', true, undefined],
        ['/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate', 'POST', true, undefined],
      ]);
      // Two HTTP signing APIs and one gRPC.
      expect(ca.signCount() - signsBefore).toBe(3);
      expect(
        await value(metrics, 'mayfly_prober_probe_success', {
          endpoint: '/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate',
          method: 'POST',
        }),
      ).toBe(1);
      grpc.running.forceClose();
      const down = (await p.runOnce()).filter((o) => o.endpoint.startsWith('/dev.sigstore'));
      expect(down.map((o) => [o.ok, o.reason])).toEqual([
        [false, 'connection'],
        [false, 'chain'],
      ]);
    } finally {
      await p.stop();
      grpc.close();
    }
  });
});

describe('configuration', () => {
  test('reads the environment with defaults, and lists every problem at once', () => {
    const config = loadProberConfig({ MAYFLY_PROBER_URL: 'http://mayfly.example/' });
    expect(config).toMatchObject({
      url: 'http://mayfly.example',
      tokenFile: '/var/run/sigstore/cosign/oidc-token',
      intervalSeconds: 30,
      metricsPort: 2113,
      signingApis: ['v2', 'v1'],
    });
    let problems: readonly string[] = [];
    try {
      loadProberConfig({
        MAYFLY_PROBER_INTERVAL_SECONDS: 'soon',
        MAYFLY_PROBER_SIGNING_APIS: 'v3',
      });
    } catch (err) {
      problems = (err as ProberConfigError).problems;
    }
    expect(problems).toHaveLength(3);
    expect(
      loadProberConfig({
        MAYFLY_PROBER_URL: 'http://mayfly',
        MAYFLY_PROBER_GRPC_ADDRESS: 'mayfly:8081',
        MAYFLY_PROBER_GRPC_TLS: 'true',
      }),
    ).toMatchObject({ grpcAddress: 'mayfly:8081', grpcTls: true });
    expect(() =>
      loadProberConfig({
        MAYFLY_PROBER_URL: 'http://mayfly',
        MAYFLY_PROBER_GRPC_ADDRESS: 'mayfly',
      }),
    ).toThrow(/MAYFLY_PROBER_GRPC_ADDRESS: expected host:port/);
  });

  test('signs the email claim when the token has one, else sub (as cosign)', () => {
    const jwt = (claims: object) =>
      `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
    expect(identityName(jwt({ sub: 's', email: 'a@example.com' }))).toBe('a@example.com');
    expect(identityName(jwt({ sub: 'system:serviceaccount:ns:prober' }))).toBe(
      'system:serviceaccount:ns:prober',
    );
    expect(() => identityName('not-a-jwt')).toThrow(/not a JWT/);
  });
});
