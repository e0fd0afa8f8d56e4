/**
 * GCRA (the generic cell rate algorithm) with Boulder's semantics: a limit is
 * `{burst, count, period}`; a bucket stores one number, its theoretical arrival time (TAT).
 * This is the reference implementation. The Lua script in redis-store.ts is a line-by-line
 * port of it, and the contract tests hold both to the same table.
 *
 * Time is in whole microseconds since the Unix epoch. Boulder counts nanoseconds in an
 * int64; JavaScript and Redis's Lua 5.1 both compute in doubles, which are exact for
 * integers below 2^53 — microsecond timestamps (~1.8e15) fit, nanoseconds would not. Every
 * step below uses only additions, multiplications and a floored division of such integers,
 * so both implementations produce bit-identical results.
 */

export interface Limit {
  /** The most requests a full bucket allows at once. */
  readonly burst: number;
  /** Requests allowed per period, in the long run. */
  readonly count: number;
  readonly periodMs: number;
}

/** A limit in the units GCRA works with. */
export interface GcraParams {
  /** Time one request "costs": period / count. */
  readonly emissionIntervalUs: number;
  /** How far ahead of now the TAT may run: emissionInterval * burst. */
  readonly burstOffsetUs: number;
}

export interface GcraResult {
  readonly allowed: boolean;
  /** Requests still allowed right now after this one (before it, when refused). */
  readonly remaining: number;
  /** How long until this request would be allowed; 0 when it was. */
  readonly retryInUs: number;
  /** How long until the bucket is full again. */
  readonly resetInUs: number;
  /** The TAT to store when allowed; the unchanged TAT when refused. */
  readonly newTatUs: number;
}

export class InvalidLimitError extends Error {
  override readonly name = 'InvalidLimitError';
}

/**
 * Boulder's precompute: the emission interval is floored to whole microseconds, and must
 * be at least one (a limit faster than a million requests a second is not a limit).
 */
export function gcraParams(limit: Limit): GcraParams {
  const { burst, count, periodMs } = limit;
  if (!Number.isSafeInteger(burst) || burst <= 0)
    throw new InvalidLimitError(`burst must be a positive whole number, got ${burst}`);
  if (!Number.isSafeInteger(count) || count <= 0)
    throw new InvalidLimitError(`count must be a positive whole number, got ${count}`);
  if (!Number.isSafeInteger(periodMs) || periodMs <= 0)
    throw new InvalidLimitError(`period must be a positive number of milliseconds`);
  const emissionIntervalUs = Math.floor((periodMs * 1000) / count);
  if (emissionIntervalUs < 1)
    throw new InvalidLimitError(`count ${count} per ${periodMs} ms is finer than 1 µs`);
  const burstOffsetUs = emissionIntervalUs * burst;
  if (!Number.isSafeInteger(burstOffsetUs))
    throw new InvalidLimitError('burst * period / count is too large');
  return { emissionIntervalUs, burstOffsetUs };
}

/**
 * One spend of `cost` against a bucket whose stored TAT is `storedTatUs` (undefined: no
 * bucket yet, i.e. full). Cost 0 is a check that spends nothing. Boulder's maybeSpend.
 */
export function gcraSpend(
  nowUs: number,
  storedTatUs: number | undefined,
  params: GcraParams,
  cost: number,
): GcraResult {
  const { emissionIntervalUs: ei, burstOffsetUs: bo } = params;
  const tat = storedTatUs !== undefined && storedTatUs > nowUs ? storedTatUs : nowUs;
  const newTat = tat + cost * ei;
  const diff = nowUs - (newTat - bo);
  if (diff < 0) {
    // A TAT past the burst offset only happens after a limit was lowered: nothing remains.
    const before = nowUs - (tat - bo);
    return {
      allowed: false,
      remaining: before > 0 ? Math.floor(before / ei) : 0,
      retryInUs: -diff,
      resetInUs: tat - nowUs,
      newTatUs: tat,
    };
  }
  return {
    allowed: true,
    remaining: Math.floor(diff / ei),
    retryInUs: 0,
    resetInUs: newTat - nowUs,
    newTatUs: newTat,
  };
}

/**
 * Gives `cost` back to a bucket (Boulder's maybeRefund): the TAT moves back, never before
 * now. Returns the TAT to store, or undefined when the bucket is full again and can go.
 */
export function gcraRefund(
  nowUs: number,
  storedTatUs: number | undefined,
  params: GcraParams,
  cost: number,
): number | undefined {
  if (storedTatUs === undefined || storedTatUs <= nowUs) return undefined;
  const tat = storedTatUs - cost * params.emissionIntervalUs;
  return tat > nowUs ? tat : undefined;
}
