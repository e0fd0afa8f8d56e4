import type { Clock } from '../clock';
import type { Logger } from '../logger';
import { withTimeout } from '../timeout';
import { gcraParams, type GcraParams, type Limit } from './gcra';
import type { ResolvedLimit, Transaction } from './limits';
import type { MemoryStore } from './memory-store';
import type { BucketOutcome, BucketSpend, RateLimitStore } from './store';

/**
 * Spends a request's transactions in one store call and returns the strictest decision.
 * It also owns the answer to "what if the store fails": Redis errors and timeouts either
 * fall through to a per-replica in-memory limiter sized at a share of every limit
 * (fail-open, the default: issuance goes on, still bounded) or refuse (fail-closed).
 *
 * After a failure the store is skipped for `failureBackoffMs`, so an unreachable or hung
 * Redis costs one timeout per back-off period rather than one per request; the first
 * request after the period probes it again, which is how recovery happens by itself.
 */

export type FailurePolicy = 'fail-open' | 'fail-closed';

/** Why the insurance limiter answered instead of the store. */
export type InsuranceReason = 'error' | 'timeout' | 'backoff';

export interface RateLimitMetrics {
  decision(limit: string, result: 'allowed' | 'denied'): void;
  storeCall(store: string, result: 'ok' | 'error' | 'timeout', seconds: number): void;
  insurance(reason: InsuranceReason): void;
}

export interface Decision {
  readonly allowed: boolean;
  /**
   * The limit that decided: for a refusal the one that frees up last, for an allowance
   * the one with the fewest requests left. Undefined when nothing was limited.
   */
  readonly limit: ResolvedLimit | undefined;
  /** The bucket behind `limit` (hashed; safe to log). */
  readonly bucket: string | undefined;
  readonly remaining: number;
  readonly retryInMs: number;
  readonly resetInMs: number;
  /** Who answered: the store, the insurance limiter, or nobody (no limits). */
  readonly source: 'store' | 'insurance' | 'none';
}

/** The store failed and the policy is fail-closed. */
export class RateLimitUnavailableError extends Error {
  override readonly name = 'RateLimitUnavailableError';
  constructor(
    message: string,
    /** When a retry has a chance: the rest of the back-off period. */
    readonly retryInMs: number,
  ) {
    super(message);
  }
}

export class StoreTimeoutError extends Error {
  override readonly name = 'StoreTimeoutError';
}

export interface RateLimiterOptions {
  readonly store: RateLimitStore;
  /** Required when the store can fail (Redis); ignored for fail-closed. */
  readonly insurance?: MemoryStore;
  readonly failurePolicy: FailurePolicy;
  /** The fraction (0, 1] of each limit the insurance limiter allows on this replica. */
  readonly insuranceShare: number;
  /** Upper bound on one store call, whatever the client library does. */
  readonly timeoutMs: number;
  readonly failureBackoffMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: RateLimitMetrics;
}

const ALLOW_ALL: Decision = {
  allowed: true,
  limit: undefined,
  bucket: undefined,
  remaining: Number.POSITIVE_INFINITY,
  retryInMs: 0,
  resetInMs: 0,
  source: 'none',
};

/** Boulder's order: refused beats allowed, then the longer wait, then fewer left. */
function stricter(a: BucketOutcome, b: BucketOutcome): boolean {
  if (a.allowed !== b.allowed) return !a.allowed;
  if (!a.allowed) return a.retryInUs > b.retryInUs;
  return a.remaining < b.remaining;
}

/** A limit scaled to a share: the rate and the burst both shrink, the burst to at least 1. */
export function shareOf(limit: Limit, share: number): Limit {
  return {
    burst: Math.max(1, Math.floor(limit.burst * share)),
    count: limit.count,
    periodMs: Math.max(1, Math.ceil(limit.periodMs / share)),
  };
}

export class RateLimiter {
  private skipStoreUntil = 0;
  private storeFailing = false;
  /** Until the store first answers, failures are the connection still being set up. */
  private storeAnswered = false;
  /** Scaled parameters per limit object; a reload brings new objects, old ones drop out. */
  private readonly insuranceParams = new WeakMap<ResolvedLimit, GcraParams>();

  constructor(private readonly options: RateLimiterOptions) {
    const { insuranceShare } = options;
    if (!(insuranceShare > 0 && insuranceShare <= 1))
      throw new RangeError(`insurance share must be in (0, 1], got ${insuranceShare}`);
  }

  async spend(transactions: readonly Transaction[]): Promise<Decision> {
    if (transactions.length === 0) return ALLOW_ALL;
    const seen = new Set<string>();
    for (const t of transactions) {
      if (seen.has(t.bucket)) throw new Error(`bucket ${t.bucket} appears twice in one request`);
      seen.add(t.bucket);
    }
    const buckets = transactions.map((t) => ({ key: t.bucket, cost: t.cost, ...t.limit.params }));
    const fromStore = await this.fromStore(buckets);
    if (fromStore) return this.decide(transactions, fromStore, 'store');
    return this.decide(transactions, this.fromInsurance(transactions), 'insurance');
  }

