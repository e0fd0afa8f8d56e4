import { watchFiles, type FileWatch } from '../../common/file-watch';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import type { Logger } from '../logger';
import { InvalidLimitError, type Limit } from './gcra';
import { LimitTable, resolveLimit, type ResolvedLimit } from './limits';

/**
 * The limits file, in Boulder's shape: defaults by limit name, and a list of overrides,
 * each naming one limit with new numbers and the ids it applies to.
 *
 *   defaults:
 *     per-identity: { burst: 50, count: 10, period: 1s }
 *   overrides:
 *     - per-identity:
 *         burst: 500
 *         count: 100
 *         period: 1s
 *         ids:
 *           - id: "https://issuer.example.com 1234567"
 *             comment: release pipeline
 *
 * A limit name missing from `defaults` is not limited (except for ids it overrides).
 * Periods are durations such as `500ms`, `1s`, `10m`, `3h` or `1h30m`.
 */

export class LimitsFileError extends Error {
  constructor(
    readonly path: string,
    readonly problems: readonly string[],
  ) {
    super(`rate limits file ${path}:\n  - ${problems.join('\n  - ')}`);
    this.name = 'LimitsFileError';
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;

export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}

const period = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
  if (ms === undefined || !Number.isSafeInteger(ms) || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `not a duration (like 1s, 10m, 3h): ${value}` });
    return z.NEVER;
  }
  return ms;
});

const limitSchema = z
  .object({
    burst: z.number().int().positive(),
    count: z.number().int().positive(),
    period,
  })
  .strict();

