import { Writable } from 'node:stream';
import request from 'supertest';
import { createLogger } from '../../../services/common/logger';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, v1Body, type TestCa } from '../../helpers/mayfly';
import {
  ROOMY,
  forgedTokenFor,
  metricValue,
  replaceLimits,
  signFor,
  writeLimits,
  type LimitSpec,
} from '../../helpers/ratelimit';

/**
 * Rate limits as a client meets them, through the real HTTP app with the in-memory store
 * (the embedded default): the 429 answer, where each limit sits in the request flow,
 * which address counts as the client, overrides and reloading, and `off`.
 */

const ONE_AN_HOUR = (burst: number): LimitSpec => ({ burst, count: 1, period: '1h' });
const cas: TestCa[] = [];

async function caWith(env: Record<string, string>, logs?: string[]): Promise<TestCa> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs?.push(chunk.toString());
      done();
    },
  });
  const ca = await startTestCa({
    env,
    ...(logs ? { logger: createLogger('debug', sink) } : {}),
  });
  cas.push(ca);
  return ca;
}

afterAll(async () => {
  await Promise.all(cas.map((ca) => ca.close()));
});

describe('a refused request', () => {
  let ca: TestCa;
  const logs: string[] = [];
  let refused: request.Response;
  let signsBefore: number;

  beforeAll(async () => {
    const file = writeLimits({
      defaults: { 'per-client-ip': ROOMY, 'per-identity': ONE_AN_HOUR(2), 'per-issuer': ROOMY },
    });
    ca = await caWith({ MAYFLY_RATELIMITS: file }, logs);
    expect((await signFor(ca, 'alice@example.com')).status).toBe(200);
    expect((await signFor(ca, 'alice@example.com')).status).toBe(200);
    signsBefore = ca.signCount();
    refused = await signFor(ca, 'alice@example.com');
  });

  test('gets 429 with a Fulcio-style body naming the limit, and no certificate', () => {
    expect(refused.status).toBe(429);
    expect(refused.text).toBe(
      '{"code":8,"message":"rate limit exceeded: per-identity","details":[]}',
    );
    expect(ca.signCount()).toBe(signsBefore);
  });

  test('gets Retry-After in whole seconds: the wait plus at most 3 % jitter', () => {
    const retryAfter = refused.headers['retry-after'] as string;
    expect(retryAfter).toMatch(/^\d+$/);
    // An hour's interval, less the moment since the spend, plus 0–3 %.
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(3599);
    expect(Number(retryAfter)).toBeLessThanOrEqual(Math.ceil(3600 * 1.03));
  });

  test('gets RateLimit and RateLimit-Policy headers for the refusing limit', () => {
    expect(refused.headers['ratelimit-policy']).toBe('"per-identity";q=1;w=3600');
    expect(refused.headers['ratelimit']).toBe(
      `"per-identity";r=0;t=${refused.headers['retry-after'] as string}`,
    );
  });

  test('is counted, and logged with its bucket but never the token or the identity', async () => {
    expect(
      await metricValue(ca, 'mayfly_ratelimit_decisions_total', {
        limit: 'per-identity',
        result: 'denied',
      }),
    ).toBe(1);
    expect(await metricValue(ca, 'mayfly_signing_refusals_total', { reason: 'rate_limit' })).toBe(
      1,
    );
    const line = logs.find((l) => l.includes('"code":"rate_limited"'));
    expect(line).toBeDefined();
    expect(line).toMatch(/bucket per-identity:[A-Za-z0-9_-]{22}/);
    expect(line).not.toContain('alice');
    expect(line).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
  });

  test('does not stop another identity', async () => {
    expect((await signFor(ca, 'bob@example.com')).status).toBe(200);
  });
});

