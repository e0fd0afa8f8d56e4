import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Registry } from 'prom-client';
import { AuditLog, createAuditLogger, type AuditLogger } from './audit/audit-log';
import { systemClock, type Clock } from '../common/clock';
import type { Logger } from '../common/logger';
import type { IdentityConfig } from './config/identity-config';
import type { ServerConfig } from './config/schema';
import type { GrpcServerDeps, GrpcSettings } from './grpc/server';
import { createApiHandler, type ApiHandler } from './http/fast-path';
import type { ReadinessCheck } from './http/health';
import { createMetricsApp } from './http/metrics-app';
import { IdentityService } from './identity/identity-service';
import type { FetchLike } from './identity/oidc-verifier';
import {
  CertificateAuthority,
  type CertificateAuthorityOptions,
} from './issuance/certificate-authority';
import { CtLogs } from './issuance/ct-logs';
import { createEphemeralChain } from './issuance/ephemeral-chain';
import { createMetrics, type CaChainValidity, type Metrics } from './metrics/metrics';
import { AlgorithmPolicy } from './pop/algorithms';
import { RegistrationAuthority } from './ra/registration-authority';
import { createRateLimiting } from './rate-limiting';
import {
  CaLoadError,
  loadFileSigner,
  parseChain,
  validateChainShape,
} from '../common/signer/file-signer';
import { ReloadingFileSource } from '../common/signer/reloading-source';
import {
  fixedSource,
  generateEphemeralKey,
  signerFromTransfer,
  type CaSigner,
  type EphemeralCaTransfer,
  type SignerSource,
} from '../common/signer/signer';

/**
 * The composition root: the only place that wires concrete parts together. Everything a
 * test may want to replace (clock, fetch, signer, identity config) comes in through
 * `AppOverrides`.
 */

export interface AppOverrides {
  readonly clock?: Clock;
  readonly fetch?: FetchLike;
  readonly signer?: CaSigner;
  readonly identityConfig?: IdentityConfig;
  /** Name resolution for issuers with their own HTTP client (CACert, in-cluster). */
  readonly lookup?: LookupFunction;
  readonly discoveryRetryMs?: number;
  /** The ephemeral CA a cluster primary made and handed to this worker. */
  readonly ephemeralCa?: EphemeralCaTransfer;
  /** Where audit lines go (default: config.auditLogFile, else stdout). */
  readonly auditLogger?: AuditLogger;
}

export interface MayflyApp {
  /** The API: node:http for the signing routes, Express for the rest (http/fast-path.ts). */
  readonly api: ApiHandler;
  /** The metrics port: /metrics, /healthz, /readyz (plain node:http). */
  readonly metricsApp: RequestListener;
  /** What the gRPC listener serves with (grpc/server.ts startGrpcServer): the same RA. */
  readonly grpc: GrpcServerDeps;
  readonly metrics: Metrics;
  readonly ca: CertificateAuthority;
  /** The signing flow for any transport (HTTP is one; it reports its own decisions). */
  readonly ra: RegistrationAuthority;
  /** The identity config in service; reload() re-reads its file (SIGHUP). */
  readonly identity: IdentityService;
  /** Turns readiness off, e.g. while draining. */
  setReady(ready: boolean): void;
  /** Whether the app reports ready (false while draining). */
  isReady(): boolean;
  /** Releases what the app holds open (the Redis connection, the limits-file timer). */
  close(): Promise<void>;
}

/** Default re-read period of the file CA besides watching it. */
export const DEFAULT_CA_RELOAD_INTERVAL_MS = 30_000;

/**
 * An ephemeral CA made once by a cluster primary: the transfer goes to every worker so
 * that all of them sign with, and publish, the same CA.
 */
export async function createEphemeralCaForWorkers(
  clock: Clock = systemClock,
): Promise<EphemeralCaTransfer> {
  const intermediate = generateEphemeralKey();
  const signer = await createEphemeralChain(generateEphemeralKey(), intermediate, clock);
  return intermediate.exportForWorkers(signer.chain);
}

/**
 * The CA's signing state: the file CA (watched and reloaded unless reloading is off), the
 * PKCS#11 CA, or the ephemeral one. close() stops watching (and closes the HSM sessions).
 */
