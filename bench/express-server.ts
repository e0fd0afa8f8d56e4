import { createApp, listen } from '../services/ca/app';
import { createLogger } from '../services/common/logger';
import { loadServerConfig } from '../services/ca/config/loader';

/**
 * mayfly as main.ts builds it, served by the Express app alone (the signing routes through
 * Express's router and middleware instead of the node:http fast path), to measure what
 * Express costs per certificate. Configured from the environment like main.ts; prints
 * `listening <port>`.
 */
async function main(): Promise<void> {
  const config = loadServerConfig({});
  const logger = createLogger(config.logLevel);
  const app = await createApp(config, logger);
  await app.identity.warmUp();
  const { server, port } = await listen(app.api.express, '127.0.0.1', 0);
  server.keepAliveTimeout = 30_000;
  process.stdout.write(`listening ${port}\n`);
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => void app.close().then(() => process.exit(0)));
  });
}

void main();
