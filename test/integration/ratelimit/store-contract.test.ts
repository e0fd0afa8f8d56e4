import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { ManualClock } from '../../../services/common/clock';
import { gcraParams, type Limit } from '../../../services/common/ratelimit/gcra';
import { MemoryStore } from '../../../services/common/ratelimit/memory-store';
import { RedisStore } from '../../../services/common/ratelimit/redis-store';
import type { BucketOutcome, RateLimitStore } from '../../../services/common/ratelimit/store';
import {
  startCluster,
  startRedis,
  stopAllRedis,
  type RedisCluster,
  type RedisProcess,
} from '../../helpers/redis';

/**
 * The store contract: one table of GCRA behaviour (Boulder's semantics), run against the
 * in-memory store (the pure gcra.ts) and the Redis store (the Lua port, on a real
 * redis-server, standalone and as a three-primary Cluster, where a batch is spent bucket by
 * bucket with refunds), all on the same injected clock. The expected numbers are worked out by
 * hand from the limit, not computed with gcra.ts, so the table checks the reference too.
 */

const S = 1_000_000; // one second in µs
const FIVE_PER_5S: Limit = { burst: 5, count: 1, periodMs: 1000 }; // 1 per s, burst 5
const ONE_PER_HOUR: Limit = { burst: 1, count: 1, periodMs: 3_600_000 };

interface Step {
  readonly advanceMs?: number;
  /** Bucket name and cost, spent as one batch. */
  readonly spend: readonly (readonly [string, number])[];
  readonly expect: readonly Partial<BucketOutcome>[];
}

interface Case {
  readonly name: string;
  readonly limits: Readonly<Record<string, Limit>>;
  readonly steps: readonly Step[];
}

const allow = (remaining: number, resetInUs: number): Partial<BucketOutcome> => ({
  allowed: true,
  remaining,
  retryInUs: 0,
  resetInUs,
});
const deny = (retryInUs: number, remaining: number, resetInUs: number) => ({
  allowed: false,
  remaining,
  retryInUs,
  resetInUs,
});
const one = (bucket = 'a', cost = 1) => [[bucket, cost]] as const;

