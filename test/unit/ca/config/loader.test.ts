import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import {
  ConfigError,
  ENV_BINDINGS,
  configPathFromArgs,
  defaultIdentityConfigPath,
  loadServerConfig,
} from '../../../../services/ca/config/loader';
import type { ServerConfig } from '../../../../services/ca/config/schema';

const repoRoot = resolve(__dirname, '../../../..');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-loader-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileCount = 0;
/** Writes a config file in a fresh folder of its own and returns its path. */
function configFile(text: string, name = 'mayfly.yaml'): string {
  const folder = join(dir, `case-${++fileCount}`);
  mkdirSync(folder, { recursive: true });
  const path = join(folder, name);
  writeFileSync(path, text);
  return path;
}

/** The ConfigError a load throws (fails the test if it does not throw one). */
function problemsOf(load: () => unknown): readonly string[] {
  let caught: unknown;
  try {
    load();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  return (caught as ConfigError).problems;
}

function setting(config: ServerConfig, path: readonly string[]): unknown {
  let node: unknown = config;
  for (const key of path) node = (node as Record<string, unknown> | undefined)?.[key];
  return node;
}

describe('loadServerConfig defaults', () => {
  it('gives the documented defaults when there is no file and no environment', () => {
    const config = loadServerConfig({ env: {} });
    expect(config.port).toBe(8080);
    expect(config.metricsPort).toBe(2112);
    expect(config.host).toBe('0.0.0.0');
    expect(config.logLevel).toBe('info');
    expect(config.ca).toEqual({ type: 'ephemeral', signTimeoutMs: 10000 });
    expect(config.maxRequestBytes).toBe(64 * 1024);
    expect(config.certificateLifetimeSeconds).toBe(600);
    expect(config.oidc).toEqual({
      discoveryTimeoutMs: 10000,
      jwksCooldownMs: 30000,
      maxTokenBytes: 32768,
      kubernetesCaFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
      kubernetesTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    });
    expect(config).not.toHaveProperty('devIssuer');
  });

  it('points the identity config at the shipped config/identity.yaml', () => {
    const config = loadServerConfig({ env: {} });
    expect(config.identityConfig).toBe(join(repoRoot, 'config', 'identity.yaml'));
    expect(defaultIdentityConfigPath()).toBe(config.identityConfig);
    expect(existsSync(config.identityConfig)).toBe(true);
  });

  it('loads the shipped config/mayfly.yaml to the same settings as the defaults', () => {
    const shipped = loadServerConfig({
      configPath: join(repoRoot, 'config', 'mayfly.yaml'),
      env: {},
    });
    expect(shipped).toEqual(loadServerConfig({ env: {} }));
  });

  it('treats an empty file as no settings', () => {
    const config = loadServerConfig({ configPath: configFile(''), env: {} });
    expect(config.port).toBe(8080);
  });
});

describe('loadServerConfig from a YAML file', () => {
  it('takes the values written in the file', () => {
    const path = configFile(
      [
        'host: 127.0.0.1',
        'port: 9000',
        'metricsPort: 9001',
        'logLevel: warn',
        'maxRequestBytes: 2048',
        'certificateLifetimeSeconds: 120',
        'clientSigningAlgorithms: [ed25519]',
        'oidc:',
        '  jwksCooldownMs: 5',
      ].join('\n'),
    );
    const config = loadServerConfig({ configPath: path, env: {} });
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(9000);
    expect(config.metricsPort).toBe(9001);
    expect(config.logLevel).toBe('warn');
    expect(config.maxRequestBytes).toBe(2048);
    expect(config.certificateLifetimeSeconds).toBe(120);
    expect(config.clientSigningAlgorithms).toEqual(['ed25519']);
    expect(config.oidc).toEqual({
      discoveryTimeoutMs: 10000,
      jwksCooldownMs: 5,
      maxTokenBytes: 32768,
      kubernetesCaFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
      kubernetesTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    });
  });

  it('reads the file named by MAYFLY_CONFIG when no path is given', () => {
    const path = configFile('port: 9100\n');
    expect(loadServerConfig({ env: { MAYFLY_CONFIG: path } }).port).toBe(9100);
  });

  it('prefers the path given (--config) to MAYFLY_CONFIG', () => {
    const given = configFile('port: 9200\n');
    const fromEnv = configFile('port: 9300\n');
    expect(loadServerConfig({ configPath: given, env: { MAYFLY_CONFIG: fromEnv } }).port).toBe(
      9200,
    );
  });

  it("resolves relative paths in the file against the file's folder", () => {
    const path = configFile(
      [
        'identityConfig: identity.yaml',
        'ca:',
        '  type: file',
        '  cert: certs/chain.pem',
        '  key: ../keys/key.pem',
        '  keyPasswordFile: /etc/mayfly/pass',
        '  nextCert: next/chain.pem',
        '  previousCert: ./previous.pem',
      ].join('\n'),
    );
    const folder = resolve(path, '..');
    const config = loadServerConfig({ configPath: path, env: {} });
    expect(config.identityConfig).toBe(join(folder, 'identity.yaml'));
    expect(config.ca.cert).toBe(join(folder, 'certs', 'chain.pem'));
    expect(config.ca.key).toBe(resolve(folder, '..', 'keys', 'key.pem'));
    expect(config.ca.keyPasswordFile).toBe('/etc/mayfly/pass');
    expect(config.ca.nextCert).toBe(join(folder, 'next', 'chain.pem'));
    expect(config.ca.previousCert).toBe(join(folder, 'previous.pem'));
  });

  it('resolves relative paths against the file even when the file path itself is relative', () => {
    const path = configFile('identityConfig: ids/identity.yaml\n');
    const relativePath = join('.', relative(process.cwd(), path));
    const config = loadServerConfig({ configPath: relativePath, env: {} });
    expect(config.identityConfig).toBe(join(resolve(path, '..'), 'ids', 'identity.yaml'));
  });

  it('refuses unknown keys at the top level, naming the key', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ configPath: configFile('port: 9000\ncolour: blue\n'), env: {} }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('colour');
  });

  it('refuses unknown keys inside a section', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ configPath: configFile('oidc:\n  discoveryTimeout: 5\n'), env: {} }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('discoveryTimeout');
  });

  it('refuses a file that is not YAML', () => {
    const path = configFile('port: [9000\nhost: "unterminated\n');
    const problems = problemsOf(() => loadServerConfig({ configPath: path, env: {} }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(path);
    expect(problems[0]).toContain('not valid YAML');
  });

  it.each([
    ['a list', '- port\n- 9000\n'],
    ['a string', 'just some words\n'],
    ['a number', '42\n'],
  ])('refuses a file whose top level is %s rather than a mapping', (_what, text) => {
    const path = configFile(text);
    const problems = problemsOf(() => loadServerConfig({ configPath: path, env: {} }));
    expect(problems).toEqual([`config file ${path}: top level must be a mapping`]);
  });

  it('refuses a config file that does not exist, naming it', () => {
    const path = join(dir, 'no-such-folder', 'mayfly.yaml');
    const problems = problemsOf(() => loadServerConfig({ configPath: path, env: {} }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(path);
  });

  it('names the environment variable of a bad nested value that came from the file', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ configPath: configFile('oidc:\n  maxTokenBytes: 1\n'), env: {} }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^oidc\.maxTokenBytes \(MAYFLY_OIDC_MAX_TOKEN_BYTES\): /);
  });

  it('names the environment variable of a bad value that came from the file', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ configPath: configFile('port: eighty\n'), env: {} }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^port \(MAYFLY_PORT\): /);
  });
});

