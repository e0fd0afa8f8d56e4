import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { availableParallelism } from 'node:os';
import type { Logger } from '../common/logger';
import type { ServerConfig } from './config/schema';
import { createEphemeralCaForWorkers } from './app';
import { closeServer, onStopSignals } from './lifecycle';
import { createClusterMetricsServer } from './metrics/cluster';

/**
 * MAYFLY_WORKERS=N: N worker processes (node cluster) share the API port, for machines
 * outside Kubernetes that should use every core. (On Kubernetes, run more replicas.)
 *
 * The primary loads and checks the configuration, makes the ephemeral CA once and hands
 * it to every worker over the IPC channel (so all workers sign with, and publish, one CA;
 * a file CA is read by each worker itself), serves the workers' aggregated metrics on the
 * metrics port, restarts a worker that dies, and on SIGTERM lets every worker drain.
 */

const CA_REQUEST = 'mayfly:ca-request';
const CA_REPLY = 'mayfly:ca';

interface CaReply {
  readonly type: typeof CA_REPLY;
  readonly ca: Awaited<ReturnType<typeof createEphemeralCaForWorkers>> | null;
}

export function workerCount(config: ServerConfig): number {
  return config.workers === 0 ? availableParallelism() : config.workers;
}

export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

export function clusterWorkerId(): number | undefined {
  return cluster.worker?.id;
}

/** In a worker: asks the primary for the ephemeral CA (null when the CA is a file or an HSM). */
export function caFromPrimary(): Promise<CaReply['ca']> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown) => {
      if ((message as Partial<CaReply>)?.type !== CA_REPLY) return;
      process.off('message', onMessage);
      resolve((message as CaReply).ca);
    };
    process.on('message', onMessage);
    process.send?.({ type: CA_REQUEST });
  });
}

function listenOn(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

export async function runPrimary(config: ServerConfig, logger: Logger): Promise<void> {
  const count = workerCount(config);
  const ca = config.ca.type === 'ephemeral' ? await createEphemeralCaForWorkers() : null;
  const metricsServer = createClusterMetricsServer();
  const metricsPort = await listenOn(metricsServer, config.metricsHost, config.metricsPort);
  let stopping = false;
  let announced = false;
  const listening = new Set<number>();

  cluster.on('message', (worker: Worker, message: unknown) => {
    if ((message as { type?: string })?.type === CA_REQUEST) {
      const reply: CaReply = { type: CA_REPLY, ca };
      worker.send(reply);
    }
  });
  cluster.on('listening', (worker, address) => {
    listening.add(worker.id);
    if (!announced && listening.size >= count) {
      announced = true;
      logger.info(
        { host: config.host, port: address.port, metricsPort, workers: count, ca: config.ca.type },
        'mayfly listening',
      );
      process.stdout.write(
        `mayfly listening on http://${config.host}:${address.port} (metrics on port ${metricsPort})\n` +
          `mayfly: ${count} worker processes\n`,
      );
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    if (stopping) return;
    logger.error({ worker: worker.id, code, signal }, 'worker died; starting another');
    setTimeout(() => {
      if (!stopping) cluster.fork();
    }, 1000).unref();
  });

  for (let i = 0; i < count; i++) cluster.fork();

  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w) => !!w);
  onStopSignals(
    logger,
    (signal) => {
      stopping = true;
      logger.info({ signal, workers: workers().length }, 'draining: stopping every worker');
      const codes: (number | null)[] = [];
      const exits = workers().map(
        (worker) =>
          new Promise<void>((resolve) => {
            worker.once('exit', (code) => {
              codes.push(code);
              resolve();
            });
            worker.process.kill('SIGTERM');
          }),
      );
      // The workers keep their own grace period; this is a last resort.
      const limit = config.shutdownDelayMs + config.shutdownGraceMs + 5000;
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, limit).unref());
      void Promise.race([Promise.all(exits), timeout])
        .then(() => {
          for (const worker of workers()) worker.process.kill('SIGKILL');
          return closeServer(metricsServer, 1000);
        })
        .then(() => {
          const clean = codes.length === exits.length && codes.every((c) => c === 0);
          logger.info({ clean }, 'stopped');
          process.exit(clean ? 0 : 1);
        });
    },
    {
      onSecond: () => {
        for (const worker of workers()) worker.process.kill('SIGKILL');
      },
    },
  );
}
