import { Agent } from 'node:http';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { listen } from '../../services/ca/app';
import { drainable } from '../../services/ca/lifecycle';
import { makeKey, proofFor } from '../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../helpers/mayfly';

/**
 * The signing route is declared once (http/signing.ts) and reached straight from the
 * node:http listener (http/fast-path.ts); Express serves the rest, and mounts the same
 * handler on its router. Every request below is sent both ways — to `app.api` (the listener)
 * and to `app.api.express` (Express alone) — and must get the same status, headers and body
 * (certificates aside, which differ by serial and key): Express's decoration of the request
 * changes nothing, and the paths Express answers (501, 404) are the same. The health probes
 * are answered before Express too (so that probes alone never load it) and must match it.
 */

const EMAIL = 'alice@example.com';
let ca: TestCa;
beforeAll(async () => {
  ca = await startTestCa({ env: { MAYFLY_MAX_REQUEST_BYTES: '2048' } });
});
afterAll(() => ca.close());

interface Case {
  readonly name: string;
  send(target: TestCa['app']['api'] | TestCa['app']['api']['express']): Promise<request.Response>;
}

const HEADERS = [
  'content-type',
  'content-length',
  'x-request-id',
  'access-control-allow-origin',
  'connection',
  'retry-after',
  'ratelimit',
];

function comparable(res: request.Response) {
  const headers = Object.fromEntries(HEADERS.map((h) => [h, res.headers[h] as unknown]));
  let body: unknown = res.text;
  if (res.status === 200 || res.status === 201) {
    // Certificates differ by serial and key; their number and framing must not.
    body = (res.text ?? '').replace(
      /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g,
      'PEM',
    );
    delete headers['content-length'];
  }
  return { status: res.status, headers, body };
}

async function cases(): Promise<Case[]> {
  const key = makeKey('p256');
  const proof = proofFor(key, EMAIL);
  const token = await ca.issuer.mintEmail(EMAIL);
  const v2 = JSON.stringify(v2Body(token, key.pem, proof));
  const post = (path: string) => (target: Parameters<Case['send']>[0]) =>
    request(target).post(path).set('X-Request-Id', 'same-id-both-ways');
  return [
    { name: 'v2 issue', send: (t) => post('/api/v2/signingCert')(t).type('json').send(v2) },
    {
      name: 'v2 issue with an Origin and a query string',
      send: (t) =>
        request(t)
          .post('/api/v2/signingCert?x=1')
          .set('Origin', 'https://example.com')
          .set('X-Request-Id', 'same-id-both-ways')
          .type('json')
          .send(v2),
    },
    {
      name: 'v1 issue',
      send: (t) =>
        post('/api/v1/signingCert')(t)
          .set('Authorization', `Bearer ${token}`)
          .type('json')
          .send(JSON.stringify(v1Body(key.pem, proof))),
    },
    {
      name: 'v2 gzip-encoded body',
      send: (t) =>
        post('/api/v2/signingCert')(t)
          .set('Content-Encoding', 'gzip')
          .type('json')
          .send(gzipSync(Buffer.from(v2))),
    },
    { name: 'no body', send: (t) => post('/api/v2/signingCert')(t) },
    { name: 'malformed JSON', send: (t) => post('/api/v2/signingCert')(t).type('json').send('{') },
    {
      name: 'body over the limit',
      send: (t) =>
        post('/api/v2/signingCert')(t)
          .type('json')
          .send(JSON.stringify({ pad: 'x'.repeat(4096) })),
    },
    {
      name: 'bad token',
      send: (t) =>
        post('/api/v2/signingCert')(t)
          .type('json')
          .send(JSON.stringify(v2Body('not.a.token', key.pem, proof))),
    },
    {
      name: 'proof by another key',
      send: (t) =>
        post('/api/v2/signingCert')(t)
          .type('json')
          .send(JSON.stringify(v2Body(token, key.pem, proofFor(makeKey('p256'), EMAIL)))),
    },
    {
      name: 'v1 without a key',
      send: (t) => post('/api/v1/signingCert')(t).type('json').send('{}'),
    },
    {
      name: 'unsafe request id',
      send: (t) => request(t).post('/api/v2/signingCert').set('X-Request-Id', 'a b'),
    },
    {
      name: 'wrong method (501)',
      send: (t) => request(t).get('/api/v2/signingCert').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'case-different path (404)',
      send: (t) => request(t).post('/api/v2/signingcert').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'liveness probe',
      send: (t) => request(t).get('/healthz').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'readiness probe with an Origin and a query string',
      send: (t) =>
        request(t)
          .get('/readyz?probe=1')
          .set('Origin', 'https://example.com')
          .set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'readiness probe, HEAD',
      send: (t) => request(t).head('/readyz').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'health path, wrong method (404)',
      send: (t) => request(t).post('/healthz').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'health path, trailing slash (404)',
      send: (t) => request(t).get('/readyz/').set('X-Request-Id', 'same-id-both-ways'),
    },
    {
      name: 'trailing slash (404)',
      send: (t) => request(t).post('/api/v2/signingCert/').set('X-Request-Id', 'same-id-both-ways'),
    },
  ];
}