describe('identity limits are spent only after the token and the proof verify', () => {
  let ca: TestCa;
  beforeAll(async () => {
    const file = writeLimits({ defaults: { 'per-identity': ONE_AN_HOUR(2) } });
    ca = await caWith({ MAYFLY_RATELIMITS: file });
  });

  test('forged tokens naming a victim do not drain the victim’s bucket', async () => {
    const victim = 'victim@example.com';
    const key = makeKey('p256');
    for (let i = 0; i < 5; i++) {
      const res = await request(ca.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(await forgedTokenFor(ca, victim), key.pem, proofFor(key, victim)));
      expect(res.status).toBe(400);
    }
    expect((await signFor(ca, victim)).status).toBe(200);
    expect((await signFor(ca, victim)).status).toBe(200);
    expect((await signFor(ca, victim)).status).toBe(429);
  });

  test('a real token with a wrong proof of possession spends nothing', async () => {
    const email = 'carol@example.com';
    const key = makeKey('p256');
    for (let i = 0; i < 5; i++) {
      const res = await request(ca.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(await ca.issuer.mintEmail(email), key.pem, proofFor(key, 'someone-else')));
      expect(res.status).toBe(400);
    }
    expect((await signFor(ca, email)).status).toBe(200);
    expect((await signFor(ca, email)).status).toBe(200);
  });
});

describe('the per-issuer limit', () => {
  test('is shared by every identity of the issuer', async () => {
    const file = writeLimits({ defaults: { 'per-issuer': ONE_AN_HOUR(3) } });
    const ca = await caWith({ MAYFLY_RATELIMITS: file });
    for (const who of ['a', 'b', 'c'])
      expect((await signFor(ca, `${who}@x.example`)).status).toBe(200);
    const res = await signFor(ca, 'd@x.example');
    expect(res.status).toBe(429);
    expect((res.body as { message: string }).message).toBe('rate limit exceeded: per-issuer');
  });
});

describe('the global cap', () => {
  test('is off unless configured, and bites when it is', async () => {
    const file = writeLimits({ defaults: { global: ONE_AN_HOUR(1) } });
    const ca = await caWith({ MAYFLY_RATELIMITS: file });
    expect((await signFor(ca, 'a@x.example')).status).toBe(200);
    const res = await signFor(ca, 'b@x.example');
    expect(res.status).toBe(429);
    expect((res.body as { message: string }).message).toBe('rate limit exceeded: global');
  });
});

describe('the per-client-ip limit', () => {
  let ca: TestCa;
  beforeAll(async () => {
    const file = writeLimits({ defaults: { 'per-client-ip': ONE_AN_HOUR(2) } });
    ca = await caWith({ MAYFLY_RATELIMITS: file, MAYFLY_MAX_REQUEST_BYTES: '1024' });
  });

  test('refuses before the body is read or the token looked at, on both API versions', async () => {
    const junk = await request(ca.app.api).post('/api/v2/signingCert').send({});
    expect(junk.status).toBe(400);
    expect((await signFor(ca, 'alice@example.com')).status).toBe(200);
    // Over the body limit and without a token: a 429, so nothing was parsed.
    const big = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('content-type', 'application/json')
      .send('x'.repeat(4096));
    expect(big.status).toBe(429);
    expect((big.body as { message: string }).message).toBe('rate limit exceeded: per-client-ip');
    const key = makeKey('p256');
    const v1 = await request(ca.app.api)
      .post('/api/v1/signingCert')
      .send(v1Body(key.pem, proofFor(key, 'x')));
    expect(v1.status).toBe(429);
    expect(v1.headers['retry-after']).toMatch(/^\d+$/);
  });

  test('does not apply to the read-only endpoints', async () => {
    expect((await request(ca.app.api).get('/api/v2/trustBundle')).status).toBe(200);
    expect((await request(ca.app.api).get('/api/v2/configuration')).status).toBe(200);
  });
});

