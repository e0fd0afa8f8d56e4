import fc, { type Parameters } from 'fast-check';

/**
 * Settings shared by the fuzz tests: a fixed seed (FUZZ_SEED) so that every run, in CI or
 * locally, replays the same inputs, and a run count (FUZZ_RUNS) small enough for CI by
 * default; `npm run fuzz` raises it. fast-check prints the seed and the counterexample's
 * path on failure, so a failure replays with FUZZ_SEED=<seed>.
 */
export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const runs = Number(process.env.FUZZ_RUNS ?? 0);

/** fast-check parameters for one property: `ciRuns` unless FUZZ_RUNS says otherwise. */
export function fuzzParams<T>(ciRuns: number): Parameters<T> {
  return { seed: FUZZ_SEED, numRuns: runs > 0 ? runs : ciRuns, endOnFailure: false };
}

/** A timeout for a property that runs `ciRuns` cases of roughly `msPerCase` each. */
export function fuzzTimeout(ciRuns: number, msPerCase: number): number {
  const n = runs > 0 ? runs : ciRuns;
  return Math.max(30_000, n * msPerCase * 4);
}

/**
 * Fails the test file if a promise rejection goes unhandled while it runs: the service must
 * never leave one behind, whatever it is sent.
 */
export function guardUnhandledRejections(): void {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown) => {
    seen.push(reason);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onRejection);
  });
  afterEach(() => {
    expect(seen).toEqual([]);
  });
  afterAll(() => {
    process.off('unhandledRejection', onRejection);
  });
}

/** Flips `bit` of the byte at `index` (modulo the length) of a copy of `bytes`. */
export function flipBit(bytes: Uint8Array, index: number, bit: number): Buffer {
  const copy = Buffer.from(bytes);
  if (copy.length === 0) return copy;
  const i = index % copy.length;
  copy[i] = copy[i]! ^ (1 << (bit % 8));
  return copy;
}

/** A mutation: a function that prints as its name in a counterexample (not as its source). */
export type Mutation<T> = ((value: T) => T) & { [fc.toStringMethod]?: () => string };

export function named<T>(name: string, apply: (value: T) => T): Mutation<T> {
  return Object.assign((value: T) => apply(value), { [fc.toStringMethod]: () => name });
}