const overrideSchema = z
  .object({
    burst: z.number().int().positive(),
    count: z.number().int().positive(),
    period,
    ids: z
      .array(
        z
          .object({
            id: z.union([z.string(), z.number()]).transform(String),
            comment: z.string().optional(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

const fileSchema = z
  .object({
    defaults: z.record(z.string(), limitSchema).nullish(),
    overrides: z.array(z.record(z.string(), overrideSchema)).nullish(),
  })
  .strict();

export interface LimitsFileOptions {
  /** Every limit name the caller spends; anything else in the file is a typo. */
  readonly knownLimits: readonly string[];
  /**
   * Puts an override id in the form the caller builds bucket ids in (an IP into its
   * prefix, say), or throws an Error saying why it is not a valid id for that limit.
   */
  readonly normalizeId?: (limit: string, id: string) => string;
}

function toLimit(value: { burst: number; count: number; period: number }): Limit {
  return { burst: value.burst, count: value.count, periodMs: value.period };
}

export function parseLimits(text: string, path: string, options: LimitsFileOptions): LimitTable {
  let doc: unknown;
  try {
    doc = YAML.parse(text, { maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new LimitsFileError(path, [`not valid YAML (${(err as Error).message})`]);
  }
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    throw new LimitsFileError(
      path,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`),
    );
  }
  const problems: string[] = [];
  const known = new Set(options.knownLimits);
  const checkName = (name: string, where: string): boolean => {
    if (known.has(name)) return true;
    problems.push(
      `${where}: unknown limit ${JSON.stringify(name)} (known: ${[...known].join(', ')})`,
    );
    return false;
  };
  const resolve = (name: string, limit: Limit, where: string, overridden: boolean) => {
    try {
      return resolveLimit(name, limit, overridden);
    } catch (err) {
      if (!(err instanceof InvalidLimitError)) throw err;
      problems.push(`${where}: ${err.message}`);
      return undefined;
    }
  };

  const defaults = new Map<string, ResolvedLimit>();
  for (const [name, value] of Object.entries(parsed.data.defaults ?? {})) {
    if (!checkName(name, `defaults.${name}`)) continue;
    const resolved = resolve(name, toLimit(value), `defaults.${name}`, false);
    if (resolved) defaults.set(name, resolved);
  }

  const overrides = new Map<string, Map<string, ResolvedLimit>>();
  (parsed.data.overrides ?? []).forEach((entry, index) => {
    const names = Object.keys(entry);
    if (names.length !== 1) {
      problems.push(`overrides.${index}: each entry names exactly one limit`);
      return;
    }
    const name = names[0]!;
    const where = `overrides.${index}.${name}`;
    if (!checkName(name, where)) return;
    const value = entry[name]!;
    const resolved = resolve(name, toLimit(value), where, true);
    if (!resolved) return;
    const byId = overrides.get(name) ?? new Map<string, ResolvedLimit>();
    overrides.set(name, byId);
    value.ids.forEach(({ id }, i) => {
      let normalized: string;
      try {
        normalized = options.normalizeId ? options.normalizeId(name, id) : id;
      } catch (err) {
        problems.push(`${where}.ids.${i}: ${(err as Error).message}`);
        return;
      }
      if (byId.has(normalized)) {
        problems.push(`${where}.ids.${i}: ${JSON.stringify(id)} is overridden twice`);
        return;
      }
      byId.set(normalized, resolved);
    });
  });
  if (problems.length > 0) throw new LimitsFileError(path, problems);
  return new LimitTable(defaults, overrides);
}

export function loadLimitsFile(path: string, options: LimitsFileOptions): LimitTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LimitsFileError(path, [(err as Error).message]);
  }
  return parseLimits(text, path, options);
}

export interface LimitsReloaderOptions extends LimitsFileOptions {
  readonly path: string;
  readonly logger: Logger;
  /** How often to re-read the file; 0 never does. */
  readonly intervalMs: number;
  readonly onReload?: (result: 'success' | 'failure') => void;
}

/**
 * Holds the current table and re-reads the file on an interval. Polling (not fs.watch)
 * because a Kubernetes ConfigMap update swaps a symlink, which watchers often miss. A file
 * that no longer parses keeps the limits in force and logs an error; the first load at
 * start is strict instead, so a broken deployment fails fast.
 */
export class LimitsReloader {
  private table: LimitTable;
  private lastText: string;
  /** The last text that failed, so one broken file logs one error, not one per poll. */
  private lastBadText: string | undefined;
  private watching: FileWatch | undefined;
  private reloading = false;

  constructor(private readonly options: LimitsReloaderOptions) {
    try {
      this.lastText = readFileSync(options.path, 'utf8');
    } catch (err) {
      throw new LimitsFileError(options.path, [(err as Error).message]);
    }
    this.table = parseLimits(this.lastText, options.path, options);
  }

  current(): LimitTable {
    return this.table;
  }

  start(): void {
    if (this.options.intervalMs <= 0 || this.watching) return;
    // Polled only: see above.
    this.watching = watchFiles({
      paths: [this.options.path],
      intervalMs: this.options.intervalMs,
      watch: false,
      what: 'rate limits',
      logger: this.options.logger,
      onChange: () => void this.reload(),
    });
  }

  /** Re-reads the file now; resolves true when new limits took effect. */
  async reload(): Promise<boolean> {
    if (this.reloading) return false;
    this.reloading = true;
    try {
      const text = await readFile(this.options.path, 'utf8');
      if (text === this.lastText || text === this.lastBadText) return false;
      this.lastBadText = text;
      const table = parseLimits(text, this.options.path, this.options);
      this.table = table;
      this.lastText = text;
      this.lastBadText = undefined;
      this.options.logger.info(
        { path: this.options.path, ...table.describe() },
        'rate limits reloaded',
      );
      this.options.onReload?.('success');
      return true;
    } catch (err) {
      this.options.logger.error(
        {
          path: this.options.path,
          problems: err instanceof LimitsFileError ? err.problems : [(err as Error).message],
        },
        'rate limits file could not be reloaded; keeping the limits in force',
      );
      this.options.onReload?.('failure');
      return false;
    } finally {
      this.reloading = false;
    }
  }

  stop(): void {
    this.watching?.close();
    this.watching = undefined;
  }
}