describe('the client address', () => {
  const file = () => writeLimits({ defaults: { 'per-client-ip': ONE_AN_HOUR(1) } });

  test('is the socket peer: X-Forwarded-For is ignored by default', async () => {
    const ca = await caWith({ MAYFLY_RATELIMITS: file() });
    await request(ca.app.api).post('/api/v2/signingCert').set('x-forwarded-for', '192.0.2.1');
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('x-forwarded-for', '192.0.2.2');
    expect(res.status).toBe(429);
  });

  test('comes from X-Forwarded-For when the peer is a trusted proxy', async () => {
    const ca = await caWith({ MAYFLY_RATELIMITS: file(), MAYFLY_TRUSTED_PROXIES: 'loopback' });
    const from = (ip: string) =>
      request(ca.app.api).post('/api/v2/signingCert').set('x-forwarded-for', ip).send({});
    expect((await from('192.0.2.1')).status).toBe(400);
    expect((await from('192.0.2.2')).status).toBe(400);
    expect((await from('192.0.2.1')).status).toBe(429);
    // The same /56 is one client.
    expect((await from('2001:db8:0:ab01::1')).status).toBe(400);
    expect((await from('2001:db8:0:abff::2')).status).toBe(429);
    // Only the right-most untrusted entry counts: a client cannot pick a fresh address by
    // prepending one.
    expect((await from('198.51.100.7, 192.0.2.2')).status).toBe(429);
  });
});

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('the limits file', () => {
  test('reloads without a restart: overrides for one identity, defaults for the rest', async () => {
    const file = writeLimits({ defaults: { 'per-identity': ONE_AN_HOUR(1) } });
    const logs: string[] = [];
    const ca = await caWith({ MAYFLY_RATELIMITS: file, MAYFLY_RATELIMITS_RELOAD_MS: '50' }, logs);
    const reloads = (result: string) =>
      metricValue(ca, 'mayfly_ratelimit_config_reloads_total', { result });
    const overridden = [`${ca.issuer.url} ci@example.com`, `${ca.issuer.url} ci2@example.com`];
    replaceLimits(file, {
      defaults: { 'per-identity': ONE_AN_HOUR(1) },
      overrides: [
        {
          'per-identity': {
            ...ONE_AN_HOUR(3),
            ids: overridden.map((id) => ({ id, comment: 'build robot' })),
          },
        },
      ],
    });
    await eventually(async () => (await reloads('success')) === 1, 'the reload');
    for (let i = 0; i < 3; i++) expect((await signFor(ca, 'ci@example.com')).status).toBe(200);
    expect((await signFor(ca, 'ci@example.com')).status).toBe(429);
    expect((await signFor(ca, 'dev@example.com')).status).toBe(200);
    expect((await signFor(ca, 'dev@example.com')).status).toBe(429);

    // A broken file: logged, counted, and the limits in force stay.
    replaceLimits(file, 'defaults: { per-identity: { burst: -1 } }\n');
    await eventually(async () => (await reloads('failure')) === 1, 'the failed reload');
    expect(logs.some((l) => l.includes('keeping the limits in force'))).toBe(true);
    for (let i = 0; i < 3; i++) expect((await signFor(ca, 'ci2@example.com')).status).toBe(200);
    expect((await signFor(ca, 'ci2@example.com')).status).toBe(429);
  });

  test('MAYFLY_RATELIMITS=off turns every limit off, and says so loudly at start', async () => {
    const logs: string[] = [];
    const ca = await caWith({ MAYFLY_RATELIMITS: 'off' }, logs);
    expect(logs.some((l) => l.includes('"level":40') && l.includes('RATE LIMITS ARE OFF'))).toBe(
      true,
    );
    // Far past the shipped per-identity burst of 50.
    const statuses = await Promise.all(
      Array.from({ length: 60 }, () => signFor(ca, 'alice@example.com').then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
  });

  test('the shipped defaults apply when nothing is configured', async () => {
    const ca = await caWith({});
    // The shipped per-identity limit is a burst of 50, then 10/s: requesting faster than
    // that meets a refusal after at least 50 certificates.
    const answers: request.Response[] = [];
    while (answers.length < 500 && answers.at(-1)?.status !== 429)
      answers.push(await signFor(ca, 'alice@example.com'));
    const refused = answers.pop()!;
    expect(answers.length).toBeGreaterThanOrEqual(50);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(refused.status).toBe(429);
    expect((refused.body as { message: string }).message).toBe('rate limit exceeded: per-identity');
  });
});
