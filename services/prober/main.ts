import pino from 'pino';
import { Registry } from 'prom-client';
import { ProberConfigError, loadProberConfig, type ProberConfig } from './config';
import { createProberMetrics } from './metrics';
import { Prober } from './prober';
import { metricsServer } from './server';

/**
 * The synthetic prober: a second deployable that asks mayfly for a certificate every
 * interval, the way a client would, and exports what it saw on its metrics port — the
 * black-box view of the SLO. Configured from MAYFLY_PROBER_* variables (see the README).
 */

async function main(): Promise<void> {
  let config: ProberConfig;
  try {
    config = loadProberConfig(process.env);
  } catch (err) {
    if (err instanceof ProberConfigError) {
      process.stderr.write(`mayfly-prober: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino({
    level: config.logLevel,
    base: { service: 'mayfly-prober' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization'],
      censor: '[redacted]',
    },
  });
  const metrics = createProberMetrics(new Registry(), {
    version: process.env.npm_package_version ?? 'dev',
  });
  const server = metricsServer(metrics.registry);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.metricsPort, config.metricsHost, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.metricsPort;
  const prober = new Prober(config, { metrics, logger });
  logger.info(
    {
      url: config.url,
      intervalSeconds: config.intervalSeconds,
      apis: config.signingApis,
      grpc: config.grpcAddress,
      metricsPort: port,
    },
    'mayfly prober started',
  );
  process.stdout.write(`mayfly-prober probing ${config.url} (metrics on port ${port})\n`);
  prober.start();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'stopping');
    void prober
      .stop()
      .then(() => new Promise<void>((resolve) => server.close(() => resolve())))
      .then(() => process.exit(0));
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(
    `mayfly-prober: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
});
