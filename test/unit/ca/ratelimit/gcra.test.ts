import {
  InvalidLimitError,
  gcraParams,
  gcraRefund,
  gcraSpend,
} from '../../../../services/common/ratelimit/gcra';

/**
 * The reference GCRA beyond the store contract (test/integration/ratelimit/store-contract):
 * limit validation, the precomputed parameters, and refunds.
 */

describe('gcraParams', () => {
  test('turns count per period into an emission interval and burst offset in microseconds', () => {
    expect(gcraParams({ burst: 100, count: 50, periodMs: 1000 })).toEqual({
      emissionIntervalUs: 20_000,
      burstOffsetUs: 2_000_000,
    });
  });

  test.each([
    [{ burst: 0, count: 1, periodMs: 1000 }, /burst/],
    [{ burst: 1.5, count: 1, periodMs: 1000 }, /burst/],
    [{ burst: 1, count: 0, periodMs: 1000 }, /count/],
    [{ burst: 1, count: 1, periodMs: 0 }, /period/],
    [{ burst: 1, count: 2_000_000, periodMs: 1000 }, /finer than 1 µs/],
  ])('refuses %j', (limit, message) => {
    expect(() => gcraParams(limit)).toThrow(InvalidLimitError);
    expect(() => gcraParams(limit)).toThrow(message);
  });
});

describe('gcraRefund', () => {
  const params = gcraParams({ burst: 5, count: 1, periodMs: 1000 });
  const now = 1_000_000_000_000;

  test('gives a spent request back', () => {
    const spent = gcraSpend(now, undefined, params, 2).newTatUs;
    expect(gcraRefund(now, spent, params, 1)).toBe(now + 1_000_000);
  });

  test('never moves the bucket past full (before now)', () => {
    const spent = gcraSpend(now, undefined, params, 1).newTatUs;
    expect(gcraRefund(now, spent, params, 3)).toBeUndefined();
  });

  test('leaves a full bucket alone', () => {
    expect(gcraRefund(now, undefined, params, 1)).toBeUndefined();
    expect(gcraRefund(now, now - 5, params, 1)).toBeUndefined();
  });
});

describe('gcraSpend after a limit was lowered', () => {
  test('reports nothing remaining rather than a negative number', () => {
    const old = gcraParams({ burst: 100, count: 100, periodMs: 1000 });
    const lowered = gcraParams({ burst: 1, count: 2, periodMs: 1000 }); // half a second
    const now = 5_000_000_000;
    const tat = gcraSpend(now, undefined, old, 100).newTatUs; // one second ahead
    const result = gcraSpend(now, tat, lowered, 1);
    expect(result.allowed).toBe(false);
    expect(result.remaining).toBe(0);
  });
});
