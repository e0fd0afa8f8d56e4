import { startTestCa, type TestCa } from '../../helpers/mayfly';
import {
  ROOMY,
  metricValue,
  redisAnswers,
  waitForRedis,
  writeLimits,
} from '../../helpers/ratelimit';
import { startRedis, stopAllRedis, type RedisProcess } from '../../helpers/redis';
import { VERSIONS, issuedStatus, requestCertificate, type Answer } from './client';
import { until } from '../../helpers/wait';

/**
 * Redis faults that leave the server running (redis-fault.test.ts covers the process being
 * killed, frozen with SIGSTOP and failed over): CLIENT PAUSE, which holds every command
 * (ALL) or every write (WRITE, which includes the limiter's script) for a while, and Redis
 * answering errors instead of results (out of memory under noeviction; a Lua runtime
 * error from a key of the wrong type). Under fail-open no request may fail with a 5xx or
 * wait longer than the command timeout, the per-replica insurance limiter answers in the
 * meantime, and once Redis is itself again the limiter uses it without anybody's help.
 */

const COMMAND_TIMEOUT_MS = 200;
/** What a request may take beyond one command timeout: its own work on a busy machine. */
const SLACK_MS = 1000;
/** Longer than the latency bound, so a request that waited for Redis would show. */
const PAUSE_MS = 2500;
const PER_IDENTITY = { burst: 20, count: 1, period: '1h' };

interface TimedAnswer extends Answer {
  readonly endedAt: number;
}

/** Signing requests, `concurrency` at a time, over both API versions and many identities. */
function startLoad(ca: TestCa, prefix: string, concurrency = 4) {
  const answers: TimedAnswer[] = [];
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const i = n++;
      const email = `${prefix}-${i % 1000}@example.com`;
      const version = VERSIONS[i % 2]!;
      const token = await ca.issuer.mintEmail(email);
      const answer = await requestCertificate(ca.url, token, version, email).catch((): Answer => ({
        status: 0,
        text: '',
        ms: 0,
        certificates: 0,
        requestId: null,
      }));
      answers.push({ ...answer, endedAt: Date.now() });
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    answers,
    async stop(): Promise<TimedAnswer[]> {
      running = false;
      await Promise.all(workers);
      return answers;
    },
  };
}

function insured(ca: TestCa, reason: 'error' | 'timeout' | 'backoff'): Promise<number> {
  return metricValue(ca, 'mayfly_ratelimit_insurance_total', { reason });
}

function storeErrors(ca: TestCa, reason: 'error' | 'timeout'): Promise<number> {
  return metricValue(ca, 'mayfly_ratelimit_store_errors_total', { store: 'redis', reason });
}

/** No 5xx and no dropped connection; only issued certificates or rate-limit refusals. */
function expectServed(answers: readonly Answer[]): void {
  expect(answers.filter((a) => a.status >= 500 || a.status === 0)).toEqual([]);
  for (const a of answers) expect([200, 201, 429]).toContain(a.status);
}

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
      MAYFLY_REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
      MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: '200',
    },
  });
  await ca.listen();
  await waitForRedis(ca);
}, 30_000);
afterAll(async () => {
  await ca.close();
  await stopAllRedis();
});

describe('Redis pauses its clients (CLIENT PAUSE)', () => {
  test.each(['ALL', 'WRITE'])(
    'CLIENT PAUSE %s: no request fails or waits past the command timeout, the insurance limiter answers, and Redis answers again after the pause',
    async (mode) => {
      const timeout = ca.config.redis.commandTimeoutMs;
      const load = startLoad(ca, `pause-${mode.toLowerCase()}`);
      await until(() => load.answers.length >= 20, 'load before the pause');
      const timeoutsBefore = await insured(ca, 'timeout');

      expect(await redis.cli('CLIENT', 'PAUSE', String(PAUSE_MS), mode)).toBe('OK');
      const pausedAt = Date.now();
      await until(async () => (await insured(ca, 'timeout')) > timeoutsBefore, 'a timeout');
      await new Promise((r) => setTimeout(r, pausedAt + PAUSE_MS - Date.now()));
      const answeredBefore = await redisAnswers(ca);
      await until(async () => (await redisAnswers(ca)) > answeredBefore + 10, 'Redis again');
      const answers = await load.stop();

      expectServed(answers);
      const duringPause = answers.filter(
        (a) => a.endedAt > pausedAt && a.endedAt < pausedAt + PAUSE_MS,
      );
      expect(duringPause.length).toBeGreaterThan(10);
      // Certificates kept being issued while Redis was paused.
      expect(
        duringPause.filter((a) => a.status === 200 || a.status === 201).length,
      ).toBeGreaterThan(10);
      expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(timeout + SLACK_MS);
      // The timeouts are few: after one, the store is skipped for the back-off period.
      expect(await insured(ca, 'backoff')).toBeGreaterThan(0);
    },
    30_000,
  );
});

