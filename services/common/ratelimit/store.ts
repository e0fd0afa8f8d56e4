import type { GcraParams, GcraResult } from './gcra';

/**
 * Where bucket TATs live. A store spends a batch of buckets and answers per bucket; it
 * writes nothing unless every bucket of the batch allows (so a refused request never
 * drains the buckets that would have allowed it). The memory store and a standalone or
 * Sentinel Redis do this atomically; Redis Cluster does it per bucket and gives back what
 * it spent when another bucket refused (see redis-store.ts).
 */

export interface BucketSpend extends GcraParams {
  /** The store key, already hashed and free of identities. */
  readonly key: string;
  readonly cost: number;
}

export type BucketOutcome = Omit<GcraResult, 'newTatUs'>;

export interface RateLimitStore {
  /** `memory` or `redis`: a metrics label and a log field. */
  readonly kind: 'memory' | 'redis';
  spend(buckets: readonly BucketSpend[]): Promise<BucketOutcome[]>;
  close(): Promise<void>;
}
