import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dirname, isAbsolute, resolve } from 'node:path';
import YAML from 'yaml';
import { RATE_LIMITS_OFF } from './ratelimit-schema';
import { serverConfigSchema, type ServerConfig } from './schema';

/**
 * Loads the server config: the YAML file named by --config or MAYFLY_CONFIG (or none),
 * then MAYFLY_* environment variables on top, then validation. Every problem is reported
 * at once, one line per field, so a bad deployment fails fast with the whole list.
 */

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Raw = Record<string, unknown>;

interface EnvBinding {
  readonly env: string;
  readonly path: readonly string[];
  readonly kind: 'string' | 'int' | 'number' | 'bool' | 'list' | 'path' | 'pathOrOff' | 'intOrOff';
}

/** Every setting is also an environment variable. */
export const ENV_BINDINGS: readonly EnvBinding[] = [
  { env: 'MAYFLY_HOST', path: ['host'], kind: 'string' },
  { env: 'MAYFLY_PORT', path: ['port'], kind: 'int' },
  { env: 'MAYFLY_GRPC_HOST', path: ['grpc', 'host'], kind: 'string' },
  { env: 'MAYFLY_GRPC_PORT', path: ['grpc', 'port'], kind: 'intOrOff' },
  { env: 'MAYFLY_GRPC_MAX_MESSAGE_BYTES', path: ['grpc', 'maxMessageBytes'], kind: 'int' },
  { env: 'MAYFLY_GRPC_IDLE_TIMEOUT_MS', path: ['grpc', 'idleTimeoutMs'], kind: 'int' },
  { env: 'MAYFLY_GRPC_KEEPALIVE_TIME_MS', path: ['grpc', 'keepaliveTimeMs'], kind: 'int' },
  { env: 'MAYFLY_GRPC_KEEPALIVE_TIMEOUT_MS', path: ['grpc', 'keepaliveTimeoutMs'], kind: 'int' },
  {
    env: 'MAYFLY_GRPC_MAX_CONCURRENT_STREAMS',
    path: ['grpc', 'maxConcurrentStreams'],
    kind: 'int',
  },
  { env: 'MAYFLY_GRPC_TLS_CERT', path: ['grpc', 'tlsCert'], kind: 'path' },
  { env: 'MAYFLY_GRPC_TLS_KEY', path: ['grpc', 'tlsKey'], kind: 'path' },
  { env: 'MAYFLY_GRPC_TLS_RELOAD_MS', path: ['grpc', 'tlsReloadMs'], kind: 'int' },
  { env: 'MAYFLY_METRICS_HOST', path: ['metricsHost'], kind: 'string' },
  { env: 'MAYFLY_METRICS_PORT', path: ['metricsPort'], kind: 'int' },
  { env: 'MAYFLY_LOG_LEVEL', path: ['logLevel'], kind: 'string' },
  { env: 'MAYFLY_AUDIT_LOG_FILE', path: ['auditLogFile'], kind: 'path' },
  { env: 'MAYFLY_IDENTITY_CONFIG', path: ['identityConfig'], kind: 'path' },
  { env: 'MAYFLY_IDENTITY_CONFIG_RELOAD_MS', path: ['identityConfigReloadMs'], kind: 'int' },
  { env: 'MAYFLY_MAX_REQUEST_BYTES', path: ['maxRequestBytes'], kind: 'int' },
  { env: 'MAYFLY_CERT_LIFETIME_SECONDS', path: ['certificateLifetimeSeconds'], kind: 'int' },
  { env: 'MAYFLY_CLIENT_SIGNING_ALGORITHMS', path: ['clientSigningAlgorithms'], kind: 'list' },
  { env: 'MAYFLY_OIDC_DISCOVERY_TIMEOUT_MS', path: ['oidc', 'discoveryTimeoutMs'], kind: 'int' },
  { env: 'MAYFLY_OIDC_JWKS_COOLDOWN_MS', path: ['oidc', 'jwksCooldownMs'], kind: 'int' },
  { env: 'MAYFLY_OIDC_MAX_TOKEN_BYTES', path: ['oidc', 'maxTokenBytes'], kind: 'int' },
  { env: 'MAYFLY_OIDC_KUBERNETES_CA_FILE', path: ['oidc', 'kubernetesCaFile'], kind: 'path' },
  {
    env: 'MAYFLY_OIDC_KUBERNETES_TOKEN_FILE',
    path: ['oidc', 'kubernetesTokenFile'],
    kind: 'path',
  },
  { env: 'MAYFLY_CA', path: ['ca', 'type'], kind: 'string' },
  { env: 'MAYFLY_CA_CERT', path: ['ca', 'cert'], kind: 'path' },
  { env: 'MAYFLY_CA_KEY', path: ['ca', 'key'], kind: 'path' },
  { env: 'MAYFLY_CA_KEY_PASSWORD_FILE', path: ['ca', 'keyPasswordFile'], kind: 'path' },
  { env: 'MAYFLY_CA_NEXT_CERT', path: ['ca', 'nextCert'], kind: 'path' },
  { env: 'MAYFLY_CA_PREVIOUS_CERT', path: ['ca', 'previousCert'], kind: 'path' },
  { env: 'MAYFLY_CA_RELOAD_INTERVAL_MS', path: ['ca', 'reloadIntervalMs'], kind: 'int' },
  { env: 'MAYFLY_CA_SIGN_TIMEOUT_MS', path: ['ca', 'signTimeoutMs'], kind: 'int' },
  { env: 'MAYFLY_CA_PKCS11_MODULE', path: ['ca', 'pkcs11', 'module'], kind: 'string' },
  { env: 'MAYFLY_CA_PKCS11_TOKEN_LABEL', path: ['ca', 'pkcs11', 'tokenLabel'], kind: 'string' },
  { env: 'MAYFLY_CA_PKCS11_KEY_LABEL', path: ['ca', 'pkcs11', 'keyLabel'], kind: 'string' },
  { env: 'MAYFLY_CA_PKCS11_PIN_FILE', path: ['ca', 'pkcs11', 'pinFile'], kind: 'path' },
  { env: 'MAYFLY_CA_PKCS11_SESSIONS', path: ['ca', 'pkcs11', 'sessions'], kind: 'int' },
  { env: 'MAYFLY_CA_PKCS11_MAX_QUEUE', path: ['ca', 'pkcs11', 'maxQueue'], kind: 'int' },
  { env: 'MAYFLY_CA_PKCS11_RSA_PADDING', path: ['ca', 'pkcs11', 'rsaPadding'], kind: 'string' },
  {
    env: 'MAYFLY_CA_PKCS11_RECONNECT_MS',
    path: ['ca', 'pkcs11', 'reconnectIntervalMs'],
    kind: 'int',
  },
  { env: 'MAYFLY_CT_LOG_URL', path: ['ct', 'logUrl'], kind: 'string' },
  { env: 'MAYFLY_CT_LOG_PUBLIC_KEY_FILE', path: ['ct', 'logPublicKeyFile'], kind: 'string' },
  {
    env: 'MAYFLY_CT_LOG_TEMPORAL_START',
    path: ['ct', 'logTemporal', 'start'],
    kind: 'string',
  },
  { env: 'MAYFLY_CT_LOG_TEMPORAL_END', path: ['ct', 'logTemporal', 'end'], kind: 'string' },
  { env: 'MAYFLY_CT_MIN_SCTS', path: ['ct', 'minScts'], kind: 'int' },
  { env: 'MAYFLY_CT_TIMEOUT_MS', path: ['ct', 'timeoutMs'], kind: 'int' },
  { env: 'MAYFLY_SHUTDOWN_GRACE_MS', path: ['shutdownGraceMs'], kind: 'int' },
  { env: 'MAYFLY_SHUTDOWN_DELAY_MS', path: ['shutdownDelayMs'], kind: 'int' },
  { env: 'MAYFLY_SHUTDOWN_IDLE_MS', path: ['shutdownIdleMs'], kind: 'int' },
  { env: 'MAYFLY_WORKERS', path: ['workers'], kind: 'int' },
  { env: 'MAYFLY_STAGE_BATCHING', path: ['stageBatching'], kind: 'bool' },
  // Rate limiting (see config/ratelimits.yaml and the README's "Rate limits").
  { env: 'MAYFLY_RATELIMITS', path: ['rateLimits', 'file'], kind: 'pathOrOff' },
  { env: 'MAYFLY_RATELIMITS_RELOAD_MS', path: ['rateLimits', 'reloadIntervalMs'], kind: 'int' },
  {
    env: 'MAYFLY_RATELIMIT_FAILURE_POLICY',
    path: ['rateLimits', 'failurePolicy'],
    kind: 'string',
  },
  {
    env: 'MAYFLY_RATELIMIT_INSURANCE_SHARE',
    path: ['rateLimits', 'insuranceShare'],
    kind: 'number',
  },
  {
    env: 'MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS',
    path: ['rateLimits', 'failureBackoffMs'],
    kind: 'int',
  },
  { env: 'MAYFLY_TRUSTED_PROXIES', path: ['trustedProxies'], kind: 'list' },
  { env: 'MAYFLY_REDIS_URL', path: ['redis', 'url'], kind: 'string' },
  { env: 'MAYFLY_REDIS_SENTINELS', path: ['redis', 'sentinels'], kind: 'list' },
  { env: 'MAYFLY_REDIS_SENTINEL_NAME', path: ['redis', 'sentinelName'], kind: 'string' },
  { env: 'MAYFLY_REDIS_CLUSTER_NODES', path: ['redis', 'clusterNodes'], kind: 'list' },
  { env: 'MAYFLY_REDIS_USERNAME', path: ['redis', 'username'], kind: 'string' },
  { env: 'MAYFLY_REDIS_PASSWORD_FILE', path: ['redis', 'passwordFile'], kind: 'path' },
  {
    env: 'MAYFLY_REDIS_SENTINEL_PASSWORD_FILE',
    path: ['redis', 'sentinelPasswordFile'],
    kind: 'path',
  },
  { env: 'MAYFLY_REDIS_TLS', path: ['redis', 'tls'], kind: 'bool' },
  { env: 'MAYFLY_REDIS_TLS_CA_FILE', path: ['redis', 'tlsCaFile'], kind: 'path' },
  { env: 'MAYFLY_REDIS_COMMAND_TIMEOUT_MS', path: ['redis', 'commandTimeoutMs'], kind: 'int' },
  { env: 'MAYFLY_REDIS_CONNECT_TIMEOUT_MS', path: ['redis', 'connectTimeoutMs'], kind: 'int' },
  { env: 'MAYFLY_REDIS_KEY_PREFIX', path: ['redis', 'keyPrefix'], kind: 'string' },
];