test('the fast path and the Express router answer every request the same way', async () => {
  for (const c of await cases()) {
    const fast = comparable(await c.send(ca.app.api));
    const viaExpress = comparable(await c.send(ca.app.api.express));
    // A fresh request id is random each way; compare its presence, not its value.
    if (c.name === 'unsafe request id') {
      expect(fast.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(viaExpress.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      fast.headers['x-request-id'] = viaExpress.headers['x-request-id'] = 'random';
    }
    expect({ case: c.name, ...fast }).toEqual({ case: c.name, ...viaExpress });
  }
});

test('both count requests under the route label and issued certificates alike', async () => {
  const before = await ca.app.metrics.registry.getSingleMetricAsString(
    'mayfly_http_request_duration_seconds',
  );
  expect(before).toContain('route="/api/v2/signingCert"');
  const count = (text: string) =>
    [...text.matchAll(/_count\{[^}]*route="\/api\/v2\/signingCert"[^}]*code="200"[^}]*\} (\d+)/g)]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
  const key = makeKey('p256');
  const token = await ca.issuer.mintEmail(EMAIL);
  const body = v2Body(token, key.pem, proofFor(key, EMAIL));
  const n0 = count(before);
  await request(ca.app.api).post('/api/v2/signingCert').send(body).expect(200);
  const n1 = count(
    await ca.app.metrics.registry.getSingleMetricAsString('mayfly_http_request_duration_seconds'),
  );
  await request(ca.app.api.express).post('/api/v2/signingCert').send(body).expect(200);
  const n2 = count(
    await ca.app.metrics.registry.getSingleMetricAsString('mayfly_http_request_duration_seconds'),
  );
  expect([n1 - n0, n2 - n1]).toEqual([1, 1]);
});

/**
 * The listener and Express alone, each on a real server that is draining as the process
 * drains it (lifecycle.ts: readiness off, and the server's drain bookkeeping answers every
 * request with `Connection: close`): what a draining replica sends, both ways.
 */
const keepAlive = new Agent({ keepAlive: true });

async function whileDraining<T>(
  run: (fastUrl: string, expressUrl: string) => Promise<T>,
): Promise<T> {
  const fast = await listen(ca.app.api, '127.0.0.1', 0);
  const viaExpress = await listen(ca.app.api.express, '127.0.0.1', 0);
  const servers = [fast.server, viaExpress.server];
  for (const server of servers) drainable(server);
  const urls = [`http://127.0.0.1:${fast.port}`, `http://127.0.0.1:${viaExpress.port}`] as const;
  try {
    // The client keeps connections alive: before the drain, both servers keep them open.
    for (const url of urls) {
      const res = await request(url).get('/healthz').agent(keepAlive);
      expect(res.headers.connection).toBe('keep-alive');
    }
    ca.app.setReady(false);
    for (const server of servers) drainable(server).startDraining();
    return await run(...urls);
  } finally {
    ca.app.setReady(true);
    keepAlive.destroy();
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }
}

test('while draining, the readiness probe answers 503 and closes, both ways alike', async () => {
  await whileDraining(async (fastUrl, expressUrl) => {
    const fast = comparable(
      await request(fastUrl).get('/readyz').agent(keepAlive).set('X-Request-Id', 'd'),
    );
    const viaExpress = comparable(
      await request(expressUrl).get('/readyz').agent(keepAlive).set('X-Request-Id', 'd'),
    );
    expect(fast.status).toBe(503);
    expect(fast.headers.connection).toBe('close');
    expect(fast).toEqual(viaExpress);
  });
});

test('a draining server closes fast-path connections like Express ones', async () => {
  const key = makeKey('p256');
  const token = await ca.issuer.mintEmail(EMAIL);
  const body = v2Body(token, key.pem, proofFor(key, EMAIL));
  await whileDraining(async (fastUrl, expressUrl) => {
    const fast = await request(fastUrl).post('/api/v2/signingCert').agent(keepAlive).send(body);
    const viaExpress = await request(expressUrl)
      .post('/api/v2/signingCert')
      .agent(keepAlive)
      .send(body);
    expect(fast.status).toBe(200);
    expect(viaExpress.status).toBe(200);
    expect(fast.headers.connection).toBe('close');
    expect(viaExpress.headers.connection).toBe('close');
  });
});