describe('loadServerConfig from the environment', () => {
  it('lets the environment override the file, keeping the rest of the file', () => {
    const path = configFile(
      ['port: 9000', 'metricsPort: 9001', 'oidc:', '  discoveryTimeoutMs: 5000'].join('\n'),
    );
    const config = loadServerConfig({
      configPath: path,
      env: { MAYFLY_PORT: '9500', MAYFLY_OIDC_JWKS_COOLDOWN_MS: '200' },
    });
    expect(config.port).toBe(9500);
    expect(config.metricsPort).toBe(9001);
    expect(config.oidc).toEqual({
      discoveryTimeoutMs: 5000,
      jwksCooldownMs: 200,
      maxTokenBytes: 32768,
      kubernetesCaFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
      kubernetesTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    });
  });

  it('lets an environment path override the file path, relative to the working folder', () => {
    const path = configFile('identityConfig: from-file.yaml\n');
    const config = loadServerConfig({
      configPath: path,
      env: { MAYFLY_IDENTITY_CONFIG: 'from-env.yaml' },
    });
    expect(config.identityConfig).toBe(resolve(process.cwd(), 'from-env.yaml'));
  });

  /** A value for every binding, different from its default, and what it must become. */
  const samples: Record<string, { text: string; want: unknown; also?: Record<string, string> }> = {
    MAYFLY_HOST: { text: '127.0.0.2', want: '127.0.0.2' },
    MAYFLY_PORT: { text: '9090', want: 9090 },
    MAYFLY_METRICS_HOST: { text: '127.0.0.3', want: '127.0.0.3' },
    MAYFLY_METRICS_PORT: { text: '9091', want: 9091 },
    MAYFLY_LOG_LEVEL: { text: 'debug', want: 'debug' },
    MAYFLY_IDENTITY_CONFIG: {
      text: '/etc/mayfly/identity.yaml',
      want: '/etc/mayfly/identity.yaml',
    },
    MAYFLY_MAX_REQUEST_BYTES: { text: '131072', want: 131072 },
    MAYFLY_CERT_LIFETIME_SECONDS: { text: '300', want: 300 },
    MAYFLY_CLIENT_SIGNING_ALGORITHMS: {
      text: 'ed25519, ecdsa-sha2-256-nistp256',
      want: ['ed25519', 'ecdsa-sha2-256-nistp256'],
    },
    MAYFLY_AUDIT_LOG_FILE: { text: '/var/log/mayfly/audit.log', want: '/var/log/mayfly/audit.log' },
    MAYFLY_OIDC_DISCOVERY_TIMEOUT_MS: { text: '2500', want: 2500 },
    MAYFLY_OIDC_JWKS_COOLDOWN_MS: { text: '0', want: 0 },
    MAYFLY_OIDC_MAX_TOKEN_BYTES: { text: '4096', want: 4096 },
    MAYFLY_OIDC_KUBERNETES_CA_FILE: { text: '/k8s/ca.crt', want: '/k8s/ca.crt' },
    MAYFLY_OIDC_KUBERNETES_TOKEN_FILE: { text: '/k8s/token', want: '/k8s/token' },
    MAYFLY_IDENTITY_CONFIG_RELOAD_MS: { text: '0', want: 0 },
    MAYFLY_CA: {
      text: 'file',
      want: 'file',
      also: { MAYFLY_CA_CERT: '/ca/chain.pem', MAYFLY_CA_KEY: '/ca/key.pem' },
    },
    MAYFLY_CA_CERT: { text: '/ca/chain.pem', want: '/ca/chain.pem' },
    MAYFLY_CA_KEY: { text: '/ca/key.pem', want: '/ca/key.pem' },
    MAYFLY_CA_KEY_PASSWORD_FILE: { text: '/ca/pass', want: '/ca/pass' },
    MAYFLY_CA_NEXT_CERT: { text: '/ca/next.pem', want: '/ca/next.pem' },
    MAYFLY_CA_PREVIOUS_CERT: { text: '/ca/previous.pem', want: '/ca/previous.pem' },
    MAYFLY_CA_RELOAD_INTERVAL_MS: { text: '5000', want: 5000 },
    MAYFLY_CA_SIGN_TIMEOUT_MS: { text: '2500', want: 2500 },
    MAYFLY_CA_PKCS11_MODULE: {
      text: '/usr/lib/softhsm/libsofthsm2.so',
      want: '/usr/lib/softhsm/libsofthsm2.so',
    },
    MAYFLY_CA_PKCS11_TOKEN_LABEL: { text: 'mayfly-ca', want: 'mayfly-ca' },
    MAYFLY_CA_PKCS11_KEY_LABEL: { text: 'intermediate-2026', want: 'intermediate-2026' },
    MAYFLY_CA_PKCS11_PIN_FILE: { text: '/run/secrets/pin', want: '/run/secrets/pin' },
    MAYFLY_CA_PKCS11_SESSIONS: { text: '8', want: 8 },
    MAYFLY_CA_PKCS11_MAX_QUEUE: { text: '50', want: 50 },
    MAYFLY_CA_PKCS11_RSA_PADDING: { text: 'pss', want: 'pss' },
    MAYFLY_CA_PKCS11_RECONNECT_MS: { text: '250', want: 250 },
    MAYFLY_SHUTDOWN_GRACE_MS: { text: '1000', want: 1000 },
    MAYFLY_SHUTDOWN_DELAY_MS: { text: '1500', want: 1500 },
    MAYFLY_SHUTDOWN_IDLE_MS: { text: '5000', want: 5000 },
    MAYFLY_WORKERS: { text: '4', want: 4 },
    MAYFLY_STAGE_BATCHING: { text: 'false', want: false },
    MAYFLY_RATELIMITS: { text: '/etc/mayfly/limits.yaml', want: '/etc/mayfly/limits.yaml' },
    MAYFLY_RATELIMITS_RELOAD_MS: { text: '2000', want: 2000 },
    MAYFLY_RATELIMIT_FAILURE_POLICY: { text: 'fail-closed', want: 'fail-closed' },
    MAYFLY_RATELIMIT_INSURANCE_SHARE: { text: '0.5', want: 0.5 },
    MAYFLY_RATELIMIT_FAILURE_BACKOFF_MS: { text: '500', want: 500 },
    MAYFLY_TRUSTED_PROXIES: {
      text: '198.51.100.1, 203.0.113.0/24',
      want: ['198.51.100.1', '203.0.113.0/24'],
    },
    MAYFLY_REDIS_URL: { text: 'redis://127.0.0.1:6379', want: 'redis://127.0.0.1:6379' },
    MAYFLY_REDIS_SENTINELS: {
      text: '127.0.0.1:26379,127.0.0.2:26379',
      want: ['127.0.0.1:26379', '127.0.0.2:26379'],
    },
    MAYFLY_REDIS_SENTINEL_NAME: { text: 'primary', want: 'primary' },
    MAYFLY_REDIS_CLUSTER_NODES: { text: '127.0.0.1:7000', want: ['127.0.0.1:7000'] },
    MAYFLY_REDIS_USERNAME: { text: 'mayfly', want: 'mayfly' },
    MAYFLY_REDIS_PASSWORD_FILE: { text: '/run/redis/pass', want: '/run/redis/pass' },
    MAYFLY_REDIS_SENTINEL_PASSWORD_FILE: {
      text: '/run/redis/sentinel-pass',
      want: '/run/redis/sentinel-pass',
    },
    MAYFLY_REDIS_TLS: { text: 'true', want: true },
    MAYFLY_REDIS_TLS_CA_FILE: { text: '/run/redis/ca.pem', want: '/run/redis/ca.pem' },
    MAYFLY_REDIS_COMMAND_TIMEOUT_MS: { text: '100', want: 100 },
    MAYFLY_REDIS_CONNECT_TIMEOUT_MS: { text: '2000', want: 2000 },
    MAYFLY_REDIS_KEY_PREFIX: { text: 'test:', want: 'test:' },
    MAYFLY_GRPC_HOST: { text: '127.0.0.1', want: '127.0.0.1' },
    MAYFLY_GRPC_PORT: { text: 'off', want: 'off' },
    MAYFLY_GRPC_MAX_MESSAGE_BYTES: { text: '4194304', want: 4194304 },
    MAYFLY_GRPC_IDLE_TIMEOUT_MS: { text: '5000', want: 5000 },
    MAYFLY_GRPC_KEEPALIVE_TIME_MS: { text: '10000', want: 10000 },
    MAYFLY_GRPC_KEEPALIVE_TIMEOUT_MS: { text: '5000', want: 5000 },
    MAYFLY_GRPC_MAX_CONCURRENT_STREAMS: { text: '10', want: 10 },
    MAYFLY_GRPC_TLS_CERT: {
      text: '/run/tls/tls.crt',
      want: '/run/tls/tls.crt',
      also: { MAYFLY_GRPC_TLS_CERT: '/run/old/tls.crt', MAYFLY_GRPC_TLS_KEY: '/run/tls/tls.key' },
    },
    MAYFLY_GRPC_TLS_KEY: {
      text: '/run/tls/tls.key',
      want: '/run/tls/tls.key',
      also: { MAYFLY_GRPC_TLS_CERT: '/run/tls/tls.crt', MAYFLY_GRPC_TLS_KEY: '/run/old/tls.key' },
    },
    MAYFLY_GRPC_TLS_RELOAD_MS: { text: '0', want: 0 },
    MAYFLY_CT_LOG_URL: {
      text: 'http://ctlog.example:6962/',
      want: 'http://ctlog.example:6962/',
      also: { MAYFLY_CT_LOG_PUBLIC_KEY_FILE: '/run/ct/log.pub' },
    },
    MAYFLY_CT_LOG_PUBLIC_KEY_FILE: { text: '/run/ct/log.pub', want: '/run/ct/log.pub' },
    MAYFLY_CT_LOG_TEMPORAL_START: {
      text: '2026-01-01T00:00:00Z',
      want: '2026-01-01T00:00:00Z',
      also: {
        MAYFLY_CT_LOG_URL: 'http://ctlog.example:6962/',
        MAYFLY_CT_LOG_PUBLIC_KEY_FILE: '/run/ct/log.pub',
        MAYFLY_CT_LOG_TEMPORAL_START: '2025-01-01T00:00:00Z',
        MAYFLY_CT_LOG_TEMPORAL_END: '2027-01-01T00:00:00Z',
      },
    },
    MAYFLY_CT_LOG_TEMPORAL_END: {
      text: '2028-01-01T00:00:00+01:00',
      want: '2028-01-01T00:00:00+01:00',
      also: {
        MAYFLY_CT_LOG_URL: 'http://ctlog.example:6962/',
        MAYFLY_CT_LOG_PUBLIC_KEY_FILE: '/run/ct/log.pub',
        MAYFLY_CT_LOG_TEMPORAL_START: '2026-01-01T00:00:00Z',
        MAYFLY_CT_LOG_TEMPORAL_END: '2027-01-01T00:00:00Z',
      },
    },
    MAYFLY_CT_MIN_SCTS: { text: '2', want: 2 },
    MAYFLY_CT_TIMEOUT_MS: { text: '2500', want: 2500 },
  };

  it('has a sample for every MAYFLY_* binding (so a new binding gets tested)', () => {
    expect(Object.keys(samples).sort()).toEqual(ENV_BINDINGS.map((b) => b.env).sort());
  });

  it.each(ENV_BINDINGS.map((b) => [b.env, b.path] as const))(
    '%s reaches its setting',
    (env, path) => {
      const sample = samples[env];
      expect(sample).toBeDefined();
      const before = setting(loadServerConfig({ env: { ...sample!.also } }), path);
      expect(before).not.toEqual(sample!.want);
      const config = loadServerConfig({ env: { ...sample!.also, [env]: sample!.text } });
      expect(setting(config, path)).toEqual(sample!.want);
    },
  );

  it('reads MAYFLY_GRPC_PORT as a port, 0 or off (default 8081, like Fulcio)', () => {
    expect(loadServerConfig({ env: {} }).grpc.port).toBe(8081);
    expect(loadServerConfig({ env: { MAYFLY_GRPC_PORT: '0' } }).grpc.port).toBe(0);
    expect(loadServerConfig({ env: { MAYFLY_GRPC_PORT: '9091' } }).grpc.port).toBe(9091);
    expect(() => loadServerConfig({ env: { MAYFLY_GRPC_PORT: 'of' } })).toThrow(/MAYFLY_GRPC_PORT/);
  });

  it('refuses a gRPC TLS certificate without its key', () => {
    expect(() => loadServerConfig({ env: { MAYFLY_GRPC_TLS_CERT: '/run/tls/tls.crt' } })).toThrow(
      /grpc\.tlsKey.*go together/,
    );
  });

  it('accepts MAYFLY_PORT=0 (any free port)', () => {
    expect(loadServerConfig({ env: { MAYFLY_PORT: '0' } }).port).toBe(0);
  });

  it.each(['MAYFLY_DEV_ISSUER', 'MAYFLY_DEV_ISSUER_PORT'])(
    'refuses %s: the development issuer is its own process, never inside the CA',
    (name) => {
      const problems = problemsOf(() => loadServerConfig({ env: { [name]: 'false' } }));
      expect(problems).toEqual([
        `${name}: the development OIDC issuer is no longer part of the CA; run it as its own process (npm run dev-issuer)`,
      ]);
    },
  );

  it('refuses a devIssuer section in the file', () => {
    const path = configFile('devIssuer:\n  enabled: false\n');
    const problems = problemsOf(() => loadServerConfig({ configPath: path, env: {} }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('devIssuer');
  });

  it('ignores environment variables it does not know', () => {
    expect(loadServerConfig({ env: { MAYFLY_COLOUR: 'blue', PORT: '1' } }).port).toBe(8080);
  });
});

describe('loadServerConfig refusals', () => {
  it('lists every problem at once, one per field, naming the environment variable', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ env: { MAYFLY_PORT: 'abc', MAYFLY_LOG_LEVEL: 'loud' } }),
    );
    expect(problems).toHaveLength(2);
    expect(problems.filter((p) => p.includes('MAYFLY_PORT'))).toHaveLength(1);
    expect(problems.filter((p) => p.includes('MAYFLY_LOG_LEVEL'))).toHaveLength(1);
    expect(problems.find((p) => p.includes('MAYFLY_PORT'))).toContain('"abc"');
  });

  it('puts every problem into the error message as well', () => {
    let message = '';
    try {
      loadServerConfig({ env: { MAYFLY_PORT: 'abc', MAYFLY_LOG_LEVEL: 'loud' } });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('MAYFLY_PORT');
    expect(message).toContain('MAYFLY_LOG_LEVEL');
  });

  it('reports problems from parsing and from validation together', () => {
    const problems = problemsOf(() =>
      loadServerConfig({
        env: {
          MAYFLY_PORT: 'abc',
          MAYFLY_METRICS_PORT: '-5',
          MAYFLY_DEV_ISSUER: 'maybe',
          MAYFLY_LOG_LEVEL: 'loud',
          MAYFLY_CLIENT_SIGNING_ALGORITHMS: 'md5-rsa',
          MAYFLY_CERT_LIFETIME_SECONDS: '10',
        },
      }),
    );
    for (const env of [
      'MAYFLY_PORT',
      'MAYFLY_METRICS_PORT',
      'MAYFLY_DEV_ISSUER',
      'MAYFLY_LOG_LEVEL',
      'MAYFLY_CLIENT_SIGNING_ALGORITHMS',
      'MAYFLY_CERT_LIFETIME_SECONDS',
    ]) {
      expect(problems.filter((p) => p.includes(env))).toHaveLength(1);
    }
    expect(problems).toHaveLength(6);
  });

  it.each([
    ['MAYFLY_PORT', '65536'],
    ['MAYFLY_PORT', '-1'],
    ['MAYFLY_PORT', '80.5'],
    ['MAYFLY_PORT', ''],
    ['MAYFLY_MAX_REQUEST_BYTES', '100'],
    ['MAYFLY_OIDC_MAX_TOKEN_BYTES', '0'],
    ['MAYFLY_CA', 'hsm'],
    ['MAYFLY_CLIENT_SIGNING_ALGORITHMS', ''],
    ['MAYFLY_CLIENT_SIGNING_ALGORITHMS', 'ed25519,md5-rsa'],
  ])('refuses %s=%j, naming the variable', (env, text) => {
    const problems = problemsOf(() => loadServerConfig({ env: { [env]: text } }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(env);
  });

  it('refuses MAYFLY_CA=file without a certificate and key, saying what is needed', () => {
    const problems = problemsOf(() => loadServerConfig({ env: { MAYFLY_CA: 'file' } }));
    expect(problems).toHaveLength(2);
    expect(problems.find((p) => p.startsWith('ca.cert'))).toContain(
      'required when ca.type is file',
    );
    expect(problems.find((p) => p.startsWith('ca.cert'))).toContain('MAYFLY_CA_CERT');
    expect(problems.find((p) => p.startsWith('ca.key'))).toContain('MAYFLY_CA_KEY');
  });

  it('refuses MAYFLY_CA=pkcs11 without a chain, module, token label and PIN file, naming each', () => {
    const problems = problemsOf(() => loadServerConfig({ env: { MAYFLY_CA: 'pkcs11' } }));
    expect(problems).toHaveLength(4);
    for (const env of [
      'MAYFLY_CA_CERT',
      'MAYFLY_CA_PKCS11_MODULE',
      'MAYFLY_CA_PKCS11_TOKEN_LABEL',
      'MAYFLY_CA_PKCS11_PIN_FILE',
    ])
      expect(problems.find((p) => p.includes(env))).toContain('required when ca.type is pkcs11');
  });

  it('reads the pkcs11 CA from YAML, with the PIN file relative to the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mayfly-pkcs11-config-'));
    const file = join(dir, 'server.yaml');
    writeFileSync(
      file,
      'ca:\n  type: pkcs11\n  cert: chain.pem\n  pkcs11:\n    module: /usr/lib/softhsm/libsofthsm2.so\n    tokenLabel: mayfly-ca\n    pinFile: pin\n    sessions: 2\n',
    );
    const config = loadServerConfig({ configPath: file, env: {} });
    expect(config.ca).toMatchObject({
      type: 'pkcs11',
      cert: join(dir, 'chain.pem'),
      pkcs11: {
        module: '/usr/lib/softhsm/libsofthsm2.so',
        tokenLabel: 'mayfly-ca',
        pinFile: join(dir, 'pin'),
        sessions: 2,
        maxQueue: 1024,
        rsaPadding: 'pkcs1',
      },
    });
  });

  it('refuses MAYFLY_CA=file with a certificate but no key', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ env: { MAYFLY_CA: 'file', MAYFLY_CA_CERT: '/ca/chain.pem' } }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('MAYFLY_CA_KEY');
  });

  it('reports a missing CA key together with other bad settings', () => {
    const problems = problemsOf(() =>
      loadServerConfig({ env: { MAYFLY_CA: 'file', MAYFLY_LOG_LEVEL: 'loud' } }),
    );
    expect(problems.filter((p) => p.includes('MAYFLY_LOG_LEVEL'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('ca.cert'))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith('ca.key'))).toHaveLength(1);
    expect(problems).toHaveLength(3);
  });

  it('reports a bad file and a bad environment value together', () => {
    const path = configFile('colour: blue\n');
    const problems = problemsOf(() =>
      loadServerConfig({ configPath: path, env: { MAYFLY_PORT: 'abc' } }),
    );
    expect(problems.filter((p) => p.includes('colour'))).toHaveLength(1);
    expect(problems.filter((p) => p.includes('MAYFLY_PORT'))).toHaveLength(1);
    expect(problems).toHaveLength(2);
  });
});