export async function createSignerSource(
  config: ServerConfig,
  clock: Clock,
  logger: Logger,
  metrics: Metrics,
  ephemeral?: EphemeralCaTransfer,
): Promise<CaSource> {
  if (config.ca.type === 'pkcs11') return createPkcs11Source(config, clock, logger, metrics);
  if (config.ca.type !== 'file') {
    const signer = ephemeral ? signerFromTransfer(ephemeral) : await createSigner(config, clock);
    observeCa(metrics, signer.chain, 1);
    return { source: fixedSource(signer), close: () => undefined };
  }
  const intervalMs = config.ca.reloadIntervalMs ?? DEFAULT_CA_RELOAD_INTERVAL_MS;
  let loaded = false;
  const source = new ReloadingFileSource(
    {
      cert: config.ca.cert!,
      key: config.ca.key!,
      keyPasswordFile: config.ca.keyPasswordFile,
      nextCert: config.ca.nextCert,
      previousCert: config.ca.previousCert,
    },
    {
      clock,
      logger,
      intervalMs,
      onReload: (result, state) => {
        // The first load is the start, not a reload.
        if (loaded || result === 'refused') metrics.caReloads.inc({ result });
        loaded = true;
        observeCa(metrics, state.signer.chain, 1 + state.publishedChains.length);
      },
    },
  );
  if (intervalMs > 0) source.start();
  return { source, close: () => source.close() };
}

/** Where the CA signs from, what to release at the end, and whether it can sign now. */
export interface CaSource {
  readonly source: SignerSource;
  close(): void | Promise<void>;
  /** False while the key cannot be reached (an HSM that dropped its sessions). */
  readonly healthy?: () => boolean;
}

