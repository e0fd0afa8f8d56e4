import type { Clock } from '../clock';
import { gcraSpend } from './gcra';
import type { BucketOutcome, BucketSpend, RateLimitStore } from './store';

/**
 * The in-process store: the embedded default when no Redis is configured, and the
 * per-replica insurance limiter when Redis fails. One Map of key -> TAT (µs). Spending is
 * synchronous, so a batch is atomic for free.
 *
 * It must not grow without bound: a bucket whose TAT is in the past is the same as no
 * bucket (full), so sweeps delete those. A sweep runs once the spends since the last one
 * reach the number of buckets that sweep left (at least `minSweepInterval`): the map then
 * holds at most about twice its live buckets plus that minimum, and the sweeping costs an
 * amortised O(1) per spend.
 */
export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  private readonly tats = new Map<string, number>();
  private spendsSinceSweep = 0;
  private sizeAfterSweep = 0;

  constructor(
    private readonly clock: Clock,
    private readonly minSweepInterval = 1024,
  ) {}

  /** Whole microseconds; a Clock only has milliseconds, which GCRA handles exactly. */
  private nowUs(): number {
    return this.clock.now().getTime() * 1000;
  }

  spend(buckets: readonly BucketSpend[]): Promise<BucketOutcome[]> {
    return Promise.resolve(this.spendNow(buckets));
  }

  /** The synchronous spend, for callers that cannot afford a microtask (the limiter). */
  spendNow(buckets: readonly BucketSpend[]): BucketOutcome[] {
    const now = this.nowUs();
    const results = buckets.map((b) => ({
      key: b.key,
      result: gcraSpend(now, this.tats.get(b.key), b, b.cost),
    }));
    if (results.every((r) => r.result.allowed)) {
      for (const { key, result } of results) {
        if (result.newTatUs > now) this.tats.set(key, result.newTatUs);
      }
    }
    this.spendsSinceSweep += 1;
    if (this.spendsSinceSweep >= Math.max(this.minSweepInterval, this.sizeAfterSweep)) this.sweep();
    return results.map(({ result }) => ({
      allowed: result.allowed,
      remaining: result.remaining,
      retryInUs: result.retryInUs,
      resetInUs: result.resetInUs,
    }));
  }

  /** Deletes every bucket that is full again. */
  sweep(): void {
    const now = this.nowUs();
    for (const [key, tat] of this.tats) if (tat <= now) this.tats.delete(key);
    this.spendsSinceSweep = 0;
    this.sizeAfterSweep = this.tats.size;
  }

  /** Buckets held, full ones not yet swept included. */
  get size(): number {
    return this.tats.size;
  }

  close(): Promise<void> {
    this.tats.clear();
    return Promise.resolve();
  }
}
