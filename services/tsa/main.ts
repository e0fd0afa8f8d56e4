import type { Server } from 'node:http';
import { createLogger } from '../common/logger';
import { TsaChainError } from './certificates';
import { loadTsaConfig, TsaConfigError, type TsaConfig } from './config';
import { createTsaApp, listen } from './app';

/**
 * Process entry of the timestamp authority: read the settings (fail fast, exit 2), make or
 * load the signer (a chain that fails the TSA profile stops the start), listen, and on
 * SIGTERM drain: not ready, wait the delay, stop accepting, let requests finish, exit 0.
 */

function close(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

async function main(): Promise<void> {
  let config: TsaConfig;
  try {
    config = loadTsaConfig();
  } catch (err) {
    if (err instanceof TsaConfigError) {
      process.stderr.write(`mayfly-tsa: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel).child({ deployable: 'tsa' });
  let app;
  try {
    app = await createTsaApp(config, logger);
  } catch (err) {
    if (err instanceof TsaChainError) {
      logger.fatal({ reason: err.message }, 'the TSA signer could not be loaded');
      process.stderr.write(`mayfly-tsa: the TSA signer could not be loaded: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const api = await listen(app.handler, config.host, config.port);
  const metrics = await listen(app.metricsHandler, config.metricsHost, config.metricsPort);
  logger.info(
    { host: config.host, port: api.port, metricsPort: metrics.port, signer: config.signer },
    'mayfly TSA listening',
  );
  process.stdout.write(
    `mayfly TSA listening on http://${config.host}:${api.port} (metrics on port ${metrics.port})\n`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'stop signal: draining');
    app.setReady(false);
    setTimeout(() => {
      void close(api.server, config.shutdownGraceMs)
        .then(() => close(metrics.server, 1000))
        .then(() => app.close())
        .then(() => {
          logger.info('stopped');
          process.exit(0);
        });
    }, config.shutdownDelayMs);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `mayfly-tsa: unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}\n`,
  );
});

main().catch((err: unknown) => {
  process.stderr.write(
    `mayfly-tsa: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