describe('configPathFromArgs', () => {
  it.each([
    [['--config', 'x.yaml'], 'x.yaml'],
    [['--config=x.yaml'], 'x.yaml'],
    [['-c', 'x.yaml'], 'x.yaml'],
    [
      ['/usr/bin/node', 'dist/services/ca/main.js', '--config', '/etc/mayfly.yaml'],
      '/etc/mayfly.yaml',
    ],
    [['--config=/etc/a=b.yaml'], '/etc/a=b.yaml'],
  ])('finds the config path in %j', (argv, want) => {
    expect(configPathFromArgs(argv)).toBe(want);
  });

  it.each([[[]], [['node', 'main.js']], [['--port', '1']], [['--configuration', 'x']]])(
    'finds no config path in %j',
    (argv) => {
      expect(configPathFromArgs(argv)).toBeUndefined();
    },
  );
});

describe('CT temporal windows (a log asked only for certificates whose notAfter its window holds)', () => {
  const log = {
    MAYFLY_CT_LOG_URL: 'http://ctlog.example:6962/',
    MAYFLY_CT_LOG_PUBLIC_KEY_FILE: '/run/ct/log.pub',
  };
  const window = (start: string, end: string) => ({
    MAYFLY_CT_LOG_TEMPORAL_START: start,
    MAYFLY_CT_LOG_TEMPORAL_END: end,
  });

  it.each([
    ['UTC', window('2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z')],
    ['an offset and fractions', window('2026-01-01T00:00:00.5+02:00', '2026-01-01T00:00:01Z')],
    ['one second', window('2026-06-30T23:59:59Z', '2026-07-01T00:00:00Z')],
  ])('accepts a window in %s', (_name, env) => {
    expect(loadServerConfig({ env: { ...log, ...env } }).ct.logTemporal).toEqual({
      start: env.MAYFLY_CT_LOG_TEMPORAL_START,
      end: env.MAYFLY_CT_LOG_TEMPORAL_END,
    });
  });

  it.each([
    [
      'end equal to start',
      { ...log, ...window('2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z') },
      'ct.logTemporal.end (MAYFLY_CT_LOG_TEMPORAL_END): must be after start (2026-01-01T00:00:00Z): the window is [start, end)',
    ],
    [
      'end before start (another offset)',
      { ...log, ...window('2026-01-01T02:00:00+02:00', '2026-01-01T00:00:00Z') },
      'ct.logTemporal.end (MAYFLY_CT_LOG_TEMPORAL_END): must be after start (2026-01-01T02:00:00+02:00): the window is [start, end)',
    ],
    [
      'a start without an end',
      { ...log, MAYFLY_CT_LOG_TEMPORAL_START: '2026-01-01T00:00:00Z' },
      'ct.logTemporal.end (MAYFLY_CT_LOG_TEMPORAL_END): required (start and end go together)',
    ],
    [
      'an end without a start',
      { ...log, MAYFLY_CT_LOG_TEMPORAL_END: '2026-01-01T00:00:00Z' },
      'ct.logTemporal.start (MAYFLY_CT_LOG_TEMPORAL_START): required (start and end go together)',
    ],
    [
      'a date without a time',
      { ...log, ...window('2026-01-01', '2027-01-01T00:00:00Z') },
      'ct.logTemporal.start (MAYFLY_CT_LOG_TEMPORAL_START): expected an RFC 3339 time such as 2027-01-01T00:00:00Z',
    ],
    [
      'a time without an offset',
      { ...log, ...window('2026-01-01T00:00:00Z', '2027-01-01T00:00:00') },
      'ct.logTemporal.end (MAYFLY_CT_LOG_TEMPORAL_END): expected an RFC 3339 time such as 2027-01-01T00:00:00Z',
    ],
    [
      'a window without a log URL',
      window('2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z'),
      'ct.logTemporal: a temporal window for MAYFLY_CT_LOG_URL, which is not set',
    ],
  ])('refuses %s', (_name, env, problem) => {
    expect(problemsOf(() => loadServerConfig({ env }))).toEqual([problem]);
  });

  it.each([
    [
      'a window per log',
      ['    temporal: { start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z }'],
      [],
    ],
    [
      'end equal to start',
      ['    temporal: { start: 2027-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z }'],
      [
        'ct.logs.1.temporal.end: must be after start (2027-01-01T00:00:00Z): the window is [start, end)',
      ],
    ],
    [
      'a window that is not a pair of times',
      ['    temporal: { start: next year, end: 2027-01-01T00:00:00Z }'],
      ['ct.logs.1.temporal.start: expected an RFC 3339 time such as 2027-01-01T00:00:00Z'],
    ],
    [
      'an unknown key in the window',
      ['    temporal: { start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z, grace: 1h }'],
      ['ct.logs.1.temporal: Unrecognized key: "grace"'],
    ],
  ])('the YAML list: %s', (_name, second, problems) => {
    const path = configFile(
      [
        'ct:',
        '  logs:',
        '  - url: http://shard-2026.example/',
        '    publicKeyFile: /run/ct/2026.pub',
        '    temporal: { start: 2026-01-01T00:00:00Z, end: 2027-01-01T00:00:00Z }',
        '  - url: http://shard-2027.example/',
        '    publicKeyFile: /run/ct/2027.pub',
        ...second,
        '',
      ].join('\n'),
    );
    if (problems.length === 0) {
      const ct = loadServerConfig({ configPath: path, env: {} }).ct;
      expect(ct.logs?.map((l) => l.temporal)).toEqual([
        { start: '2026-01-01T00:00:00Z', end: '2027-01-01T00:00:00Z' },
        { start: '2026-01-01T00:00:00Z', end: '2027-01-01T00:00:00Z' },
      ]);
    } else {
      expect(problemsOf(() => loadServerConfig({ configPath: path, env: {} }))).toEqual(problems);
    }
  });
});
