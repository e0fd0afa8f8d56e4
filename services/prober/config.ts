/**
 * The prober's settings, all from the environment (it is a small deployable with nothing to
 * put in a file). Every problem is reported at once.
 */

export type SigningApi = 'v1' | 'v2';

export interface ProberConfig {
  /** The CA's base URL, e.g. http://mayfly.mayfly-system.svc. */
  readonly url: string;
  /** The identity token, re-read before every signing probe (projected tokens rotate). */
  readonly tokenFile: string;
  readonly intervalSeconds: number;
  readonly timeoutMs: number;
  readonly metricsHost: string;
  readonly metricsPort: number;
  /** Which signingCert APIs to probe: v2 (sigstore-js, cosign 3) and v1 (cosign 2). */
  readonly signingApis: readonly SigningApi[];
  /** PEM roots the issued chains must end in; unset: the CA's own /api/v2/trustBundle. */
  readonly trustedRootsFile: string | undefined;
  /** The CA's gRPC listener (host:port): GetTrustBundle and CreateSigningCertificate are probed too. */
  readonly grpcAddress: string | undefined;
  /** TLS to the gRPC listener (with MAYFLY_PROBER_GRPC_CA_FILE's roots, else the system's). */
  readonly grpcTls: boolean;
  readonly grpcCaFile: string | undefined;
  readonly logLevel: string;
}

export class ProberConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid prober configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ProberConfigError';
  }
}

/** Where cosign and the Sigstore scaffolding mount a projected service-account token. */
export const DEFAULT_TOKEN_FILE = '/var/run/sigstore/cosign/oidc-token';

export function loadProberConfig(env: Readonly<Record<string, string | undefined>>): ProberConfig {
  const problems: string[] = [];
  const text = (name: string, fallback?: string): string => {
    const value = env[name]?.trim();
    if (value) return value;
    if (fallback === undefined) problems.push(`${name} is required`);
    return fallback ?? '';
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(
        `${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
      );
      return fallback;
    }
    return Number(raw);
  };

  const url = text('MAYFLY_PROBER_URL').replace(/\/+$/, '');
  if (url && !/^https?:\/\/[^/]+/.test(url))
    problems.push(`MAYFLY_PROBER_URL: expected an http(s) URL, got ${JSON.stringify(url)}`);
  const apis = text('MAYFLY_PROBER_SIGNING_APIS', 'v2,v1')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = apis.filter((a) => a !== 'v1' && a !== 'v2');
  if (bad.length > 0)
    problems.push(`MAYFLY_PROBER_SIGNING_APIS: unknown API ${bad.join(', ')} (v1, v2)`);
  const grpcAddress = env.MAYFLY_PROBER_GRPC_ADDRESS?.trim() || undefined;
  if (grpcAddress && !/^[^\s/]+:\d+$/.test(grpcAddress))
    problems.push(
      `MAYFLY_PROBER_GRPC_ADDRESS: expected host:port, got ${JSON.stringify(grpcAddress)}`,
    );
  const config: ProberConfig = {
    url,
    tokenFile: text('MAYFLY_PROBER_TOKEN_FILE', DEFAULT_TOKEN_FILE),
    intervalSeconds: int('MAYFLY_PROBER_INTERVAL_SECONDS', 30, 1, 86400),
    timeoutMs: int('MAYFLY_PROBER_TIMEOUT_MS', 10_000, 100, 120_000),
    metricsHost: text('MAYFLY_PROBER_METRICS_HOST', '0.0.0.0'),
    metricsPort: int('MAYFLY_PROBER_METRICS_PORT', 2113, 0, 65535),
    signingApis: [...new Set(apis.filter((a): a is SigningApi => a === 'v1' || a === 'v2'))],
    trustedRootsFile: env.MAYFLY_PROBER_TRUSTED_ROOTS?.trim() || undefined,
    grpcAddress,
    grpcTls: ['1', 'true', 'on', 'yes'].includes(
      (env.MAYFLY_PROBER_GRPC_TLS ?? '').trim().toLowerCase(),
    ),
    grpcCaFile: env.MAYFLY_PROBER_GRPC_CA_FILE?.trim() || undefined,
    logLevel: text('MAYFLY_PROBER_LOG_LEVEL', 'info'),
  };
  if (problems.length > 0) throw new ProberConfigError(problems);
  return config;
}