const CASES: readonly Case[] = [
  {
    name: 'a fresh bucket allows its whole burst at once, then refuses for one interval',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one(), expect: [allow(4, 1 * S)] },
      { spend: one(), expect: [allow(3, 2 * S)] },
      { spend: one(), expect: [allow(2, 3 * S)] },
      { spend: one(), expect: [allow(1, 4 * S)] },
      { spend: one(), expect: [allow(0, 5 * S)] },
      { spend: one(), expect: [deny(1 * S, 0, 5 * S)] },
    ],
  },
  {
    name: 'an empty bucket earns one request per emission interval',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 5), expect: [allow(0, 5 * S)] },
      { advanceMs: 1000, spend: one(), expect: [allow(0, 5 * S)] },
      { spend: one(), expect: [deny(1 * S, 0, 5 * S)] },
    ],
  },
  {
    name: 'the wait shrinks as the clock moves',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 5), expect: [allow(0, 5 * S)] },
      { advanceMs: 250, spend: one(), expect: [deny(0.75 * S, 0, 4.75 * S)] },
      { advanceMs: 500, spend: one(), expect: [deny(0.25 * S, 0, 4.25 * S)] },
      { advanceMs: 250, spend: one(), expect: [allow(0, 5 * S)] },
    ],
  },
  {
    name: 'a bucket left alone refills to its burst and no further',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 5), expect: [allow(0, 5 * S)] },
      { advanceMs: 60_000, spend: one(), expect: [allow(4, 1 * S)] },
    ],
  },
  {
    name: 'a partly refilled bucket allows what it has earned',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 5), expect: [allow(0, 5 * S)] },
      { advanceMs: 2500, spend: one(), expect: [allow(1, 3.5 * S)] },
      { spend: one(), expect: [allow(0, 4.5 * S)] },
      { spend: one(), expect: [deny(0.5 * S, 0, 4.5 * S)] },
    ],
  },
  {
    name: 'a cost spends several requests at once',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 3), expect: [allow(2, 3 * S)] },
      { spend: one('a', 3), expect: [deny(1 * S, 2, 3 * S)] },
    ],
  },
  {
    name: 'a refused spend takes nothing from the bucket',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 3), expect: [allow(2, 3 * S)] },
      { spend: one('a', 3), expect: [deny(1 * S, 2, 3 * S)] },
      { spend: one('a', 2), expect: [allow(0, 5 * S)] },
    ],
  },
  {
    name: 'a cost equal to the burst empties a full bucket',
    limits: { a: FIVE_PER_5S },
    steps: [{ spend: one('a', 5), expect: [allow(0, 5 * S)] }],
  },
  {
    name: 'cost zero checks without spending, and passes even an empty bucket',
    limits: { a: FIVE_PER_5S },
    steps: [
      { spend: one('a', 0), expect: [allow(5, 0)] },
      { spend: one('a', 5), expect: [allow(0, 5 * S)] },
      { spend: one('a', 0), expect: [allow(0, 5 * S)] },
      { spend: one('a', 1), expect: [deny(1 * S, 0, 5 * S)] },
    ],
  },
  {
    name: 'sub-second intervals: ten a second with a burst of two',
    limits: { a: { burst: 2, count: 10, periodMs: 1000 } },
    steps: [
      { spend: one(), expect: [allow(1, 0.1 * S)] },
      { spend: one(), expect: [allow(0, 0.2 * S)] },
      { spend: one(), expect: [deny(0.1 * S, 0, 0.2 * S)] },
      { advanceMs: 100, spend: one(), expect: [allow(0, 0.2 * S)] },
    ],
  },
  {
    name: 'an interval that does not divide evenly is floored to whole microseconds',
    limits: { a: { burst: 1, count: 3, periodMs: 1000 } },
    steps: [
      { spend: one(), expect: [allow(0, 333_333)] },
      { spend: one(), expect: [deny(333_333, 0, 333_333)] },
      { advanceMs: 333, spend: one(), expect: [deny(333, 0, 333)] },
      { advanceMs: 1, spend: one(), expect: [allow(0, 333_333)] },
    ],
  },
  {
    name: 'long periods: one an hour',
    limits: { a: ONE_PER_HOUR },
    steps: [
      { spend: one(), expect: [allow(0, 3600 * S)] },
      { advanceMs: 3_599_000, spend: one(), expect: [deny(1 * S, 0, 1 * S)] },
      { advanceMs: 1000, spend: one(), expect: [allow(0, 3600 * S)] },
    ],
  },
  {
    name: 'buckets are independent of each other',
    limits: { a: ONE_PER_HOUR, b: ONE_PER_HOUR },
    steps: [
      { spend: one('a'), expect: [allow(0, 3600 * S)] },
      { spend: one('b'), expect: [allow(0, 3600 * S)] },
      { spend: one('a'), expect: [deny(3600 * S, 0, 3600 * S)] },
    ],
  },
  {
    name: 'a batch in which every bucket allows spends every bucket',
    limits: { a: FIVE_PER_5S, b: ONE_PER_HOUR },
    steps: [
      {
        spend: [
          ['a', 1],
          ['b', 1],
        ],
        expect: [allow(4, 1 * S), allow(0, 3600 * S)],
      },
      { spend: one('a'), expect: [allow(3, 2 * S)] },
      { spend: one('b'), expect: [deny(3600 * S, 0, 3600 * S)] },
    ],
  },
  {
    name: 'a batch with one refusing bucket is refused whole and spends none of them',
    limits: { a: FIVE_PER_5S, b: ONE_PER_HOUR },
    steps: [
      { spend: one('b'), expect: [allow(0, 3600 * S)] },
      {
        spend: [
          ['a', 1],
          ['b', 1],
        ],
        expect: [allow(4, 1 * S), deny(3600 * S, 0, 3600 * S)],
      },
      { spend: one('a'), expect: [allow(4, 1 * S)] },
    ],
  },
];

interface StoreUnderTest {
  readonly name: string;
  make(clock: ManualClock): RateLimitStore;
}

let redis: RedisProcess;
let cluster: RedisCluster;
const clients: Redis[] = [];
const prefix = `contract:${randomUUID()}:`;

beforeAll(async () => {
  [redis, cluster] = await Promise.all([startRedis(), startCluster(3)]);
}, 60_000);
afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit()));
  await stopAllRedis();
});

/** A client the test closes itself; stores close their own. */
function redisClient(owned = true): Redis {
  const client = new Redis(redis.url);
  if (owned) clients.push(client);
  return client;
}

