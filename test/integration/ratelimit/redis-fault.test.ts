import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { until } from '../../helpers/wait';
import {
  PATIENT_REDIS,
  ROOMY,
  insuranceAnswers,
  metricValue,
  redisAnswers,
  signFor,
  startLoad,
  waitForRedis,
  writeLimits,
} from '../../helpers/ratelimit';
import { startRedis, stopAllRedis, type RedisProcess } from '../../helpers/redis';

/**
 * Redis dies while requests flow. Under fail-open no request may fail with a 5xx, the
 * per-replica insurance limiter (a quarter of each limit by default) must still refuse,
 * and once Redis is back the limiter must use it again without anybody's help.
 * Fail-closed is the other policy: 503, code 14, Retry-After; readiness stays up.
 */

const PER_IDENTITY = { burst: 20, count: 1, period: '1h' };

async function statusesFor(ca: TestCa, email: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await signFor(ca, email, { url: ca.url })).status);
  return out;
}

afterAll(() => stopAllRedis());

describe('fail-open (the default)', () => {
  let redis: RedisProcess;
  let ca: TestCa;

  beforeAll(async () => {
    redis = await startRedis();
    ca = await startTestCa({
      env: {
        MAYFLY_REDIS_URL: redis.url,
        MAYFLY_RATELIMITS: writeLimits({
          defaults: { 'per-client-ip': ROOMY, 'per-identity': PER_IDENTITY, 'per-issuer': ROOMY },
        }),
        ...PATIENT_REDIS,
        MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: '200',
      },
    });
    await ca.listen();
    await waitForRedis(ca);
  }, 30_000);
  afterAll(() => ca.close());

  test('killing Redis mid-flow fails no request, the insurance limit bites, and Redis is used again once back', async () => {
    const load = startLoad(ca, 4);
    await until(async () => load.statuses.length >= 20, 'load before the crash');

    await redis.kill('SIGKILL');
    const insuredBefore = await insuranceAnswers(ca);
    await until(async () => (await insuranceAnswers(ca)) > insuredBefore + 20, 'insured requests');

    // The insurance limiter holds a quarter of each limit: 5 of the 20 burst.
    const duringOutage = await statusesFor(ca, 'outage@example.com', 8);
    expect(duringOutage).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);

    await redis.restart();
    const answeredBefore = await redisAnswers(ca);
    await until(
      async () => (await redisAnswers(ca)) > answeredBefore + 20,
      'Redis to answer again',
    );
    const statuses = await load.stop();

    expect(statuses.length).toBeGreaterThan(60);
    expect(statuses.filter((s) => s >= 500 || s === 0)).toEqual([]);
    // Redis again, with the full limit: 20, not the insurance's 5; and its key is there.
    const afterwards = await statusesFor(ca, 'after@example.com', 21);
    expect(afterwards.filter((s) => s === 200)).toHaveLength(20);
    expect(afterwards[20]).toBe(429);
    expect(Number(await redis.cli('DBSIZE'))).toBeGreaterThan(0);
  }, 60_000);
});

describe('fail-open with a hung Redis', () => {
  test('a frozen Redis costs timeouts, not failures, and is used again when it thaws', async () => {
    const redis = await startRedis();
    const ca = await startTestCa({
      env: {
        MAYFLY_REDIS_URL: redis.url,
        MAYFLY_RATELIMITS: writeLimits({
          defaults: { 'per-client-ip': ROOMY, 'per-identity': PER_IDENTITY },
        }),
        MAYFLY_REDIS_COMMAND_TIMEOUT_MS: '100',
        MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: '200',
      },
    });
    try {
      await ca.listen();
      await waitForRedis(ca);
      const load = startLoad(ca, 4);
      redis.pause();
      const timeouts = () =>
        metricValue(ca, 'mayfly_ratelimit_insurance_total', { reason: 'timeout' });
      await until(async () => (await timeouts()) > 0, 'a timeout');
      await until(async () => load.statuses.length >= 40, 'requests during the freeze');
      redis.resume();
      const answeredBefore = await redisAnswers(ca);
      await until(async () => (await redisAnswers(ca)) > answeredBefore + 10, 'Redis again');
      const statuses = await load.stop();
      expect(statuses.filter((s) => s >= 500 || s === 0)).toEqual([]);
    } finally {
      await ca.close();
    }
  }, 60_000);
});

describe('fail-closed', () => {
  test('answers 503 with code 14 and Retry-After while Redis is out, and stays ready', async () => {
    const redis = await startRedis();
    const ca = await startTestCa({
      env: {
        MAYFLY_REDIS_URL: redis.url,
        MAYFLY_RATELIMITS: writeLimits({
          defaults: { 'per-client-ip': ROOMY, 'per-identity': PER_IDENTITY },
        }),
        MAYFLY_RATELIMIT_FAILURE_POLICY: 'fail-closed',
        ...PATIENT_REDIS,
        MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: '200',
      },
    });
    try {
      await ca.listen();
      await waitForRedis(ca);
      await redis.kill('SIGKILL');
      const res = await signFor(ca, 'alice@example.com', { url: ca.url });
      expect(res.status).toBe(503);
      expect(res.text).toBe(
        '{"code":14,"message":"the service is temporarily unavailable, retry later","details":[]}',
      );
      expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect((await fetch(`${ca.url}/readyz`)).status).toBe(200);

      await redis.restart();
      await until(
        async () => (await signFor(ca, 'alice@example.com', { url: ca.url })).status === 200,
        'recovery',
      );
    } finally {
      await ca.close();
    }
  }, 60_000);
});
