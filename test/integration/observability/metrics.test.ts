import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import request from 'supertest';
import { systemClock, type Clock } from '../../../services/common/clock';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import { createProberMetrics } from '../../../services/prober/metrics';
import type { MayflyApp } from '../../../services/ca/app';
import { makeCsr, makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';

/**
 * Metric values after real requests through the real app: one certificate moves the
 * issuance counter by exactly one, one refusal moves exactly the right reason, token
 * failures land on their reason and issuer, and the signer, OIDC fetches, CA expiry,
 * build info, process metrics and health endpoints say what they should.
 */

const EMAIL = 'metrics@example.com';

type Labels = Record<string, string>;

/** The value of the one sample of `name` whose labels include `labels` (0 when none). */
async function sample(app: MayflyApp, name: string, labels: Labels = {}): Promise<number> {
  const base = name.replace(/_(count|sum)$/, '');
  const metric = app.metrics.registry.getSingleMetric(base);
  if (!metric) throw new Error(`no metric ${base}`);
  const { values } = await metric.get();
  const wanted = values.filter(
    (v) =>
      ((v as { metricName?: string }).metricName ?? base) === name &&
      Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want),
  );
  return wanted.reduce((sum, v) => sum + v.value, 0);
}

/** Runs `action` and answers how much each named sample moved. */
async function deltas(
  app: MayflyApp,
  watched: Record<string, [string, Labels?]>,
  action: () => Promise<unknown>,
): Promise<Record<string, number>> {
  const before: Record<string, number> = {};
  for (const [key, [name, labels]] of Object.entries(watched))
    before[key] = await sample(app, name, labels);
  await action();
  const moved: Record<string, number> = {};
  for (const [key, [name, labels]] of Object.entries(watched))
    moved[key] = (await sample(app, name, labels)) - before[key]!;
  return moved;
}

let ca: TestCa;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-metrics-'));
  // One certificate per identity per hour, so that a second request is rate limited.
  const limits = join(dir, 'ratelimits.yaml');
  writeFileSync(
    limits,
    'defaults:\n  per-identity: { burst: 1, count: 1, period: 1h }\n  per-client-ip: { burst: 1000, count: 1000, period: 1s }\n',
  );
  ca = await startTestCa({ env: { MAYFLY_RATELIMITS: limits } });
});
afterAll(() => ca.close());

function signingRequest(body: object) {
  return request(ca.app.api).post('/api/v2/signingCert').send(body);
}

async function goodBody(email: string) {
  const key = makeKey('p256');
  return v2Body(await ca.issuer.mintEmail(email), key.pem, proofFor(key, email));
}

describe('issuance', () => {
  test('one certificate moves the issuance counter, the request histogram and the signer histogram by one', async () => {
    const body = await goodBody(EMAIL);
    const moved = await deltas(
      ca.app,
      {
        issued: [
          'mayfly_certificates_issued_total',
          { issuer: ca.issuer.url, issuer_type: 'email' },
        ],
        allIssued: ['mayfly_certificates_issued_total'],
        requests: [
          'mayfly_http_request_duration_seconds_count',
          { route: '/api/v2/signingCert', method: 'POST', code: '200' },
        ],
        signed: ['mayfly_signer_duration_seconds_count', { result: 'ok' }],
        signErrors: ['mayfly_signer_duration_seconds_count', { result: 'error' }],
        refusals: ['mayfly_signing_refusals_total'],
      },
      async () => expect((await signingRequest(body)).status).toBe(200),
    );
    expect(moved).toEqual({
      issued: 1,
      allIssued: 1,
      requests: 1,
      signed: 1,
      signErrors: 0,
      refusals: 0,
    });
  });

  test('the request histogram has a bucket at the 750 ms latency threshold', async () => {
    const text = await ca.app.metrics.registry.getSingleMetricAsString(
      'mayfly_http_request_duration_seconds',
    );
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith('mayfly_http_request_duration_seconds_bucket{le="0.75",') &&
          l.includes('route="/api/v2/signingCert"') &&
          l.includes('code="200"'),
      );
    expect(Number(line?.split(' ').pop())).toBeGreaterThanOrEqual(1);
  });
});