const STORES: readonly StoreUnderTest[] = [
  { name: 'memory store', make: (clock) => new MemoryStore(clock) },
  {
    name: 'Redis store (Lua)',
    make: (clock) => new RedisStore({ client: redisClient(false), keyPrefix: prefix, clock }),
  },
  {
    name: 'Redis store (Lua) on a Cluster',
    make: (clock) =>
      new RedisStore({
        client: new Cluster(
          cluster.addresses.map((a) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) })),
        ),
        keyPrefix: prefix,
        clock,
      }),
  },
];

const START = new Date('2026-05-01T12:00:00.000Z');

describe.each(STORES)('$name', (storeUnderTest) => {
  let store: RateLimitStore;
  let clock: ManualClock;
  let caseId = 0;

  beforeAll(() => {
    clock = new ManualClock(START);
    store = storeUnderTest.make(clock);
  });
  afterAll(() => store.close());

  test.each(CASES)('$name', async ({ limits, steps }) => {
    // Every case gets buckets of its own and a clock far past the previous case's.
    caseId += 1;
    clock.set(new Date(START.getTime() + caseId * 86_400_000));
    for (const [index, step] of steps.entries()) {
      if (step.advanceMs) clock.advance(step.advanceMs);
      const outcomes = await store.spend(
        step.spend.map(([bucket, cost]) => ({
          key: `case${caseId}:${bucket}`,
          cost,
          ...gcraParams(limits[bucket]!),
        })),
      );
      expect({ step: index, outcomes }).toEqual({
        step: index,
        outcomes: step.expect.map((e) => expect.objectContaining(e)),
      });
    }
  });
});

describe('Redis store specifics', () => {
  test('uses Redis TIME when no clock is given', async () => {
    const store = new RedisStore({ client: redisClient(), keyPrefix: prefix });
    const bucket = { key: `time:${randomUUID()}`, cost: 1, ...gcraParams(ONE_PER_HOUR) };
    expect((await store.spend([bucket]))[0]).toMatchObject({ allowed: true });
    const refused = (await store.spend([bucket]))[0]!;
    expect(refused.allowed).toBe(false);
    // Somewhere just under an hour, whatever the two clocks say.
    expect(refused.retryInUs).toBeGreaterThan(3590 * S);
    expect(refused.retryInUs).toBeLessThanOrEqual(3600 * S);
  });

  test('stores the TAT as an exact integer of microseconds, expiring when the bucket is full again', async () => {
    const clock = new ManualClock(START);
    const store = new RedisStore({ client: redisClient(), keyPrefix: prefix, clock });
    const key = `ttl:${randomUUID()}`;
    await store.spend([{ key, cost: 1, ...gcraParams(ONE_PER_HOUR) }]);
    const client = redisClient();
    const redisKey = store.redisKey(key);
    expect(redisKey).toBe(`${prefix}ttl:{${key.slice(4)}}`);
    expect(await client.get(redisKey)).toBe(String(START.getTime() * 1000 + 3600 * S));
    const ttl = await client.pttl(redisKey);
    expect(ttl).toBeGreaterThan(3600_000);
    expect(ttl).toBeLessThanOrEqual(3601_000);
  });

  test('writes nothing for a refused batch', async () => {
    const clock = new ManualClock(START);
    const store = new RedisStore({ client: redisClient(), keyPrefix: prefix, clock });
    const fresh = `none:${randomUUID()}`;
    const full = `none:${randomUUID()}`;
    await store.spend([{ key: full, cost: 1, ...gcraParams(ONE_PER_HOUR) }]);
    await store.spend([
      { key: fresh, cost: 1, ...gcraParams(ONE_PER_HOUR) },
      { key: full, cost: 1, ...gcraParams(ONE_PER_HOUR) },
    ]);
    expect(await redisClient().exists(store.redisKey(fresh))).toBe(0);
  });
});

describe('memory store specifics', () => {
  test('forgets buckets once they are full again, so it does not grow without bound', async () => {
    const clock = new ManualClock(START);
    const store = new MemoryStore(clock, 16);
    const params = gcraParams({ burst: 10, count: 10, periodMs: 1000 });
    for (let i = 0; i < 1000; i++) {
      await store.spend([{ key: `ip:${i}`, cost: 1, ...params }]);
      clock.advance(10);
    }
    // Each bucket is full again 100 ms after its spend: only the recent ones are live, and
    // sweeps keep the map within a small factor of that.
    expect(store.size).toBeLessThan(64);
    clock.advance(1000);
    store.sweep();
    expect(store.size).toBe(0);
  });
});
