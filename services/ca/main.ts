import cluster from 'node:cluster';
import { createLogger } from '../common/logger';
import { ConfigError, configPathFromArgs, loadServerConfig } from './config/loader';
import { IdentityConfigError } from './config/identity-config';
import { loadIdentityConfig } from './identity/identity-config';
import type { ServerConfig } from './config/schema';
import { createApp, grpcSettings, listen } from './app';
import { CtLogError } from './issuance/ct-logs';
import type { RunningGrpcServer } from './grpc/server';
import {
  caFromPrimary,
  clusterWorkerId,
  isClusterWorker,
  runPrimary,
  stopAcceptingOnRequest,
  planWorkers,
  reportGrpcListening,
} from './cluster';
import { drain, drainable, onStopSignals } from './lifecycle';
import { reportToPrimary } from './metrics/cluster';
import { LimitsFileError } from '../common/ratelimit/limits-file';
import { CaLoadError } from '../common/signer/file-signer';

/**
 * Process entry: load and validate config (fail fast), build, listen, and on SIGTERM
 * drain: report not-ready, stop accepting, finish in-flight requests within the grace
 * period, exit 0. A second signal exits at once.
 */

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
  // How many processes serve, and why (an explicit MAYFLY_WORKERS, else the usable cores
  // outside Kubernetes); the rest of the service sees the resolved count.
  const plan = planWorkers(config.workers, process.env);
  config = { ...config, workers: plan.count };
  if (!inWorker && plan.count > 1) {
    // SIGHUP reloads the identity config: each worker reloads its own.
    process.on('SIGHUP', () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
    });
    await runPrimary(config, logger, plan);
    return;
  }
  // A worker signs with the ephemeral CA its primary made (a file CA it reads itself).
  const ephemeralCa = inWorker ? await caFromPrimary() : null;
  let app;
  try {
    app = await createApp(config, logger, ephemeralCa ? { ephemeralCa } : {});
  } catch (err) {
    if (err instanceof LimitsFileError) {
      logger.fatal({ problems: err.problems }, 'invalid rate limits file');
      process.stderr.write(`mayfly: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof CtLogError) {
      logger.fatal({ reason: err.message }, 'the CT log configuration is unusable');
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
  // Fulcio's gRPC API on its own port, unless turned off.
  let grpc: RunningGrpcServer | undefined;
  if (config.grpc.port !== 'off') {
    // Loaded only when the gRPC port is on: @grpc/grpc-js, the proto loader and reflection
    // are some 250 modules and 9 MB of resident memory (bench/results/memory.md).
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { startGrpcServer } = require('./grpc/server') as typeof import('./grpc/server');
    const { TlsLoadError } = require('./grpc/tls') as typeof import('./grpc/tls');
    /* eslint-enable @typescript-eslint/no-require-imports */
    try {
      grpc = await startGrpcServer(app.grpc, grpcSettings(config, config.grpc.port), logger);
    } catch (err) {
      if (err instanceof TlsLoadError) {
        logger.fatal({ reason: err.message }, 'the gRPC TLS files could not be loaded');
        process.stderr.write(`mayfly: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
  }
  // In a cluster the primary serves the workers' aggregated metrics.
  const metrics = inWorker
    ? undefined
    : await listen(app.metricsApp, config.metricsHost, config.metricsPort);
  if (metrics) drainable(metrics.server);
  if (inWorker) reportToPrimary(app.metrics.registry);
  if (inWorker && grpc) reportGrpcListening(grpc.port, grpc.tls);
  logger.info(
    {
      host: config.host,
      port: api.port,
      grpcPort: grpc?.port,
      grpcTls: grpc?.tls,
      metricsPort: metrics?.port,
      ca: config.ca.type,
      ...(inWorker ? {} : { workers: 1, workersReason: plan.reason }),
    },
    'mayfly listening',
  );
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
        // The gRPC listener drains beside the HTTP one: it stops taking calls (GOAWAY) and
        // waits for those in flight within the same grace period.
        servers: [api.server],
        selfDraining: grpc ? [grpc.drainable] : [],
        lateServers: metrics ? [metrics.server] : [],
        close: () => running.close(),
      }).then(() => process.exit(0));
    },
    // A worker drains when its primary tells it to (SIGTERM); Ctrl-C reaches it too.
    inWorker ? { signals: ['SIGTERM'] } : {},
  );
  if (inWorker) {
    process.on('SIGINT', () => undefined);
    stopAcceptingOnRequest(() => void drainable(api.server).stopAccepting());
  }
  // Printed last: a supervisor that signals as soon as it reads this line finds the
  // handlers in place (stdout to a pipe is written at once, before the rest of this turn).
  if (metrics) {
    // One write, so that a reader of the first line has the second too.
    process.stdout.write(
      `mayfly listening on http://${config.host}:${api.port} (metrics on port ${metrics.port})\n` +
        (grpc
          ? `mayfly gRPC listening on ${config.grpc.host}:${grpc.port} (${grpc.tls ? 'tls' : 'plaintext'})\n`
          : '') +
        `mayfly: one process, no cluster (${plan.reason})\n`,
    );
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
