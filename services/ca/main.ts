import type { Server } from 'node:http';
import { createLogger, type Logger } from './common/logger';
import { ConfigError, configPathFromArgs, loadServerConfig } from './config/loader';
import {
  IdentityConfigError,
  loadIdentityConfig,
  type IdentityConfig,
} from './config/identity-config';
import type { ServerConfig } from './config/schema';
import { createApp, listen } from './app';
import { CaLoadError } from './signer/file-signer';
import { startDevIssuer } from '../dev-issuer/dev-issuer';

/**
 * Process entry: load and validate config (fail fast), build, listen, and on SIGTERM
 * drain: report not-ready, stop accepting, finish in-flight requests within the grace
 * period, exit 0. A second signal exits at once.
 */

async function withDevIssuer(config: ServerConfig, identity: IdentityConfig, logger: Logger) {
  const issuer = await startDevIssuer({ host: config.devIssuer.host, port: config.devIssuer.port });
  logger.warn(
    { issuer: issuer.url, tokenEndpoint: `${issuer.url}/token?email=you@example.com` },
    'DEVELOPMENT OIDC ISSUER ENABLED: anybody who can reach it can mint identities; never enable in production',
  );
  const oidcIssuers = new Map(identity.oidcIssuers);
  oidcIssuers.set(issuer.url, issuer.issuerConfig);
  return { identity: { ...identity, oidcIssuers }, close: () => issuer.close() };
}

function closeServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    // Idle keep-alive connections would otherwise hold close() open until they time out.
    server.closeIdleConnections();
  });
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
  const logger = createLogger(config.logLevel);
  let identity: IdentityConfig;
  try {
    identity = loadIdentityConfig(config.identityConfig);
  } catch (err) {
    if (err instanceof IdentityConfigError) {
      logger.fatal({ problems: err.problems }, 'invalid identity config');
      process.stderr.write(`mayfly: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let closeDevIssuer: (() => Promise<void>) | undefined;
  if (config.devIssuer.enabled) {
    const dev = await withDevIssuer(config, identity, logger);
    identity = dev.identity;
    closeDevIssuer = dev.close;
  }
  let app;
  try {
    app = await createApp(config, logger, { identityConfig: identity });
  } catch (err) {
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
  const metrics = await listen(app.metricsApp, config.metricsHost, config.metricsPort);
  logger.info(
    { host: config.host, port: api.port, metricsPort: metrics.port, ca: config.ca.type },
    'mayfly listening',
  );
  process.stdout.write(
    `mayfly listening on http://${config.host}:${api.port} (metrics on port ${metrics.port})\n`,
  );
  void app.identity.warmUp();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, 'draining');
    app.setReady(false);
    void Promise.all([
      closeServer(api.server, config.shutdownGraceMs),
      closeServer(metrics.server, 1000),
    ])
      .then(() => closeDevIssuer?.())
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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
