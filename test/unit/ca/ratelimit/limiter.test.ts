import { ManualClock } from '../../../../services/common/clock';
import { silentLogger } from '../../../../services/common/logger';
import {
  RateLimitUnavailableError,
  RateLimiter,
  retryAfterSeconds,
  shareOf,
  type FailurePolicy,
  type RateLimitMetrics,
} from '../../../../services/common/ratelimit/limiter';
import { LimitTable, resolveLimit } from '../../../../services/common/ratelimit/limits';
import { MemoryStore } from '../../../../services/common/ratelimit/memory-store';
import type {
  BucketOutcome,
  BucketSpend,
  RateLimitStore,
} from '../../../../services/common/ratelimit/store';

/**
 * The limiter's own decisions: the strictest of several buckets, and what happens when
 * the store fails. The failing store below stands in for "Redis is broken" so that each
 * failure mode is exact and instant here; the same behaviour against real, killed and
 * frozen redis-server processes is in test/integration/ratelimit/redis-fault.test.ts.
 */

const table = new LimitTable(
  new Map([
    ['wide', resolveLimit('wide', { burst: 100, count: 1, periodMs: 1000 })],
    ['narrow', resolveLimit('narrow', { burst: 2, count: 1, periodMs: 1000 })],
    ['hourly', resolveLimit('hourly', { burst: 8, count: 1, periodMs: 3_600_000 })],
  ]),
);
const txn = (name: string, id = 'x') => table.transaction(name, id)!;