  /** The store's outcomes, or undefined when the insurance limiter must answer. */
  private async fromStore(buckets: readonly BucketSpend[]): Promise<BucketOutcome[] | undefined> {
    const { store, clock, metrics } = this.options;
    const started = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
    if (store.kind === 'memory') {
      // In-process: it cannot fail or hang, so no timer and no failure policy.
      const outcomes = await store.spend(buckets);
      metrics.storeCall(store.kind, 'ok', elapsed());
      return outcomes;
    }
    if (clock.now().getTime() < this.skipStoreUntil)
      return this.onStoreUnusable('backoff', undefined);
    try {
      const outcomes = await withTimeout(
        store.spend(buckets),
        this.options.timeoutMs,
        () => new StoreTimeoutError(`store call over ${this.options.timeoutMs} ms`),
      );
      metrics.storeCall(store.kind, 'ok', elapsed());
      this.storeAnswered = true;
      if (this.storeFailing) {
        this.storeFailing = false;
        this.options.logger.info({ store: store.kind }, 'rate-limit store recovered');
      }
      return outcomes;
    } catch (err) {
      const reason = isTimeout(err) ? 'timeout' : 'error';
      metrics.storeCall(store.kind, reason, elapsed());
      this.skipStoreUntil = clock.now().getTime() + this.options.failureBackoffMs;
      return this.onStoreUnusable(reason, err);
    }
  }

  private onStoreUnusable(reason: InsuranceReason, err: unknown): undefined {
    const { store, failurePolicy, logger } = this.options;
    if (err !== undefined && !this.storeFailing) {
      // Once per outage, not once per request.
      this.storeFailing = true;
      logger[this.storeAnswered ? 'error' : 'warn'](
        {
          store: store.kind,
          reason,
          err: err instanceof Error ? err.message : String(err),
          failurePolicy,
        },
        failurePolicy === 'fail-open'
          ? 'rate-limit store failed; the per-replica insurance limiter answers until it is back'
          : 'rate-limit store failed; refusing rate-limited requests until it is back (fail-closed)',
      );
    }
    if (failurePolicy === 'fail-closed' || !this.options.insurance) {
      const retryInMs = Math.max(0, this.skipStoreUntil - this.options.clock.now().getTime());
      throw new RateLimitUnavailableError(`rate-limit store unusable (${reason})`, retryInMs);
    }
    this.options.metrics.insurance(reason);
    return undefined;
  }

  private fromInsurance(transactions: readonly Transaction[]): BucketOutcome[] {
    const share = this.options.insuranceShare;
    return this.options.insurance!.spendNow(
      transactions.map((t) => {
        let params = this.insuranceParams.get(t.limit);
        if (!params) {
          params = gcraParams(shareOf(t.limit.limit, share));
          this.insuranceParams.set(t.limit, params);
        }
        // A cost above the scaled burst could never pass; cap it at the burst.
        const cost = Math.min(t.cost, params.burstOffsetUs / params.emissionIntervalUs);
        return { key: t.bucket, cost, ...params };
      }),
    );
  }

  private decide(
    transactions: readonly Transaction[],
    outcomes: readonly BucketOutcome[],
    source: Decision['source'],
  ): Decision {
    let worst = 0;
    outcomes.forEach((o, i) => {
      this.options.metrics.decision(transactions[i]!.limit.name, o.allowed ? 'allowed' : 'denied');
      if (stricter(o, outcomes[worst]!)) worst = i;
    });
    const o = outcomes[worst]!;
    const t = transactions[worst]!;
    return {
      allowed: outcomes.every((x) => x.allowed),
      limit: t.limit,
      bucket: t.bucket,
      remaining: o.remaining,
      retryInMs: o.retryInUs / 1000,
      resetInMs: o.resetInUs / 1000,
      source,
    };
  }

  close(): Promise<void> {
    return this.options.store.close();
  }
}

/** Ours, or the client's own command timeout ("Command timed out"). */
function isTimeout(err: unknown): boolean {
  return (
    err instanceof StoreTimeoutError || (err instanceof Error && /timed out/i.test(err.message))
  );
}

/**
 * Retry-After in whole seconds: the wait rounded up, plus 0–3 % jitter so that clients
 * refused together do not all come back in the same second (Boulder does the same).
 */
export function retryAfterSeconds(retryInMs: number, random: () => number = Math.random): number {
  const jittered = retryInMs * (1 + 0.03 * random());
  return Math.max(1, Math.ceil(jittered / 1000));
}
