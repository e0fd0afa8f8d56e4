/**
 * The TSA's settings, all from MAYFLY_TSA_* environment variables, checked at start: a bad
 * value stops the process with every problem listed (exit status 2).
 */

export const SIGSTORE_TSA_POLICY = '1.3.6.1.4.1.57264.2';

export interface TsaConfig {
  readonly host: string;
  readonly port: number;
  readonly metricsHost: string;
  readonly metricsPort: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly auditLogFile?: string;
  readonly signer: 'ephemeral' | 'file';
  readonly cert?: string;
  readonly key?: string;
  readonly keyPasswordFile?: string;
  readonly policyOid: string;
  /** Put the whole chain, not just the TSA certificate, in tokens when certReq is set. */
  readonly includeChain: boolean;
  readonly ntpServer?: string;
  readonly maxClockOffsetMs: number;
  readonly ntpIntervalMs: number;
  readonly ntpTimeoutMs: number;
  /** Timestamps per second per client address (0: no limit). */
  readonly rateLimitPerSecond: number;
  readonly rateLimitBurst: number;
  /** Files served read-only at /api/v1/trustedRoot and /api/v1/signingConfig. */
  readonly trustedRootFile?: string;
  readonly signingConfigFile?: string;
  readonly shutdownDelayMs: number;
  readonly shutdownGraceMs: number;
}

export class TsaConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid TSA settings: ${problems.join('; ')}`);
    this.name = 'TsaConfigError';
  }
}

/** Each setting: its variable and default, as the README lists them. */
export const TSA_ENV = {
  host: ['MAYFLY_TSA_HOST', '0.0.0.0'],
  port: ['MAYFLY_TSA_PORT', '3000'],
  metricsHost: ['MAYFLY_TSA_METRICS_HOST', '0.0.0.0'],
  metricsPort: ['MAYFLY_TSA_METRICS_PORT', '2113'],
  logLevel: ['MAYFLY_TSA_LOG_LEVEL', 'info'],
  auditLogFile: ['MAYFLY_TSA_AUDIT_LOG_FILE', ''],
  signer: ['MAYFLY_TSA_SIGNER', 'ephemeral'],
  cert: ['MAYFLY_TSA_CERT', ''],
  key: ['MAYFLY_TSA_KEY', ''],
  keyPasswordFile: ['MAYFLY_TSA_KEY_PASSWORD_FILE', ''],
  policyOid: ['MAYFLY_TSA_POLICY_OID', SIGSTORE_TSA_POLICY],
  includeChain: ['MAYFLY_TSA_INCLUDE_CHAIN', 'false'],
  ntpServer: ['MAYFLY_TSA_NTP_SERVER', ''],
  maxClockOffsetMs: ['MAYFLY_TSA_MAX_CLOCK_OFFSET_MS', '1000'],
  ntpIntervalMs: ['MAYFLY_TSA_NTP_INTERVAL_MS', '60000'],
  ntpTimeoutMs: ['MAYFLY_TSA_NTP_TIMEOUT_MS', '2000'],
  rateLimitPerSecond: ['MAYFLY_TSA_RATE_LIMIT_PER_SECOND', '0'],
  rateLimitBurst: ['MAYFLY_TSA_RATE_LIMIT_BURST', '100'],
  trustedRootFile: ['MAYFLY_TSA_TRUSTED_ROOT_FILE', ''],
  signingConfigFile: ['MAYFLY_TSA_SIGNING_CONFIG_FILE', ''],
  shutdownDelayMs: ['MAYFLY_TSA_SHUTDOWN_DELAY_MS', '0'],
  shutdownGraceMs: ['MAYFLY_TSA_SHUTDOWN_GRACE_MS', '10000'],
} as const satisfies Record<keyof TsaConfig, readonly [string, string]>;

const OID_TEXT = /^[0-2](\.(0|[1-9]\d*))+$/;
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadTsaConfig(env: NodeJS.ProcessEnv = process.env): TsaConfig {
  const problems: string[] = [];
  const text = (field: keyof typeof TSA_ENV): string => {
    const [name, fallback] = TSA_ENV[field];
    const value = env[name];
    return value === undefined || value === '' ? fallback : value;
  };
  const int = (field: keyof typeof TSA_ENV, min: number, max: number): number => {
    const raw = text(field);
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      problems.push(`${TSA_ENV[field][0]} must be an integer from ${min} to ${max} (got "${raw}")`);
      return min;
    }
    return n;
  };
  const optional = (field: keyof typeof TSA_ENV) => {
    const v = text(field);
    return v === '' ? {} : { [field]: v };
  };
  const signer = text('signer');
  if (signer !== 'ephemeral' && signer !== 'file') {
    problems.push(`MAYFLY_TSA_SIGNER must be ephemeral or file (got "${signer}")`);
  }
  if (signer === 'file' && (text('cert') === '' || text('key') === '')) {
    problems.push('MAYFLY_TSA_SIGNER=file needs MAYFLY_TSA_CERT and MAYFLY_TSA_KEY');
  }
  const logLevel = text('logLevel');
  if (!(LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`MAYFLY_TSA_LOG_LEVEL must be one of ${LEVELS.join(', ')}`);
  }
  const policyOid = text('policyOid');
  if (!OID_TEXT.test(policyOid)) problems.push(`MAYFLY_TSA_POLICY_OID is not an OID: ${policyOid}`);
  const includeChain = text('includeChain');
  if (includeChain !== 'true' && includeChain !== 'false') {
    problems.push('MAYFLY_TSA_INCLUDE_CHAIN must be true or false');
  }
  const config = {
    host: text('host'),
    port: int('port', 0, 65535),
    metricsHost: text('metricsHost'),
    metricsPort: int('metricsPort', 0, 65535),
    logLevel: logLevel as TsaConfig['logLevel'],
    ...optional('auditLogFile'),
    signer: signer as TsaConfig['signer'],
    ...optional('cert'),
    ...optional('key'),
    ...optional('keyPasswordFile'),
    policyOid,
    includeChain: includeChain === 'true',
    ...optional('ntpServer'),
    maxClockOffsetMs: int('maxClockOffsetMs', 1, 3_600_000),
    ntpIntervalMs: int('ntpIntervalMs', 1000, 86_400_000),
    ntpTimeoutMs: int('ntpTimeoutMs', 10, 60_000),
    rateLimitPerSecond: int('rateLimitPerSecond', 0, 1_000_000),
    rateLimitBurst: int('rateLimitBurst', 1, 1_000_000),
    ...optional('trustedRootFile'),
    ...optional('signingConfigFile'),
    shutdownDelayMs: int('shutdownDelayMs', 0, 600_000),
    shutdownGraceMs: int('shutdownGraceMs', 0, 600_000),
  } as TsaConfig;
  if (problems.length > 0) throw new TsaConfigError(problems);
  return config;
}

/** Settings for tests and embedding: the defaults, with changes. */
export function tsaConfig(changes: Partial<TsaConfig> = {}): TsaConfig {
  return { ...loadTsaConfig({}), ...changes };
}