describe('refusals move exactly their reason', () => {
  const reasons = ['token', 'key', 'proof', 'csr', 'rate_limit'] as const;

  async function refusedWith(
    reason: (typeof reasons)[number],
    send: () => Promise<request.Response>,
  ) {
    const watched = Object.fromEntries(
      reasons.map((r) => [r, ['mayfly_signing_refusals_total', { reason: r }] as [string, Labels]]),
    );
    const moved = await deltas(ca.app, watched, async () => {
      const res = await send();
      expect(res.status).toBe(reason === 'rate_limit' ? 429 : 400);
    });
    expect(moved).toEqual(Object.fromEntries(reasons.map((r) => [r, r === reason ? 1 : 0])));
  }

  test('token', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL, { expiresIn: -60 });
    await refusedWith('token', () => signingRequest(v2Body(token, key.pem, proofFor(key, EMAIL))));
  });

  test('key', async () => {
    const token = await ca.issuer.mintEmail(EMAIL);
    await refusedWith('key', () =>
      signingRequest(
        v2Body(
          token,
          '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
          Buffer.from('x'),
        ),
      ),
    );
  });

  test('proof', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    await refusedWith('proof', () =>
      signingRequest(v2Body(token, key.pem, proofFor(key, 'somebody-else@example.com'))),
    );
  });

  test('csr (one that does not parse; a bad CSR signature is a failed proof)', async () => {
    const token = await ca.issuer.mintEmail(EMAIL);
    const csr = makeCsr(makeKey('p256')).replace(/[A-Za-z0-9+/]{10}\n/, 'AAAAAAAAAA\n');
    await refusedWith('csr', () =>
      signingRequest({
        credentials: { oidcIdentityToken: token },
        certificateSigningRequest: Buffer.from(csr).toString('base64'),
      }),
    );
  });

  test('rate_limit (the second certificate for one identity within the hour)', async () => {
    const email = 'limited@example.com';
    expect((await signingRequest(await goodBody(email))).status).toBe(200);
    const again = await goodBody(email);
    await refusedWith('rate_limit', () => signingRequest(again));
    expect(
      await sample(ca.app, 'mayfly_ratelimit_decisions_total', {
        limit: 'per-identity',
        result: 'denied',
      }),
    ).toBeGreaterThan(0);
  });
});

