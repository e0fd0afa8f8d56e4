import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { Clock } from '../common/clock';
import { decodePemBlocks } from '../common/encoding';
import type { Logger } from '../common/logger';
import { originOf, type CtlogConfig } from './config';
import { createHttpApp } from './http';
import { CtLog } from './log';
import { generateDevKeyDer, loadLogKey, logKeyFromDer, type LogKey } from './log-key';
import { createCtlogMetrics } from './metrics';
import { ReadPath } from './read-path';
import { WritePath } from './write-path';
import { Sequencer } from './sequencer';
import { DirectoryStorage } from './storage/directory';
import { PostgresStorage } from './storage/postgres';
import type { LogStorage } from './storage/storage';
import { parseRoots, type TemporalInterval } from './submission';
import { TlsReader, TlsWriter } from './tls';

/** The composition root of the log: storage, key, sequencer, front end, HTTP. */

export interface CtlogApp {
  readonly server: Server;
  readonly url: string;
  readonly log: CtLog;
  readonly key: LogKey;
  readonly storage: LogStorage;
  readonly sequencer: Sequencer;
  readonly temporal: TemporalInterval;
  /** Express alone, without the node:http fronts (tests compare the fronts with it). */
  readonly express: (req: IncomingMessage, res: ServerResponse) => void;
  /** Not ready, stop sequencing, finish requests within the grace, close storage. */
  close(): Promise<void>;
}

const YEAR_MS = 365 * 24 * 3600 * 1000;

export class CtlogStartError extends Error {}

function readRoots(path: string | undefined): Buffer[] {
  if (!path) return [];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CtlogStartError(
      `cannot read MAYFLY_CTLOG_ROOTS ${path}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  const ders = decodePemBlocks(text)
    .filter((b) => b.type === 'CERTIFICATE')
    .map((b) => b.der);
  if (ders.length === 0)
    throw new CtlogStartError(`MAYFLY_CTLOG_ROOTS ${path} holds no certificate`);
  return ders;
}

export async function openStorage(config: CtlogConfig, logger: Logger): Promise<LogStorage> {
  if (config.databaseUrl) return PostgresStorage.open(config.databaseUrl, logger);
  const dir = config.dir ?? mkdtempSync(join(tmpdir(), 'mayfly-ctlog-'));
  if (!config.dir)
    logger.warn({ dir }, 'MAYFLY_CTLOG_DIR is unset: the log lives in a fresh temporary directory');
  return DirectoryStorage.open(dir);
}

export async function startCtlog(
  config: CtlogConfig,
  logger: Logger,
  clock: Clock,
  storageOverride?: LogStorage,
): Promise<CtlogApp> {
  const roots = parseRoots(readRoots(config.roots));
  if (roots.length === 0)
    logger.warn('MAYFLY_CTLOG_ROOTS is unset: every submission will be refused');
  const storage = storageOverride ?? (await openStorage(config, logger));
  try {
    const key = config.key
      ? loadLogKey(config.key, config.keyPasswordFile)
      : logKeyFromDer(await storage.setting('dev-key', generateDevKeyDer));
    if (!config.key)
      logger.warn('no MAYFLY_CTLOG_KEY: using the development key kept in the log storage');
    const created = clock.now().getTime();
    const storedInterval = new TlsReader(
      await storage.setting('temporal-interval', () =>
        new TlsWriter()
          .u64(created)
          .u64(created + YEAR_MS)
          .finish(),
      ),
    );
    const temporal: TemporalInterval = config.temporalStart
      ? { start: config.temporalStart, end: config.temporalEnd! }
      : { start: new Date(storedInterval.uint(8)), end: new Date(storedInterval.uint(8)) };
    const origin = originOf(config.url);
    let lastHeadTs: number | undefined;
    const metrics = createCtlogMetrics(new Registry(), () => lastHeadTs);
    const log = new CtLog(
      storage,
      key,
      {
        origin,
        submitTimeoutMs: config.submitTimeoutMs,
        pollMs: config.pollMs,
        headTtlMs: config.headTtlMs,
      },
      logger,
      metrics,
    );
    const sequencer = new Sequencer(
      storage,
      key,
      clock,
      {
        intervalMs: config.intervalMs,
        maxBatch: config.maxBatch,
        checkpointRefreshMs: config.checkpointRefreshMs,
      },
      logger,
      metrics,
      (records, head) => log.committed(records, head),
    );
    // The sequencer in this process resolves its waiters itself; other replicas poll.
    log.localSequencer = () => sequencer.leading;
    // Keep the checkpoint-age gauge fed from storage on every replica.
    const headTimer = setInterval(() => {
      log
        .head()
        .then((h) => {
          lastHeadTs = h?.timestamp;
          if (h) metrics.treeSize.set(h.size);
          metrics.leader.set(sequencer.leading ? 1 : 0);
        })
        .catch(() => undefined);
    }, 1000);
    headTimer.unref();
    let draining = false;
    const readPath = new ReadPath(log, logger, metrics, {
      immutableBytes: 64 * 1024 * 1024,
      partialBytes: 8 * 1024 * 1024,
    });
    const writePath = new WritePath({ log, roots, temporal, logger, metrics }, config.maxBodyBytes);
    const app = createHttpApp({
      readPath,
      log,
      roots,
      temporal,
      logger,
      metrics,
      maxBodyBytes: config.maxBodyBytes,
      ready: () => !draining,
      logJson: () => ({
        description: config.description,
        log_id: key.logId.toString('base64'),
        key: key.spki.toString('base64'),
        url: config.url.endsWith('/') ? config.url : `${config.url}/`,
        mmd: config.mmdSeconds,
        temporal_interval: {
          start_inclusive: temporal.start.toISOString(),
          end_exclusive: temporal.end.toISOString(),
        },
      }),
    });
    sequencer.start();
    const server = await new Promise<Server>((resolve, reject) => {
      // The static-ct-api reads go straight to the read path, the plain submissions to the
      // write path; everything else to Express.
      const s = createServer((req, res) => {
        if (!readPath.handle(req, res) && !writePath.handle(req, res)) app(req, res);
      });
      s.listen(config.port, config.host, () => resolve(s));
      s.once('error', reject);
    });
    // Longer than a load balancer's idle timeout, so the log never closes a kept-alive
    // connection a client is about to reuse (Node's default is 5 s).
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
    logger.info(
      { port, origin, logId: key.logId.toString('base64'), storage: storage.kind },
      'ctlog listening',
    );
    let closing: Promise<void> | undefined;
    return {
      server,
      url: `http://${host}:${port}`,
      log,
      key,
      storage,
      sequencer,
      temporal,
      express: app,
      close: () =>
        (closing ??= (async () => {
          draining = true;
          clearInterval(headTimer);
          const closed = new Promise<void>((resolve) => server.close(() => resolve()));
          server.closeIdleConnections();
          const grace = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
          // In-flight submissions still get their batch: stop the sequencer after the
          // listener has stopped accepting and the last batch has run.
          await Promise.race([closed, new Promise((r) => setTimeout(r, config.intervalMs * 3))]);
          await sequencer.stop();
          log.abandonWaiters();
          await closed;
          clearTimeout(grace);
          await storage.close();
        })()),
    };
  } catch (err) {
    await storage.close();
    throw err;
  }
}
