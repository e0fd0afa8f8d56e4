import cluster from 'node:cluster';
import { createLogger, type Logger } from '../common/logger';
import { ConfigError, configPathFromArgs, loadServerConfig } from './config/loader';
import {
  IdentityConfigError,
  loadIdentityConfig,
  type IdentityConfig,
} from './config/identity-config';
import type { ServerConfig } from './config/schema';
import { createApp, listen } from './app';
import {
  caFromPrimary,
  clusterWorkerId,
  isClusterWorker,
  runPrimary,
  stopAcceptingOnRequest,
  workerCount,
} from './cluster';
import { drain, drainable, onStopSignals } from './lifecycle';
import { reportToPrimary } from './metrics/cluster';
import { LimitsFileError } from './ratelimit/limits-file';
import { CaLoadError } from '../common/signer/file-signer';
import { startDevIssuer } from '../dev-issuer/dev-issuer';

/**
 * Process entry: load and validate config (fail fast), build, listen, and on SIGTERM
 * drain: report not-ready, stop accepting, finish in-flight requests within the grace
 * period, exit 0. A second signal exits at once.
 */

async function withDevIssuer(config: ServerConfig, logger: Logger) {
  const issuer = await startDevIssuer({ host: config.devIssuer.host, port: config.devIssuer.port });
  logger.warn(
    { issuer: issuer.url, tokenEndpoint: `${issuer.url}/token?email=you@example.com` },
    'DEVELOPMENT OIDC ISSUER ENABLED: anybody who can reach it can mint identities; never enable in production',
  );
  // Added to every identity config read, the first and each reloaded one.
  const transform = (identity: IdentityConfig): IdentityConfig => {
    const oidcIssuers = new Map(identity.oidcIssuers);
    oidcIssuers.set(issuer.url, issuer.issuerConfig);
    return { ...identity, oidcIssuers };
  };
  return { transform, close: () => issuer.close() };
}

async function main(): Promise<void> {
  let config: ServerConfig;
  try {
    config = loadServerConfig({ configPath: configPathFromArgs(process.argv.slice(2)) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mayfly: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const inWorker = isClusterWorker();
  const baseLogger = createLogger(config.logLevel);
  const logger = inWorker ? baseLogger.child({ worker: clusterWorkerId() }) : baseLogger;
  try {
    // Read here to fail fast with exit status 2; the app reads (and reloads) it itself.
    loadIdentityConfig(config.identityConfig);
  } catch (err) {
    if (err instanceof IdentityConfigError) {
      logger.fatal({ problems: err.problems }, 'invalid identity config');
      process.stderr.write(`mayfly: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const workers = workerCount(config);
  if (!inWorker && workers > 1) {
    if (config.devIssuer.enabled) {
      // Each worker would mint with keys of its own: tokens would verify on one worker only.
      process.stderr.write('mayfly: MAYFLY_DEV_ISSUER cannot be used with MAYFLY_WORKERS > 1\n');
      process.exit(2);
    }
    // SIGHUP reloads the identity config: each worker reloads its own.
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
    });
    await runPrimary(config, logger);
    return;
  }
  // A worker signs with the ephemeral CA its primary made (a file CA it reads itself).
  const ephemeralCa = inWorker ? await caFromPrimary() : null;
  let closeDevIssuer: (() => Promise<void>) | undefined;
  let identityTransform: ((identity: IdentityConfig) => IdentityConfig) | undefined;
  if (config.devIssuer.enabled) {
    const dev = await withDevIssuer(config, logger);
    identityTransform = dev.transform;
    closeDevIssuer = dev.close;
  }
  let app;
  try {
    app = await createApp(config, logger, {
      ...(identityTransform ? { identityTransform } : {}),
      ...(ephemeralCa ? { ephemeralCa } : {}),
    });
  } catch (err) {
    if (err instanceof LimitsFileError) {
      logger.fatal({ problems: err.problems }, 'invalid rate limits file');
      process.stderr.write(`mayfly: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof CaLoadError) {
      logger.fatal({ reason: err.message }, 'the CA could not be loaded');
      process.stderr.write(`mayfly: the CA could not be loaded: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const api = await listen(app.api, config.host, config.port);
  api.server.requestTimeout = 60_000;
  api.server.headersTimeout = 20_000;
  api.server.keepAliveTimeout = 30_000;
  // Tracks the API's connections from the first one, for a drain that cuts no request.
  drainable(api.server);
  // In a cluster the primary serves the workers' aggregated metrics.
  const metrics = inWorker
    ? undefined
    : await listen(app.metricsApp, config.metricsHost, config.metricsPort);
  if (metrics) drainable(metrics.server);
  if (inWorker) reportToPrimary(app.metrics.registry);
  logger.info(
    { host: config.host, port: api.port, metricsPort: metrics?.port, ca: config.ca.type },
    'mayfly listening',
  );
  if (metrics) {
    process.stdout.write(
      `mayfly listening on http://${config.host}:${api.port} (metrics on port ${metrics.port})\n`,
    );
  }
  void app.identity.warmUp();
  // SIGHUP re-reads the identity config; a bad file is logged and the old one keeps serving.
  const reloadable = app;
  process.on('SIGHUP', () => {
    reloadable.identity.reload('sighup');
  });

  const running = app;
  onStopSignals(
    logger,
    (signal) => {
      logger.info({ signal }, 'stop signal');
      void drain({
        logger,
        delayMs: config.shutdownDelayMs,
        graceMs: config.shutdownGraceMs,
        idleMs: config.shutdownIdleMs,
        setReady: (ready) => running.setReady(ready),
        servers: [api.server],
        lateServers: metrics ? [metrics.server] : [],
        close: async () => {
          await running.close();
          await closeDevIssuer?.();
        },
      }).then(() => process.exit(0));
    },
    // A worker drains when its primary tells it to (SIGTERM); Ctrl-C reaches it too.
    inWorker ? { signals: ['SIGTERM'] } : {},
  );
  if (inWorker) {
    process.on('SIGINT', () => undefined);
    stopAcceptingOnRequest(() => void drainable(api.server).stopAccepting());
  }
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `mayfly: unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}\n`,
  );
});

main().catch((err: unknown) => {
  process.stderr.write(
    `mayfly: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