/** A store that fails as told: 'error' rejects, 'hang' never answers, 'ok' delegates. */
class FlakyStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  mode: 'ok' | 'error' | 'hang' = 'ok';
  calls = 0;
  constructor(private readonly inner: MemoryStore) {}
  spend(buckets: readonly BucketSpend[]): Promise<BucketOutcome[]> {
    this.calls += 1;
    if (this.mode === 'error') return Promise.reject(new Error('ECONNREFUSED'));
    if (this.mode === 'hang') return new Promise(() => undefined);
    return this.inner.spend(buckets);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface Recorded {
  decisions: string[];
  calls: string[];
  insurance: string[];
}

function setup(policy: FailurePolicy = 'fail-open') {
  const clock = new ManualClock(new Date('2026-05-01T00:00:00Z'));
  const store = new FlakyStore(new MemoryStore(clock));
  const recorded: Recorded = { decisions: [], calls: [], insurance: [] };
  const metrics: RateLimitMetrics = {
    decision: (limit, result) => recorded.decisions.push(`${limit}:${result}`),
    storeCall: (kind, result) => recorded.calls.push(`${kind}:${result}`),
    insurance: (reason) => recorded.insurance.push(reason),
  };
  const limiter = new RateLimiter({
    store,
    insurance: new MemoryStore(clock),
    failurePolicy: policy,
    insuranceShare: 0.25,
    timeoutMs: 20,
    failureBackoffMs: 1000,
    clock,
    logger: silentLogger,
    metrics,
  });
  return { clock, store, limiter, recorded };
}

describe('decisions', () => {
  test('nothing to spend is allowed without asking the store', async () => {
    const { limiter, store } = setup();
    expect(await limiter.spend([])).toMatchObject({ allowed: true, source: 'none' });
    expect(store.calls).toBe(0);
  });

  test('the strictest bucket decides: a refusal beats an allowance', async () => {
    const { limiter, recorded } = setup();
    await limiter.spend([txn('narrow'), txn('narrow', 'y')]);
    await limiter.spend([txn('narrow')]);
    const decision = await limiter.spend([txn('wide'), txn('narrow')]);
    expect(decision).toMatchObject({ allowed: false, source: 'store', retryInMs: 1000 });
    expect(decision.limit?.name).toBe('narrow');
    expect(decision.bucket).toBe(txn('narrow').bucket);
    expect(recorded.decisions.slice(-2)).toEqual(['wide:allowed', 'narrow:denied']);
  });

  test('among refusals, the one that frees up last; among allowances, the fewest left', async () => {
    const { limiter } = setup();
    expect((await limiter.spend([txn('wide'), txn('narrow')])).limit?.name).toBe('narrow');
    for (let i = 0; i < 8; i++) await limiter.spend([txn('hourly')]);
    await limiter.spend([txn('narrow')]);
    const refused = await limiter.spend([txn('narrow'), txn('hourly')]);
    expect(refused.limit?.name).toBe('hourly');
    expect(refused.retryInMs).toBe(3_600_000);
  });

  test('one bucket twice in a request is a programming error', async () => {
    const { limiter } = setup();
    await expect(limiter.spend([txn('wide'), txn('wide')])).rejects.toThrow(/appears twice/);
  });
});

describe('when the store fails (fail-open)', () => {
  test('the insurance limiter answers, with a quarter of the limit', async () => {
    const { limiter, store, recorded } = setup();
    store.mode = 'error';
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await limiter.spend([txn('hourly')]));
    // hourly has a burst of 8: the insurance allows 2, then refuses for 4 hours (a quarter
    // of the rate).
    expect(results.map((r) => r.allowed)).toEqual([true, true, false, false]);
    expect(results.every((r) => r.source === 'insurance')).toBe(true);
    expect(results[2]!.retryInMs).toBe(4 * 3_600_000);
    expect(recorded.calls).toEqual(['redis:error']);
    expect(recorded.insurance).toEqual(['error', 'backoff', 'backoff', 'backoff']);
  });

  test('skips the store for the back-off period, then probes it again and recovers', async () => {
    const { limiter, store, clock } = setup();
    store.mode = 'error';
    await limiter.spend([txn('wide')]);
    store.mode = 'ok';
    await limiter.spend([txn('wide')]);
    expect(store.calls).toBe(1);
    clock.advance(1000);
    expect(await limiter.spend([txn('wide')])).toMatchObject({ source: 'store' });
    expect(store.calls).toBe(2);
  });

  test('a store that does not answer in time counts as failed', async () => {
    const { limiter, store, recorded } = setup();
    store.mode = 'hang';
    expect(await limiter.spend([txn('wide')])).toMatchObject({
      allowed: true,
      source: 'insurance',
    });
    expect(recorded.calls).toEqual(['redis:timeout']);
    expect(recorded.insurance).toEqual(['timeout']);
  });
});

describe('when the store fails (fail-closed)', () => {
  test('the request is refused as unavailable, with the back-off as the wait', async () => {
    const { limiter, store, clock } = setup('fail-closed');
    store.mode = 'error';
    await expect(limiter.spend([txn('wide')])).rejects.toThrow(RateLimitUnavailableError);
    clock.advance(400);
    const err = await limiter.spend([txn('wide')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitUnavailableError);
    expect((err as RateLimitUnavailableError).retryInMs).toBe(600);
  });
});

describe('shareOf', () => {
  test('scales rate and burst, keeping at least one request', () => {
    expect(shareOf({ burst: 50, count: 10, periodMs: 1000 }, 0.25)).toEqual({
      burst: 12,
      count: 10,
      periodMs: 4000,
    });
    expect(shareOf({ burst: 2, count: 1, periodMs: 1000 }, 0.1).burst).toBe(1);
  });
});

describe('retryAfterSeconds', () => {
  test('rounds up to whole seconds, at least one', () => {
    expect(retryAfterSeconds(1, () => 0)).toBe(1);
    expect(retryAfterSeconds(0, () => 0)).toBe(1);
    expect(retryAfterSeconds(1500, () => 0)).toBe(2);
  });

  test('adds at most 3 % jitter', () => {
    expect(retryAfterSeconds(100_000, () => 0)).toBe(100);
    expect(retryAfterSeconds(100_000, () => 0.999)).toBe(103);
  });
});
