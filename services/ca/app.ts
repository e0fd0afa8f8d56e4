import type { Server } from 'node:http';
import express from 'express';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from './common/clock';
import type { Logger } from './common/logger';
import { loadIdentityConfig, type IdentityConfig } from './config/identity-config';
import type { ServerConfig } from './config/schema';
import { createApiApp } from './http/app';
import { IssuerPool } from './identity/issuer-pool';
import type { FetchLike } from './identity/oidc-verifier';
import { CertificateAuthority } from './issuance/certificate-authority';
import { createEphemeralChain } from './issuance/ca-certificates';
import { createMetrics, type Metrics } from './metrics/metrics';
import { AlgorithmPolicy } from './pop/algorithms';
import { RegistrationAuthority } from './ra/registration-authority';
import { loadFileSigner } from './signer/file-signer';
import { generateEphemeralKey, type CaSigner } from './signer/signer';

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
  readonly discoveryRetryMs?: number;
}

export interface MayflyApp {
  readonly api: express.Express;
  readonly metricsApp: express.Express;
  readonly metrics: Metrics;
  readonly ca: CertificateAuthority;
  readonly identity: IssuerPool;
  /** Turns readiness off, e.g. while draining. */
  setReady(ready: boolean): void;
}

export async function createSigner(config: ServerConfig, clock: Clock): Promise<CaSigner> {
  if (config.ca.type === 'file') {
    return loadFileSigner(
      { cert: config.ca.cert!, key: config.ca.key!, keyPasswordFile: config.ca.keyPasswordFile },
      clock,
    );
  }
  return createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), clock);
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
  const signer = overrides.signer ?? (await createSigner(config, clock));
  const ca = new CertificateAuthority(signer);
  const identity = new IssuerPool(
    overrides.identityConfig ?? loadIdentityConfig(config.identityConfig),
    {
      discoveryTimeoutMs: config.oidc.discoveryTimeoutMs,
      jwksCooldownMs: config.oidc.jwksCooldownMs,
      maxTokenBytes: config.oidc.maxTokenBytes,
      clock,
      logger,
      ...(overrides.fetch ? { fetch: overrides.fetch } : {}),
      ...(overrides.discoveryRetryMs === undefined
        ? {}
        : { discoveryRetryMs: overrides.discoveryRetryMs }),
      onFailure: (reason) => metrics.tokenFailures.inc({ reason }),
    },
  );
  const ra = new RegistrationAuthority({
    identity,
    ca,
    algorithms: new AlgorithmPolicy(config.clientSigningAlgorithms),
    clock,
    lifetimeSeconds: config.certificateLifetimeSeconds,
    logger,
  });
  let ready = true;
  const api = createApiApp({
    ra,
    trustBundle: () => ca.trustBundle(),
    issuers: () => identity.describe(),
    health: { ready: () => ready },
    metrics,
    logger,
    maxRequestBytes: config.maxRequestBytes,
  });
  const metricsApp = express();
  metricsApp.disable('x-powered-by');
  metricsApp.get('/metrics', (_req, res, next) => {
    metrics.registry
      .metrics()
      .then((text) => {
        res.setHeader('Content-Type', metrics.registry.contentType);
        res.end(text);
      })
      .catch(next);
  });
  return { api, metricsApp, metrics, ca, identity, setReady: (r) => (ready = r) };
}

/** Listens and resolves with the bound port (port 0 picks a free one). */
export function listen(
  app: express.Express,
  host: string,
  port: number,
): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once('error', reject);
    server.once('listening', () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : port });
    });
  });
}