describe('token verification failures, by reason and configured issuer', () => {
  const cases: [string, () => Promise<string>, string][] = [
    ['expired', () => ca.issuer.mintEmail(EMAIL, { expiresIn: -60 }), 'issuer'],
    ['audience', () => ca.issuer.mintEmail(EMAIL, { audience: 'not-sigstore' }), 'issuer'],
    [
      'signature',
      async () => {
        const token = await ca.issuer.mintEmail(EMAIL);
        const [h, p, s] = token.split('.') as [string, string, string];
        const flipped = `${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
        return `${h}.${p}.${flipped}`;
      },
      'issuer',
    ],
    ['unknown_kid', () => ca.issuer.mintEmail(EMAIL, { kid: 'no-such-key' }), 'issuer'],
    [
      'unknown_issuer',
      () => ca.issuer.mintEmail(EMAIL, { issuer: 'https://elsewhere.example' }),
      'unknown',
    ],
  ];

  test.each(cases)('%s', async (reason, mint, issuerKind) => {
    const issuer = issuerKind === 'issuer' ? ca.issuer.url : 'unknown';
    const key = makeKey('p256');
    const token = await mint();
    const moved = await deltas(
      ca.app,
      {
        exact: ['mayfly_token_verification_failures_total', { reason, issuer }],
        all: ['mayfly_token_verification_failures_total'],
      },
      async () =>
        expect((await signingRequest(v2Body(token, key.pem, proofFor(key, EMAIL)))).status).toBe(
          400,
        ),
    );
    expect(moved).toEqual({ exact: 1, all: 1 });
  });

  test('a token naming an unconfigured issuer never becomes a label value', async () => {
    const text = await ca.app.metrics.registry.getSingleMetricAsString(
      'mayfly_token_verification_failures_total',
    );
    expect(text).not.toContain('elsewhere.example');
  });
});

describe('OIDC discovery and JWKS fetches', () => {
  test('are counted per configured issuer, document and result', async () => {
    // The shared CA has fetched by now; a fresh one shows the first fetches exactly.
    const deadPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const deadUrl = `http://127.0.0.1:${deadPort}`;
    const fresh = await startTestCa({
      extraIssuers: new Map([[deadUrl, { ...ca.issuer.issuerConfig, issuerUrl: deadUrl }]]),
    });
    try {
      const key = makeKey('p256');
      const good = await fresh.issuer.mintEmail(EMAIL);
      expect(
        (
          await request(fresh.app.api)
            .post('/api/v2/signingCert')
            .send(v2Body(good, key.pem, proofFor(key, EMAIL)))
        ).status,
      ).toBe(200);
      const bad = await fresh.issuer.mintEmail(EMAIL, { issuer: deadUrl });
      expect(
        (
          await request(fresh.app.api)
            .post('/api/v2/signingCert')
            .send(v2Body(bad, key.pem, proofFor(key, EMAIL)))
        ).status,
      ).toBe(400);
      const count = (labels: Labels) =>
        sample(fresh.app, 'mayfly_oidc_fetch_duration_seconds_count', labels);
      expect(await count({ issuer: fresh.issuer.url, document: 'discovery', result: 'ok' })).toBe(
        1,
      );
      expect(await count({ issuer: fresh.issuer.url, document: 'jwks', result: 'ok' })).toBe(1);
      expect(await count({ issuer: deadUrl, document: 'discovery', result: 'error' })).toBe(1);
      expect(await count({ issuer: deadUrl, document: 'jwks' })).toBe(0);
      expect(
        await sample(fresh.app, 'mayfly_token_verification_failures_total', {
          reason: 'discovery',
          issuer: deadUrl,
        }),
      ).toBe(1);
    } finally {
      await fresh.close();
    }
  });
});

describe('the signer', () => {
  test('a failing signature is observed as result=error and answered 500', async () => {
    const inner = await createEphemeralChain(
      generateEphemeralKey(),
      generateEphemeralKey(),
      systemClock,
    );
    const unplugged: CaSigner = {
      chain: inner.chain,
      publicKey: inner.publicKey,
      hash: inner.hash,
      sign: () => Promise.reject(new Error('HSM unplugged')),
    };
    const failing = await startTestCa({ overrides: { signer: unplugged } });
    try {
      const key = makeKey('p256');
      const token = await failing.issuer.mintEmail(EMAIL);
      const moved = await deltas(
        failing.app,
        {
          errors: ['mayfly_signer_duration_seconds_count', { result: 'error' }],
          ok: ['mayfly_signer_duration_seconds_count', { result: 'ok' }],
          five: [
            'mayfly_http_request_duration_seconds_count',
            { route: '/api/v2/signingCert', code: '500' },
          ],
          issued: ['mayfly_certificates_issued_total'],
        },
        async () =>
          expect(
            (
              await request(failing.app.api)
                .post('/api/v2/signingCert')
                .send(v2Body(token, key.pem, proofFor(key, EMAIL)))
            ).status,
          ).toBe(500),
      );
      expect(moved).toEqual({ errors: 1, ok: 0, five: 1, issued: 0 });
    } finally {
      await failing.close();
    }
  });
});

describe('process, build and CA', () => {
  test('build info, Node.js default metrics and the CA expiry countdown per chain', async () => {
    const text = await ca.app.metrics.registry.metrics();
    expect(text).toMatch(/^mayfly_build_info\{version="[^"]+",node_version="v\d+\.\d+\.\d+"\} 1$/m);
    for (const name of [
      'mayfly_process_cpu_seconds_total',
      'mayfly_process_resident_memory_bytes',
      'mayfly_nodejs_eventloop_lag_p99_seconds',
      'mayfly_nodejs_heap_size_used_bytes',
    ])
      expect(text).toContain(`\n${name} `);
    const chain = ca.app.ca.trustBundle()[0]!;
    const notAfter = Math.min(...chain.map((der) => Date.parse(new X509Certificate(der).validTo)));
    const left = await sample(ca.app, 'mayfly_ca_certificate_expiry_seconds', {
      chain: '0',
      role: 'signing',
    });
    expect(Math.abs(left - (notAfter - Date.now()) / 1000)).toBeLessThan(60);
    expect(text).toMatch(
      /mayfly_ca_certificate_expiry_seconds\{chain="0",role="signing",subject="[^"]+"\}/,
    );
  });

  test('the README’s metric tables name every metric mayfly and the prober export', async () => {
    const readme = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
    const documented = readme
      .split('\n')
      .filter((line) => line.startsWith('| `mayfly_'))
      .map((line) => line.split('|')[1]!);
    const defaults = /^mayfly_(prober_)?(process|nodejs)_/;
    const exported = [
      ...(await ca.app.metrics.registry.getMetricsAsJSON()),
      ...(await createProberMetrics(new Registry()).registry.getMetricsAsJSON()),
    ]
      .map((m) => m.name)
      .filter((name) => !defaults.test(name));
    expect(
      exported.filter((name) => !documented.some((cell) => cell.includes(`\`${name}\``))),
    ).toEqual([]);
  });

  test('no metric uses prom-client’s global registry', async () => {
    const { register } = await import('prom-client');
    expect((await register.getMetricsAsJSON()).filter((m) => m.name.startsWith('mayfly_'))).toEqual(
      [],
    );
  });
});

describe('health on the API port and the metrics port', () => {
  test('both answer /healthz and /readyz, and the metrics port serves /metrics', async () => {
    for (const app of [ca.app.api, ca.app.metricsApp]) {
      const live = await request(app).get('/healthz');
      expect([live.status, live.body]).toEqual([200, { status: 'SERVING' }]);
      const ready = await request(app).get('/readyz');
      expect([ready.status, ready.body]).toEqual([200, { status: 'SERVING' }]);
    }
    const scrape = await request(ca.app.metricsApp).get('/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.headers['content-type']).toMatch(/^text\/plain/);
    expect(scrape.text).toContain('mayfly_http_request_duration_seconds_bucket');
    expect((await request(ca.app.api).get('/metrics')).status).toBe(404);
  });

  test('readiness fails on both ports once the signing certificate has expired, and while draining', async () => {
    let now = Date.now();
    const clock: Clock = { now: () => new Date(now) };
    const aged = await startTestCa({ overrides: { clock } });
    try {
      for (const app of [aged.app.api, aged.app.metricsApp])
        expect((await request(app).get('/readyz')).status).toBe(200);
      now += 20 * 365 * 24 * 3600 * 1000;
      for (const app of [aged.app.api, aged.app.metricsApp]) {
        const res = await request(app).get('/readyz');
        expect([res.status, res.body]).toEqual([
          503,
          { status: 'NOT_SERVING', failing: ['signer'] },
        ]);
        // Liveness is the process answering, nothing more.
        expect((await request(app).get('/healthz')).status).toBe(200);
      }
      now = Date.now();
      aged.app.setReady(false);
      const draining = await request(aged.app.metricsApp).get('/readyz');
      expect([draining.status, draining.body]).toEqual([
        503,
        { status: 'NOT_SERVING', failing: ['draining'] },
      ]);
    } finally {
      await aged.close();
    }
  });
});