describe('Redis answers errors', () => {
  test('out of memory under noeviction: every request is served by the insurance limiter, which still limits, until memory is back', async () => {
    expect(await redis.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')).toBe('OK');
    expect(await redis.cli('CONFIG', 'SET', 'maxmemory', '1')).toBe('OK');
    try {
      const errorsBefore = await storeErrors(ca, 'error');
      const insuredBefore = await insured(ca, 'error');
      const answers: Answer[] = [];
      for (let i = 0; i < 8; i++) {
        const version = VERSIONS[i % 2]!;
        const email = 'oom@example.com';
        const token = await ca.issuer.mintEmail(email);
        answers.push(await requestCertificate(ca.url, token, version, email));
      }
      expectServed(answers);
      // A quarter of the per-identity burst of 20: five, then the insurance limiter refuses.
      expect(answers.map((a) => a.status)).toEqual([200, 201, 200, 201, 200, 429, 429, 429]);
      expect(await storeErrors(ca, 'error')).toBeGreaterThan(errorsBefore);
      expect(await insured(ca, 'error')).toBeGreaterThan(insuredBefore);
      // Redis itself refused the write: the limiter is not guessing.
      await expect(redis.cli('SET', 'probe', 'x')).resolves.toMatch(/OOM/);
    } finally {
      expect(await redis.cli('CONFIG', 'SET', 'maxmemory', '0')).toBe('OK');
    }
    const answeredBefore = await redisAnswers(ca);
    await until(async () => {
      const token = await ca.issuer.mintEmail('after-oom@example.com');
      await requestCertificate(ca.url, token, 'v2', 'after-oom@example.com');
      return (await redisAnswers(ca)) > answeredBefore;
    }, 'Redis to answer again');
    // Redis again, with the full limit for a fresh identity.
    for (const version of VERSIONS) {
      const token = await ca.issuer.mintEmail('fresh-after-oom@example.com');
      const answer = await requestCertificate(
        ca.url,
        token,
        version,
        'fresh-after-oom@example.com',
      );
      expect(answer.status).toBe(issuedStatus(version));
    }
  });

  test('a Lua runtime error (a bucket key of the wrong type) is an error answered by the insurance limiter, and the bucket works again once the key is fixed', async () => {
    // Every request spends the per-client-ip bucket first; make that key a list, so the
    // limiter's script fails with WRONGTYPE on it.
    const token = await ca.issuer.mintEmail('lua@example.com');
    await requestCertificate(ca.url, token, 'v2', 'lua@example.com');
    const keys = (await redis.cli('--scan', '--pattern', 'mayfly:rl:per-client-ip:*'))
      .split('\n')
      .filter(Boolean);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      await redis.cli('DEL', key);
      await redis.cli('RPUSH', key, 'not-a-tat');
    }
    const errorsBefore = await storeErrors(ca, 'error');
    const answers: Answer[] = [];
    for (let i = 0; i < 6; i++) {
      const version = VERSIONS[i % 2]!;
      const email = `lua-${i}@example.com`;
      answers.push(
        await requestCertificate(ca.url, await ca.issuer.mintEmail(email), version, email),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    expectServed(answers);
    expect(answers.map((a) => a.status)).toEqual([200, 201, 200, 201, 200, 201]);
    expect(await storeErrors(ca, 'error')).toBeGreaterThan(errorsBefore);

    for (const key of keys) await redis.cli('DEL', key);
    const answeredBefore = await redisAnswers(ca);
    await until(async () => {
      await requestCertificate(ca.url, token, 'v1', 'lua@example.com');
      return (await redisAnswers(ca)) > answeredBefore;
    }, 'Redis to answer again');
  });
});
