import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../../services/common/logger';
import { defaultRateLimitsPath } from '../../../../services/ca/config/loader';
import { LIMIT_NAMES, normalizeLimitId } from '../../../../services/ca/ra/rate-limits';
import {
  LimitsFileError,
  LimitsReloader,
  loadLimitsFile,
  parseDuration,
  parseLimits,
} from '../../../../services/common/ratelimit/limits-file';
import { bucketKey } from '../../../../services/common/ratelimit/limits';

const options = { knownLimits: LIMIT_NAMES, normalizeId: normalizeLimitId };
const parse = (text: string) => parseLimits(text, 'test.yaml', options);

function problemsOf(text: string): readonly string[] {
  try {
    parse(text);
  } catch (err) {
    if (err instanceof LimitsFileError) return err.problems;
    throw err;
  }
  throw new Error('expected the file to be refused');
}

describe('the shipped config/ratelimits.yaml', () => {
  test('holds the documented defaults and no global cap', () => {
    expect(loadLimitsFile(defaultRateLimitsPath(), options).describe()).toEqual({
      defaults: {
        'per-client-ip': { burst: 100, count: 50, periodMs: 1000 },
        'per-identity': { burst: 50, count: 10, periodMs: 1000 },
        'per-issuer': { burst: 2000, count: 1000, periodMs: 1000 },
      },
      overrides: {},
    });
  });
});

describe('parseDuration', () => {
  test.each([
    ['500ms', 500],
    ['1s', 1000],
    ['10m', 600_000],
    ['3h', 10_800_000],
    ['1h30m', 5_400_000],
    ['7d', 604_800_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each(['', '1', 's', '1.5s', '-1s', '0s', '1 s', '1w'])('%j is not a duration', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});

describe('parseLimits', () => {
  test('applies an override to its ids only, and the default to everybody else', () => {
    const table = parse(`
defaults:
  per-identity: { burst: 5, count: 1, period: 1s }
overrides:
  - per-identity:
      burst: 500
      count: 100
      period: 1s
      ids:
        - id: https://issuer.example robot
          comment: release pipeline
  - per-client-ip:
      burst: 7
      count: 7
      period: 1m
      ids: [{ id: '2001:db8:1:2ab::1' }]
`);
    expect(table.lookup('per-identity', 'https://issuer.example robot')?.limit.burst).toBe(500);
    expect(table.lookup('per-identity', 'https://issuer.example human')?.limit.burst).toBe(5);
    // The override id was written as one address; it covers its whole /56.
    expect(table.lookup('per-client-ip', '2001:db8:1:200::/56')?.limit.periodMs).toBe(60_000);
    // No default for per-client-ip: other clients are not limited.
    expect(table.transaction('per-client-ip', '192.0.2.1')).toBeUndefined();
  });

  test('a transaction names its bucket by a hash, never by the id', () => {
    const table = parse('defaults: { per-identity: { burst: 1, count: 1, period: 1s } }');
    const txn = table.transaction('per-identity', 'https://issuer.example alice@example.com');
    expect(txn?.bucket).toBe(bucketKey('per-identity', 'https://issuer.example alice@example.com'));
    expect(txn?.bucket).toMatch(/^per-identity:[A-Za-z0-9_-]{22}$/);
    expect(txn?.bucket).not.toContain('alice');
  });

  test('an empty file limits nothing', () => {
    expect(parse('').empty).toBe(true);
  });

  test('reports every problem at once, each with where it is', () => {
    expect(
      problemsOf(`
defaults:
  per-identiy: { burst: 5, count: 1, period: 1s }
overrides:
  - per-client-ip: { burst: 1, count: 1, period: 1s, ids: [{ id: example.com }, { id: 192.0.2.1 }, { id: 192.0.2.1 }] }
  - { per-identity: { burst: 1, count: 1, period: 1s, ids: [{ id: x }] }, per-issuer: { burst: 1, count: 1, period: 1s, ids: [{ id: y }] } }
`),
    ).toEqual([
      expect.stringMatching(/^defaults\.per-identiy: unknown limit "per-identiy" \(known: /),
      expect.stringMatching(/^overrides\.0\.per-client-ip\.ids\.0: "example\.com" is not an IPv4/),
      'overrides.0.per-client-ip.ids.2: "192.0.2.1" is overridden twice',
      'overrides.1: each entry names exactly one limit',
    ]);
  });

  test.each([
    ['not YAML', 'defaults: [', /not valid YAML/],
    ['unknown keys', 'limits: {}', /unrecognized key/i],
    [
      'a negative burst',
      'defaults: { per-identity: { burst: -1, count: 1, period: 1s } }',
      /burst/,
    ],
    [
      'a rate finer than a microsecond',
      'defaults: { per-identity: { burst: 1, count: 10000, period: 1ms } }',
      /finer than 1 µs/,
    ],
    [
      'an override without ids',
      'overrides: [{ per-identity: { burst: 1, count: 1, period: 1s, ids: [] } }]',
      /ids/,
    ],
  ])('refuses %s', (_what, text, message) => {
    expect(problemsOf(text).join('\n')).toMatch(message);
  });
});

describe('LimitsReloader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-limits-unit-'));
  const file = join(dir, 'limits.yaml');
  const limit = (burst: number) =>
    `defaults: { per-identity: { burst: ${burst}, count: 1, period: 1s } }\n`;

  test('takes a changed file, keeps the old limits when the new file is broken, and counts both', async () => {
    writeFileSync(file, limit(1));
    const results: string[] = [];
    const reloader = new LimitsReloader({
      ...options,
      path: file,
      logger: silentLogger,
      intervalMs: 0,
      onReload: (r) => results.push(r),
    });
    const burst = () => reloader.current().lookup('per-identity', 'x')?.limit.burst;
    expect(burst()).toBe(1);
    expect(await reloader.reload()).toBe(false); // unchanged
    writeFileSync(file, limit(9));
    expect(await reloader.reload()).toBe(true);
    expect(burst()).toBe(9);
    writeFileSync(file, 'defaults: { per-identity: { burst: 0 } }');
    expect(await reloader.reload()).toBe(false);
    expect(burst()).toBe(9);
    // The same broken text is reported once, not at every poll.
    expect(await reloader.reload()).toBe(false);
    expect(results).toEqual(['success', 'failure']);
  });

  test('refuses to start on a broken or missing file', () => {
    writeFileSync(file, 'defaults: { per-identity: 3 }');
    const make = (path: string) =>
      new LimitsReloader({ ...options, path, logger: silentLogger, intervalMs: 0 });
    expect(() => make(file)).toThrow(LimitsFileError);
    expect(() => make(join(dir, 'missing.yaml'))).toThrow(/ENOENT/);
  });
});
