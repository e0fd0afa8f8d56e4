import { systemClock } from '../common/clock';
import { createLogger } from '../common/logger';
import { CtlogStartError, startCtlog } from './app';
import { CtlogConfigError, loadCtlogConfig } from './config';
import { LogKeyError } from './log-key';
import { DirectoryLockedError } from './storage/directory';

/** Process entry of the CT log: config, start, and a graceful stop on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadCtlogConfig();
  } catch (err) {
    if (err instanceof CtlogConfigError) {
      process.stderr.write(`mayfly-ctlog: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel).child({ service: 'mayfly-ctlog' });
  let app;
  try {
    app = await startCtlog(config, logger, systemClock);
  } catch (err) {
    if (
      err instanceof CtlogStartError ||
      err instanceof LogKeyError ||
      err instanceof DirectoryLockedError
    ) {
      process.stderr.write(`mayfly-ctlog: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  process.stdout.write(`mayfly-ctlog listening on ${app.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'stopping');
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'unclean stop');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`mayfly-ctlog: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
