import { parseArgs } from 'node:util';
import { join } from 'node:path';

/**
 * The soak's knobs, from flags first and SOAK_* environment variables second, so that CI
 * and a person at a terminal can both shorten or slow a run without editing code.
 */

export interface SoakOptions {
  /** How long the load runs, in milliseconds. */
  readonly durationMs: number;
  /** Requests per second offered (open loop: request i is due at i / rate). */
  readonly rate: number;
  /** Share of requests that must end with a certificate. */
  readonly target: number;
  /** Distinct identities (token + key + proof each), reused round-robin. */
  readonly identities: number;
  /** Client retries after the first attempt (network error or 5xx). */
  readonly retries: number;
  /** Folder for soak-<timestamp>.md (and soak-latest.md). */
  readonly outDir: string;
  /** Keep the scratch folder (logs, configs) even when the run passes. */
  readonly keep: boolean;
  /**
   * The CT log too (opt-in: it needs PostgreSQL and the Go toolchain of scripts/go-refs.sh):
   * two log replicas on one PostgreSQL, every certificate with an embedded SCT, the log's
   * sequencer leader killed and PostgreSQL restarted during the load.
   */
  readonly ct: boolean;
}

export const DEFAULTS = {
  durationMs: 10 * 60_000,
  // About a tenth of one replica's measured peak (bench/results/latest.md): leaves the
  // two cores room for three replicas, nginx, Redis and this process's own checks.
  rate: 100,
  target: 0.9999,
  identities: 1000,
  retries: 2,
} as const;

/** `90`, `90s`, `1.5m`, `10m`, `1h`, `500ms`: a bare number is seconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!match) throw new Error(`not a duration: ${JSON.stringify(text)} (try 60s, 10m)`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
  return Math.round(value * factor);
}

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: expected a positive number`);
  return value;
}

export function parseOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  repoRoot: string,
): SoakOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      duration: { type: 'string' },
      rate: { type: 'string' },
      target: { type: 'string' },
      identities: { type: 'string' },
      retries: { type: 'string' },
      out: { type: 'string' },
      keep: { type: 'boolean' },
      ct: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  const flags = new Map(
    Object.entries(values).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
  const pick = (flag: string, envName: string) => flags.get(flag) ?? env[envName];
  const duration = pick('duration', 'SOAK_DURATION');
  const rate = pick('rate', 'SOAK_RATE');
  const target = pick('target', 'SOAK_TARGET');
  const identities = pick('identities', 'SOAK_IDENTITIES');
  const retries = pick('retries', 'SOAK_RETRIES');
  const out = pick('out', 'SOAK_OUT');
  const targetValue = target === undefined ? DEFAULTS.target : Number(target);
  if (!(targetValue >= 0 && targetValue <= 1)) throw new Error('target: expected 0..1');
  const retriesValue = retries === undefined ? DEFAULTS.retries : Number(retries);
  if (!Number.isInteger(retriesValue) || retriesValue < 0 || retriesValue > 10)
    throw new Error('retries: expected a whole number 0..10');
  return {
    durationMs: duration === undefined ? DEFAULTS.durationMs : parseDuration(duration),
    rate: rate === undefined ? DEFAULTS.rate : positive('rate', rate),
    target: targetValue,
    identities:
      identities === undefined
        ? DEFAULTS.identities
        : Math.max(2, Math.round(positive('identities', identities))),
    retries: retriesValue,
    outDir: out ?? join(repoRoot, 'bench/results'),
    keep: values.keep === true || env.SOAK_KEEP === '1',
    ct: values.ct === true || env.SOAK_CT === '1',
  };
}