/** Settings the CA had once and refuses now, so that a deployment relying on them fails fast. */
const RETIRED_ENV: readonly string[] = ['MAYFLY_DEV_ISSUER', 'MAYFLY_DEV_ISSUER_PORT'];

/** Path settings that are relative in a file are relative to that file's folder. */
const FILE_PATH_SETTINGS: readonly (readonly string[])[] = [
  ['identityConfig'],
  ['auditLogFile'],
  ['ca', 'cert'],
  ['ca', 'key'],
  ['ca', 'keyPasswordFile'],
  ['ca', 'pkcs11', 'pinFile'],
  ['rateLimits', 'file'],
  ['redis', 'passwordFile'],
  ['redis', 'sentinelPasswordFile'],
  ['redis', 'tlsCaFile'],
  ['ca', 'nextCert'],
  ['ca', 'previousCert'],
  ['oidc', 'kubernetesCaFile'],
  ['oidc', 'kubernetesTokenFile'],
  ['grpc', 'tlsCert'],
  ['grpc', 'tlsKey'],
  ['ct', 'logPublicKeyFile'],
];

/** The folder holding the shipped config/ (the package root), wherever we run from. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(resolve(dir, 'package.json')) && existsSync(resolve(dir, 'config'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

export function defaultIdentityConfigPath(): string {
  return resolve(packageRoot(), 'config', 'identity.yaml');
}

export function defaultRateLimitsPath(): string {
  return resolve(packageRoot(), 'config', 'ratelimits.yaml');
}

function setPath(target: Raw, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Raw;
  }
  node[path[path.length - 1] as string] = value;
}

function getPath(target: Raw, path: readonly string[]): unknown {
  let node: unknown = target;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Raw)[key];
  }
  return node;
}

function fromEnv(binding: EnvBinding, text: string, problems: string[]): unknown {
  switch (binding.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(text.trim())) {
        problems.push(`${binding.env}: expected a whole number, got ${JSON.stringify(text)}`);
        return undefined;
      }
      return Number(text.trim());
    }
    case 'bool': {
      const t = text.trim().toLowerCase();
      if (['1', 'true', 'on', 'yes'].includes(t)) return true;
      if (['0', 'false', 'off', 'no', ''].includes(t)) return false;
      problems.push(`${binding.env}: expected true or false, got ${JSON.stringify(text)}`);
      return undefined;
    }
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    case 'number': {
      const value = Number(text.trim());
      if (text.trim() === '' || !Number.isFinite(value)) {
        problems.push(`${binding.env}: expected a number, got ${JSON.stringify(text)}`);
        return undefined;
      }
      return value;
    }
    case 'path':
      return resolve(text);
    case 'intOrOff':
      if (text.trim() === 'off') return 'off';
      return fromEnv({ ...binding, kind: 'int' }, text, problems);
    case 'pathOrOff':
      return text.trim() === RATE_LIMITS_OFF ? RATE_LIMITS_OFF : resolve(text);
    case 'string':
      return text;
  }
}

export interface LoadOptions {
  readonly configPath?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
}

export function loadServerConfig(options: LoadOptions = {}): ServerConfig {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  const configPath = options.configPath ?? env.MAYFLY_CONFIG;
  let raw: Raw = {};
  if (configPath) {
    let text: string | undefined;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (err) {
      problems.push(`config file ${configPath}: ${(err as Error).message}`);
    }
    if (text !== undefined) {
      try {
        const doc: unknown = YAML.parse(text, { maxAliasCount: 100 });
        if (doc === null || doc === undefined) raw = {};
        else if (typeof doc === 'object' && !Array.isArray(doc)) raw = doc as Raw;
        else problems.push(`config file ${configPath}: top level must be a mapping`);
      } catch (err) {
        problems.push(`config file ${configPath}: not valid YAML (${(err as Error).message})`);
      }
    }
    const base = dirname(resolve(configPath));
    for (const path of FILE_PATH_SETTINGS) {
      const value = getPath(raw, path);
      if (typeof value === 'string' && value !== RATE_LIMITS_OFF && !isAbsolute(value))
        setPath(raw, path, resolve(base, value));
    }
    const logs = getPath(raw, ['ct', 'logs']);
    if (Array.isArray(logs))
      for (const log of logs as unknown[])
        if (typeof log === 'object' && log !== null) {
          const file = (log as Raw).publicKeyFile;
          if (typeof file === 'string' && !isAbsolute(file))
            (log as Raw).publicKeyFile = resolve(base, file);
        }
  }
  for (const name of RETIRED_ENV) {
    if (env[name] !== undefined)
      problems.push(
        `${name}: the development OIDC issuer is no longer part of the CA; run it as its own process (npm run dev-issuer)`,
      );
  }
  for (const binding of ENV_BINDINGS) {
    const text = env[binding.env];
    if (text === undefined) continue;
    const value = fromEnv(binding, text, problems);
    if (value !== undefined) setPath(raw, binding.path, value);
  }
  if (getPath(raw, ['identityConfig']) === undefined) {
    setPath(raw, ['identityConfig'], defaultIdentityConfigPath());
  }
  if (getPath(raw, ['rateLimits', 'file']) === undefined) {
    setPath(raw, ['rateLimits', 'file'], defaultRateLimitsPath());
  }
  const parsed = serverConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
      // A binding names its setting and everything inside it (a list item, for example).
      const binding = ENV_BINDINGS.find((b) => b.path.every((key, i) => issue.path[i] === key));
      problems.push(`${name}${binding ? ` (${binding.env})` : ''}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return parsed.data;
}

/** `--config PATH`, `--config=PATH` or `-c PATH` from argv; anything else is left alone. */
export function configPathFromArgs(argv: readonly string[]): string | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: { config: { type: 'string', short: 'c' } },
    strict: false,
    allowPositionals: true,
  });
  return typeof values.config === 'string' ? values.config : undefined;
}
