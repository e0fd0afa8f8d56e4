import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { until } from '../../helpers/wait';
import {
  PATIENT_REDIS,
  ROOMY,
  insuranceAnswers,
  redisAnswers,
  signFor,
  startLoad,
  waitForRedis,
  writeLimits,
} from '../../helpers/ratelimit';
import {
  startCluster,
  startRedis,
  startSentinelGroup,
  stopAllRedis,
  type RedisProcess,
} from '../../helpers/redis';

/**
 * The limiter on each Redis topology it supports, each a set of real redis-server
 * processes: a Sentinel group failing over while certificates are being issued, a
 * three-primary Cluster, and a standalone server over TLS with an ACL user.
 */

async function statusesFor(ca: TestCa, email: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await signFor(ca, email)).status);
  return out;
}

const keysOn = async (node: RedisProcess) =>
  (await node.cli('--scan', '--pattern', 'mayfly:rl:*')).split('\n').filter(Boolean);

afterAll(() => stopAllRedis());

test('Sentinel: a failover during issuance fails no request, and the new primary holds the limits', async () => {
  const group = await startSentinelGroup();
  const ca = await startTestCa({
    env: {
      MAYFLY_REDIS_SENTINELS: group.sentinelAddresses.join(','),
      MAYFLY_REDIS_SENTINEL_NAME: group.name,
      MAYFLY_RATELIMITS: writeLimits({
        defaults: {
          'per-client-ip': ROOMY,
          'per-identity': { burst: 10, count: 1, period: '1h' },
        },
      }),
      MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: '200',
      ...PATIENT_REDIS,
    },
  });
  try {
    await ca.listen();
    await waitForRedis(ca);
    const load = startLoad(ca, 4);
    await until(async () => load.statuses.length >= 20, 'load before the failover', 30_000);

    const oldPrimary = group.primary.port;
    await group.primary.kill('SIGKILL');
    const newPrimary = await group.waitForFailover(oldPrimary);
    expect(newPrimary).toBe(group.replica.port);
    const answered = await redisAnswers(ca);
    await until(
      async () => (await redisAnswers(ca)) > answered + 20,
      'the new primary to answer',
      30_000,
    );
    const statuses = await load.stop();
    expect(statuses.filter((s) => s >= 500 || s === 0)).toEqual([]);
    expect(await insuranceAnswers(ca)).toBeGreaterThan(0);

    // The promoted replica now keeps the buckets, with the full limit (not the insurance's).
    const after = await statusesFor(ca, 'after-failover@example.com', 11);
    expect(after).toEqual([...Array<number>(10).fill(200), 429]);
    expect((await keysOn(group.replica)).length).toBeGreaterThan(0);
  } finally {
    await ca.close();
  }
}, 90_000);

describe('Cluster', () => {
  let addresses: readonly string[];
  let nodes: readonly RedisProcess[];
  beforeAll(async () => {
    ({ addresses, nodes } = await startCluster(3));
  }, 60_000);

  async function clusterCa(defaults: Record<string, unknown>): Promise<TestCa> {
    const ca = await startTestCa({
      env: {
        MAYFLY_REDIS_CLUSTER_NODES: addresses.join(','),
        ...PATIENT_REDIS,
        MAYFLY_RATELIMITS: writeLimits({ defaults: { 'per-client-ip': ROOMY, ...defaults } }),
      },
    });
    await waitForRedis(ca);
    return ca;
  }

  test('a bucket that refuses leaves the request’s other buckets, on other shards, unspent', async () => {
    const ca = await clusterCa({
      'per-identity': { burst: 1, count: 1, period: '1h' },
      'per-issuer': { burst: 2, count: 1, period: '1h' },
    });
    try {
      expect((await signFor(ca, 'alice@example.com')).status).toBe(200);
      // Refused by per-identity; the per-issuer spend it made meanwhile is given back...
      expect((await signFor(ca, 'alice@example.com')).body).toMatchObject({
        message: 'rate limit exceeded: per-identity',
      });
      // ...so the issuer still has room for bob, and only then is full.
      expect((await signFor(ca, 'bob@example.com')).status).toBe(200);
      expect((await signFor(ca, 'carol@example.com')).body).toMatchObject({
        message: 'rate limit exceeded: per-issuer',
      });
    } finally {
      await ca.close();
    }
  });

  test('buckets spread over all three primaries', async () => {
    const ca = await clusterCa({ 'per-identity': { burst: 1, count: 1, period: '1h' } });
    try {
      for (let i = 0; i < 15; i++)
        expect((await signFor(ca, `u${i}@example.com`)).status).toBe(200);
      const perNode = await Promise.all(nodes.map(keysOn));
      // One hash tag per bucket: keys land on every shard (all 15 on one: p ≈ 2e-7).
      expect(perNode.every((keys) => keys.length > 0)).toBe(true);
      for (const key of perNode.flat())
        expect(key).toMatch(/^mayfly:rl:[a-z-]+:\{[A-Za-z0-9_-]{22}\}$/);
    } finally {
      await ca.close();
    }
  });
});

describe('standalone over TLS with an ACL user', () => {
  let redis: RedisProcess;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mayfly-redis-tls-'));
    const openssl = (...args: string[]) =>
      execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-subj',
      '/CN=test redis CA',
      '-days',
      '1',
    );
    openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-extfile',
      'san.ext',
    );
    writeFileSync(join(dir, 'password'), 's3cret\n');
    writeFileSync(join(dir, 'wrong-password'), 'guess\n');
    redis = await startRedis({
      tls: {
        certFile: join(dir, 'server.pem'),
        keyFile: join(dir, 'server.key'),
        caFile: join(dir, 'ca.pem'),
      },
      args: ['--user', 'default', 'off', '--user', 'mayfly', 'on', '>s3cret', '~mayfly:*', '+@all'],
    });
  }, 30_000);

  const env = (passwordFile: string) => ({
    MAYFLY_REDIS_URL: `rediss://127.0.0.1:${redis.port}`,
    MAYFLY_REDIS_TLS_CA_FILE: join(dir, 'ca.pem'),
    MAYFLY_REDIS_USERNAME: 'mayfly',
    ...PATIENT_REDIS,
    MAYFLY_REDIS_PASSWORD_FILE: join(dir, passwordFile),
    MAYFLY_RATELIMITS: writeLimits({
      defaults: { 'per-client-ip': ROOMY, 'per-identity': { burst: 2, count: 1, period: '1h' } },
    }),
  });

  test('connects with the password from its file and enforces the limits in Redis', async () => {
    const ca = await startTestCa({ env: env('password') });
    try {
      await waitForRedis(ca);
      const insured = await insuranceAnswers(ca);
      expect(await statusesFor(ca, 'alice@example.com', 3)).toEqual([200, 200, 429]);
      // Redis answered all three, not the insurance limiter.
      expect(await insuranceAnswers(ca)).toBe(insured);
    } finally {
      await ca.close();
    }
  });

  test('a wrong password fails open onto the insurance limiter instead of failing requests', async () => {
    const ca = await startTestCa({ env: env('wrong-password') });
    try {
      expect((await signFor(ca, 'alice@example.com')).status).toBe(200);
      expect(await insuranceAnswers(ca)).toBeGreaterThan(0);
      expect(await redisAnswers(ca)).toBe(0);
    } finally {
      await ca.close();
    }
  });
});