function readPin(path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new CaLoadError(
      `cannot read the PKCS#11 PIN file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/**
 * The `pkcs11` CA: the chain (and the next and previous chains) from files, watched and
 * reloaded like the file CA's; the key in the token, found by label or by the issuing
 * certificate's key identifier and proven by a signature at start and at every reload.
 */
function createPkcs11Source(
  config: ServerConfig,
  clock: Clock,
  logger: Logger,
  metrics: Metrics,
): CaSource {
  const settings = config.ca.pkcs11!;
  // Loaded only for a PKCS#11 CA: the native pkcs11js binding is of no use to the others.
  const { Pkcs11Pool } =
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('../common/signer/pkcs11/pkcs11-signer') as typeof import('../common/signer/pkcs11/pkcs11-signer');
  const pool = new Pkcs11Pool({
    module: settings.module!,
    tokenLabel: settings.tokenLabel!,
    pin: readPin(settings.pinFile!),
    sessions: settings.sessions,
    maxQueue: settings.maxQueue,
    rsaPadding: settings.rsaPadding,
    reconnectIntervalMs: settings.reconnectIntervalMs,
    logger,
  });
  const intervalMs = config.ca.reloadIntervalMs ?? DEFAULT_CA_RELOAD_INTERVAL_MS;
  let loaded = false;
  let source: ReloadingFileSource;
  try {
    source = new ReloadingFileSource(
      {
        cert: config.ca.cert!,
        nextCert: config.ca.nextCert,
        previousCert: config.ca.previousCert,
      },
      {
        clock,
        logger,
        intervalMs,
        signerFrom: ({ certPem }) => {
          const chain = parseChain(certPem);
          validateChainShape(chain, clock);
          return pool.signerFor(
            chain.map((c) => new Uint8Array(c.raw)),
            settings.keyLabel,
          );
        },
        onReload: (result, state) => {
          if (loaded || result === 'refused') metrics.caReloads.inc({ result });
          loaded = true;
          observeCa(metrics, state.signer.chain, 1 + state.publishedChains.length);
        },
      },
    );
  } catch (err) {
    void pool.close();
    throw err;
  }
  if (intervalMs > 0) source.start();
  return {
    source,
    close: async () => {
      source.close();
      await pool.close();
    },
    healthy: () => pool.healthy(),
  };
}

function observeCa(metrics: Metrics, chain: readonly Uint8Array[], chains: number): void {
  const issuing = chain[0];
  if (issuing) metrics.caNotAfter.set(Date.parse(new X509Certificate(issuing).validTo) / 1000);
  metrics.caPublishedChains.set(chains);
}

export async function createSigner(config: ServerConfig, clock: Clock): Promise<CaSigner> {
  if (config.ca.type === 'pkcs11') {
    throw new CaLoadError('the pkcs11 CA is a source (createSignerSource), not a fixed signer');
  }
  if (config.ca.type === 'file') {
    return loadFileSigner(
      { cert: config.ca.cert!, key: config.ca.key!, keyPasswordFile: config.ca.keyPasswordFile },
      clock,
    );
  }
  return createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), clock);
}

/** The CT logs of the config (none: certificates without SCT, as Fulcio with --ct-log-url=""). */
export function ctOptions(
  config: ServerConfig,
  metrics: Metrics,
): Pick<CertificateAuthorityOptions, 'ct' | 'ctObserver'> {
  const logs = [
    ...(config.ct.logUrl
      ? [
          {
            url: config.ct.logUrl,
            publicKeyFile: config.ct.logPublicKeyFile ?? '',
            ...(config.ct.logTemporal ? { temporal: config.ct.logTemporal } : {}),
          },
        ]
      : []),
    ...(config.ct.logs ?? []),
  ];
  if (logs.length === 0) return {};
  const ct = new CtLogs(
    { logs, minScts: config.ct.minScts, timeoutMs: config.ct.timeoutMs },
    {
      submitted(log, result, seconds, reason) {
        metrics.ctSubmissionDuration.observe({ log, result }, seconds);
        if (reason) metrics.ctErrors.inc({ log, reason });
      },
      noEligibleLog: () => metrics.ctNoEligibleLog.inc(),
    },
  );
  metrics.trackCtLogs(() => ct.state());
  return { ct, ctObserver: { embedded: (log) => metrics.ctSctsEmbedded.inc({ log }) } };
}

export async function createApp(
  config: ServerConfig,
  logger: Logger,
  overrides: AppOverrides = {},
): Promise<MayflyApp> {
  const clock = overrides.clock ?? systemClock;
  const metrics = createMetrics(new Registry(), {
    version: process.env.npm_package_version ?? 'dev',
  });
  let ca: CertificateAuthority;
  let closeCa = (): void | Promise<void> => undefined;
  let signerHealthy = (): boolean => true;
  const audit = new AuditLog(
    overrides.auditLogger ?? createAuditLogger({ file: config.auditLogFile }),
  );
  const caOptions = {
    observer: {
      signed: (result: 'ok' | 'error', seconds: number) =>
        metrics.signerDuration.observe({ result }, seconds),
    },
    signTimeoutMs: config.ca.signTimeoutMs,
    audit,
    ...ctOptions(config, metrics),
  };
  if (overrides.signer) {
    ca = new CertificateAuthority(overrides.signer, caOptions);
    observeCa(metrics, overrides.signer.chain, 1);
  } else {
    const made = await createSignerSource(config, clock, logger, metrics, overrides.ephemeralCa);
    ca = new CertificateAuthority(made.source, caOptions);
    closeCa = () => made.close();
    if (made.healthy) signerHealthy = made.healthy;
  }
  metrics.trackCaChains(
    () => caChainValidity(ca.trustBundle()),
    () => clock.now().getTime(),
  );
  // The identity config is read from its file (and reloaded when it changes) unless a
  // test hands one in.
  const fromFile = overrides.identityConfig === undefined;
  const identity = new IdentityService(overrides.identityConfig, {
    ...(fromFile
      ? { path: config.identityConfig, reloadIntervalMs: config.identityConfigReloadMs }
      : {}),
    kubernetes: {
      caFile: config.oidc.kubernetesCaFile,
      tokenFile: config.oidc.kubernetesTokenFile,
    },
    ...(overrides.lookup ? { lookup: overrides.lookup } : {}),
    discoveryTimeoutMs: config.oidc.discoveryTimeoutMs,
    jwksCooldownMs: config.oidc.jwksCooldownMs,
    maxTokenBytes: config.oidc.maxTokenBytes,
    clock,
    logger,
    ...(overrides.fetch ? { fetch: overrides.fetch } : {}),
    ...(overrides.discoveryRetryMs === undefined
      ? {}
      : { discoveryRetryMs: overrides.discoveryRetryMs }),
    onFailure: (reason, issuer) => metrics.tokenFailures.inc({ reason, issuer }),
    onFetch: (issuer, document, result, seconds) =>
      metrics.oidcFetchDuration.observe({ issuer, document, result }, seconds),
  });
  if (fromFile && config.identityConfigReloadMs > 0) identity.start();
  const rateLimiting = createRateLimiting(config, { clock, logger, metrics });
  const ra = new RegistrationAuthority({
    identity,
    audit,
    metrics,
    ...(rateLimiting ? { rateLimiting } : {}),
    ca,
    algorithms: new AlgorithmPolicy(config.clientSigningAlgorithms),
    clock,
    lifetimeSeconds: config.certificateLifetimeSeconds,
    logger,
    stageBatching: config.stageBatching,
  });
  let ready = true;
  const health = {
    ready: () => ready,
    checks: () => readinessChecks(ca, clock, signerHealthy),
  };
  const api = createApiHandler({
    ra,
    trustBundle: () => ca.trustBundle(),
    issuers: () => identity.describe(),
    health,
    metrics,
    logger,
    maxRequestBytes: config.maxRequestBytes,
    trustedProxies: config.trustedProxies,
  });
  const metricsApp = createMetricsApp({ registry: metrics.registry, health });
  const grpc: GrpcServerDeps = {
    ra,
    trustBundle: () => ca.trustBundle(),
    issuers: () => identity.describe(),
    // The same readiness as /readyz: not ready while draining or when the CA is unusable.
    ready: () => ready && readinessChecks(ca, clock, signerHealthy).every((check) => check.ok),
    metrics,
    logger,
    trustedProxies: config.trustedProxies,
  };
  return {
    api,
    metricsApp,
    grpc,
    metrics,
    ca,
    ra,
    identity,
    setReady: (r) => (ready = r),
    isReady: () => ready,
    close: async () => {
      await closeCa();
      identity.close();
      await rateLimiting?.close();
    },
  };
}

/**
 * Readiness besides draining: the config was loaded (it was, or there would be no app), the
 * signer is usable (its issuing certificate is within its validity, so leaves can be
 * issued) and the trust bundle is loaded (every published chain has certificates).
 */
function readinessChecks(
  ca: CertificateAuthority,
  clock: Clock,
  signerHealthy: () => boolean,
): ReadinessCheck[] {
  const now = clock.now().getTime();
  let signer = false;
  let trustBundle = false;
  try {
    signer = ca.notAfterLimit.getTime() > now && signerHealthy();
  } catch {
    signer = false;
  }
  try {
    const chains = ca.trustBundle();
    trustBundle = chains.length > 0 && chains.every((chain) => chain.length > 0);
  } catch {
    trustBundle = false;
  }
  return [
    { name: 'config', ok: true },
    { name: 'signer', ok: signer },
    { name: 'trust_bundle', ok: trustBundle },
  ];
}

/** Each trust-bundle chain's earliest expiry, for the CA expiry gauge (chain 0 signs). */
export function caChainValidity(bundle: readonly (readonly Uint8Array[])[]): CaChainValidity[] {
  return bundle.flatMap((chain, index) => {
    const certificates = chain.map((der) => new X509Certificate(der));
    const first = certificates[0];
    if (!first) return [];
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(first.subject)?.[1];
    return [
      {
        role: index === 0 ? ('signing' as const) : ('published' as const),
        index,
        subject: cn ?? first.subject.replace(/\n/g, ', '),
        notAfter: new Date(Math.min(...certificates.map((c) => Date.parse(c.validTo)))),
      },
    ];
  });
}

/** The gRPC listener's settings from the config (its port is not `off`). */
export function grpcSettings(config: ServerConfig, port: number): GrpcSettings {
  const { grpc } = config;
  return {
    host: grpc.host,
    port,
    // A request must not get through over gRPC what HTTP would refuse for its size.
    maxReceiveBytes: grpc.maxMessageBytes ?? config.maxRequestBytes,
    maxSendBytes: 4 * 1024 * 1024,
    idleTimeoutMs: grpc.idleTimeoutMs,
    keepaliveTimeMs: grpc.keepaliveTimeMs,
    keepaliveTimeoutMs: grpc.keepaliveTimeoutMs,
    maxConcurrentStreams: grpc.maxConcurrentStreams,
    tls:
      grpc.tlsCert && grpc.tlsKey
        ? { cert: grpc.tlsCert, key: grpc.tlsKey, reloadIntervalMs: grpc.tlsReloadMs }
        : undefined,
  };
}

/** Listens and resolves with the bound port (port 0 picks a free one). */
export function listen(
  app: RequestListener,
  host: string,
  port: number,
): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer(app).listen(port, host);
    server.once('error', reject);
    server.once('listening', () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : port });
    });
  });
}
