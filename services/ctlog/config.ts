import type { LogLevel } from '../common/logger';

/** MAYFLY_CTLOG_* settings, from the environment; every problem reported at once. */

export interface CtlogConfig {
  readonly host: string;
  readonly port: number;
  readonly roots?: string | undefined;
  readonly dir?: string | undefined;
  readonly databaseUrl?: string | undefined;
  readonly key?: string | undefined;
  readonly keyPasswordFile?: string | undefined;
  readonly url: string;
  readonly temporalStart?: Date | undefined;
  readonly temporalEnd?: Date | undefined;
  readonly intervalMs: number;
  readonly maxBatch: number;
  readonly checkpointRefreshMs: number;
  readonly submitTimeoutMs: number;
  readonly pollMs: number;
  readonly headTtlMs: number;
  readonly maxBodyBytes: number;
  readonly description: string;
  readonly mmdSeconds: number;
  readonly logLevel: LogLevel;
  readonly shutdownGraceMs: number;
}

export class CtlogConfigError extends Error {}

export function loadCtlogConfig(env: NodeJS.ProcessEnv = process.env): CtlogConfig {
  const problems: string[] = [];
  const str = (name: string) => {
    const v = env[`MAYFLY_CTLOG_${name}`];
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (name: string, def: number, min: number, max: number): number => {
    const v = str(name);
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      problems.push(`MAYFLY_CTLOG_${name}: expected an integer from ${min} to ${max}, got "${v}"`);
      return def;
    }
    return Number(v);
  };
  const date = (name: string): Date | undefined => {
    const v = str(name);
    if (v === undefined) return undefined;
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) problems.push(`MAYFLY_CTLOG_${name}: not a date: "${v}"`);
    return d;
  };
  const url = str('URL') ?? `http://localhost:${str('PORT') ?? '6962'}`;
  if (!/^https?:\/\/[^/]+(\/.*)?$/.test(url))
    problems.push(`MAYFLY_CTLOG_URL: expected an http(s) URL, got "${url}"`);
  const level = env.MAYFLY_LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level))
    problems.push(`MAYFLY_LOG_LEVEL: unknown level "${level}"`);
  const config: CtlogConfig = {
    host: str('HOST') ?? '0.0.0.0',
    port: int('PORT', 6962, 0, 65535),
    roots: str('ROOTS'),
    dir: str('DIR'),
    databaseUrl: str('DATABASE_URL'),
    key: str('KEY'),
    keyPasswordFile: str('KEY_PASSWORD_FILE'),
    url,
    temporalStart: date('TEMPORAL_START'),
    temporalEnd: date('TEMPORAL_END'),
    intervalMs: int('SEQUENCE_INTERVAL_MS', 100, 1, 60_000),
    maxBatch: int('MAX_BATCH', 4096, 1, 100_000),
    checkpointRefreshMs: int('CHECKPOINT_REFRESH_MS', 1000, 10, 3_600_000),
    submitTimeoutMs: int('SUBMIT_TIMEOUT_MS', 10_000, 100, 600_000),
    pollMs: int('POLL_MS', 20, 1, 10_000),
    headTtlMs: int('HEAD_TTL_MS', 100, 1, 600_000),
    maxBodyBytes: int('MAX_REQUEST_BYTES', 256 * 1024, 1024, 16 * 1024 * 1024),
    description: str('DESCRIPTION') ?? 'mayfly CT log',
    mmdSeconds: int('MMD_SECONDS', 60, 1, 86_400),
    logLevel: level as LogLevel,
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
  };
  if (config.dir && config.databaseUrl)
    problems.push('MAYFLY_CTLOG_DIR and MAYFLY_CTLOG_DATABASE_URL are exclusive: pick one backend');
  if ((config.temporalStart === undefined) !== (config.temporalEnd === undefined))
    problems.push('MAYFLY_CTLOG_TEMPORAL_START and _END go together');
  if (config.temporalStart && config.temporalEnd && config.temporalEnd <= config.temporalStart)
    problems.push('MAYFLY_CTLOG_TEMPORAL_END must be after _START');
  if (problems.length > 0) throw new CtlogConfigError(problems.join('\n'));
  return config;
}

/** The checkpoint origin: the submission prefix without scheme or trailing slash. */
export function originOf(url: string): string {
  return url.replace(/^https?:\/\//, '').replace(/\/+$/, '');
}
