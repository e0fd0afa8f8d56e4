import { createHash } from 'node:crypto';
import { gcraParams, type GcraParams, type Limit } from './gcra';

/**
 * The limits in force: a default per limit name, and per-id overrides. Names and ids are
 * plain strings chosen by the caller (the registration authority); this module knows
 * nothing about IPs or identities. A table is immutable; reloading builds a new one.
 */

export interface ResolvedLimit {
  readonly name: string;
  readonly limit: Limit;
  readonly params: GcraParams;
  /** Whether a per-id override supplied this limit. */
  readonly overridden: boolean;
}

/** One bucket to spend from, with the limit that applies to it. */
export interface Transaction {
  /**
   * `<limit name>:<hash of the id>`: what stores key on and what logs show. The id itself
   * (an IP, an email, a subject) never leaves this module.
   */
  readonly bucket: string;
  readonly limit: ResolvedLimit;
  readonly cost: number;
}

export function resolveLimit(name: string, limit: Limit, overridden = false): ResolvedLimit {
  return { name, limit, params: gcraParams(limit), overridden };
}

/** 128 bits of SHA-256, base64url: short keys, no personal data in Redis or the logs. */
export function bucketKey(name: string, id: string): string {
  const digest = createHash('sha256').update(name).update('\0').update(id).digest();
  return `${name}:${digest.subarray(0, 16).toString('base64url')}`;
}

export class LimitTable {
  constructor(
    private readonly defaults: ReadonlyMap<string, ResolvedLimit>,
    private readonly overrides: ReadonlyMap<string, ReadonlyMap<string, ResolvedLimit>> = new Map(),
  ) {}

  /** A table that limits nothing (MAYFLY_RATELIMITS=off). */
  static readonly none = new LimitTable(new Map());

  lookup(name: string, id: string): ResolvedLimit | undefined {
    return this.overrides.get(name)?.get(id) ?? this.defaults.get(name);
  }

  /** The transaction for one bucket, or undefined when that limit is not configured. */
  transaction(name: string, id: string, cost = 1): Transaction | undefined {
    const limit = this.lookup(name, id);
    return limit ? { bucket: bucketKey(name, id), limit, cost } : undefined;
  }

  /** For logs and tests: the configured limit names and override counts. */
  describe(): { defaults: Record<string, Limit>; overrides: Record<string, number> } {
    return {
      defaults: Object.fromEntries([...this.defaults].map(([n, l]) => [n, l.limit])),
      overrides: Object.fromEntries([...this.overrides].map(([n, ids]) => [n, ids.size])),
    };
  }

  get empty(): boolean {
    return this.defaults.size === 0 && this.overrides.size === 0;
  }
}
