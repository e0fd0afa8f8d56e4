import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { usableCoresHere, type UsableCores } from '../common/cpu-limit';
import type { Logger } from '../common/logger';
import type { ServerConfig } from './config/schema';
import { createEphemeralCaForWorkers } from './app';
import { closeServer, drainable, onStopSignals } from './lifecycle';
import { createClusterMetricsServer } from './metrics/cluster';

/**
 * MAYFLY_WORKERS=N: N worker processes (node cluster) share the API port, for machines
 * outside Kubernetes that should use every core. (On Kubernetes, run more replicas.)
 * Unset, outside Kubernetes, one worker per core the process may use (planWorkers).
 *
 * The primary loads and checks the configuration, makes the ephemeral CA once and hands
 * it to every worker over the IPC channel (so all workers sign with, and publish, one CA;
 * a file CA is read by each worker itself), serves the workers' aggregated metrics on the
 * metrics port, restarts a worker that dies, and on SIGTERM lets every worker drain.
 */

const CA_REQUEST = 'mayfly:ca-request';
const CA_REPLY = 'mayfly:ca';
/** Primary to worker: close your listener now (the drain follows); worker's answer. */
export const STOP_ACCEPTING = 'mayfly:stop-accepting';
const STOPPED_ACCEPTING = 'mayfly:stopped-accepting';
/** Worker to primary: my gRPC listener is up (the workers share its port). */
const GRPC_LISTENING = 'mayfly:grpc-listening';

/** In a worker: tells the primary where its gRPC listener is, for the start-up line. */
export function reportGrpcListening(port: number, tls: boolean): void {
  process.send?.({ type: GRPC_LISTENING, port, tls });
}

/**
 * In a worker: on the primary's word, stops accepting (the drain itself comes with SIGTERM)
 * and says so. The answer follows the worker's own close message on the same channel, so
 * when the primary has every answer, no worker takes new connections.
 */
export function stopAcceptingOnRequest(stopAccepting: () => void): void {
  process.on('message', (message: unknown) => {
    if ((message as { type?: string })?.type !== STOP_ACCEPTING) return;
    stopAccepting();
    process.send?.({ type: STOPPED_ACCEPTING });
  });
}

/**
 * Asks every worker to stop accepting and waits for their answers (at most `limitMs`).
 * Without it, with no shutdown delay, the worker that reacts first to SIGTERM answers with
 * `Connection: close` while another still accepts: its clients reconnect, and the connections
 * the primary has accepted but not yet handed to a worker when the last one closes its
 * listener are closed unanswered.
 */
function stopAcceptingEverywhere(workers: readonly Worker[], limitMs: number): Promise<void> {
  const answers = workers.map(
    (worker) =>
      new Promise<void>((resolve) => {
        const onMessage = (message: unknown) => {
          if ((message as { type?: string })?.type !== STOPPED_ACCEPTING) return;
          worker.off('message', onMessage);
          resolve();
        };
        worker.on('message', onMessage);
        worker.once('exit', () => resolve());
        if (!worker.isConnected()) resolve();
        else worker.send({ type: STOP_ACCEPTING }, (err: Error | null) => err && resolve());
      }),
  );
  const limit = new Promise<void>((resolve) => setTimeout(resolve, limitMs).unref());
  return Promise.race([Promise.all(answers).then(() => undefined), limit]);
}

interface CaReply {
  readonly type: typeof CA_REPLY;
  readonly ca: Awaited<ReturnType<typeof createEphemeralCaForWorkers>> | null;
}

export interface WorkerPlan {
  /** Worker processes; 1 means no cluster (the process serves by itself). */
  readonly count: number;
  /** Why, for the start-up log. */
  readonly reason: string;
}

/**
 * How many processes serve: an explicit MAYFLY_WORKERS (or `workers:` in the config file)
 * wins, 0 meaning one per usable core; unset, one per usable core outside Kubernetes and one
 * process in it (a pod is sized by its CPU request and the cluster scales by replicas).
 * Usable cores: the smaller of the CPU affinity and the cgroup CPU limit, rounded up
 * (services/common/cpu-limit.ts).
 */
export function planWorkers(
  configured: number | undefined,
  env: Readonly<Record<string, string | undefined>>,
  cores: () => UsableCores = usableCoresHere,
): WorkerPlan {
  if (configured !== undefined && configured > 0)
    return { count: configured, reason: `MAYFLY_WORKERS=${configured}` };
  if (configured === 0) {
    const usable = cores();
    return { count: usable.cores, reason: `MAYFLY_WORKERS=0: one per core (${usable.reason})` };
  }
  if (env.KUBERNETES_SERVICE_HOST)
    return {
      count: 1,
      reason:
        'default in Kubernetes (KUBERNETES_SERVICE_HOST is set): one process per pod; scale with replicas, or set MAYFLY_WORKERS',
    };
  const usable = cores();
  return { count: usable.cores, reason: `default: one per core (${usable.reason})` };
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

export async function runPrimary(
  config: ServerConfig,
  logger: Logger,
  plan: WorkerPlan,
): Promise<void> {
  const count = plan.count;
  const ca = config.ca.type === 'ephemeral' ? await createEphemeralCaForWorkers() : null;
  const metricsServer = createClusterMetricsServer();
  drainable(metricsServer);
  const metricsPort = await listenOn(metricsServer, config.metricsHost, config.metricsPort);
  let stopping = false;
  let announced = false;
  const listening = new Set<number>();
  let apiPort: number | undefined;
  // With gRPC on, the start-up lines wait for every worker's gRPC listener too.
  const grpcOn = config.grpc.port !== 'off';
  const grpcListening = new Map<number, { port: number; tls: boolean }>();
  const announce = () => {
    if (announced || apiPort === undefined || listening.size < count) return;
    if (grpcOn && grpcListening.size < count) return;
    announced = true;
    const grpc = grpcListening.values().next().value as { port: number; tls: boolean } | undefined;
    logger.info(
      {
        host: config.host,
        port: apiPort,
        grpcPort: grpc?.port,
        metricsPort,
        workers: count,
        workersReason: plan.reason,
        ca: config.ca.type,
      },
      'mayfly listening',
    );
    // One write, as a single process does, so that a reader of the first line has the rest.
    process.stdout.write(
      `mayfly listening on http://${config.host}:${apiPort} (metrics on port ${metricsPort})\n` +
        (grpc
          ? `mayfly gRPC listening on ${config.grpc.host}:${grpc.port} (${grpc.tls ? 'tls' : 'plaintext'})\n`
          : '') +
        `mayfly: ${count} worker processes (${plan.reason})\n`,
    );
  };

  cluster.on('message', (worker: Worker, message: unknown) => {
    const type = (message as { type?: string })?.type;
    if (type === CA_REQUEST) {
      const reply: CaReply = { type: CA_REPLY, ca };
      worker.send(reply);
    } else if (type === GRPC_LISTENING) {
      const { port, tls } = message as { port: number; tls: boolean };
      grpcListening.set(worker.id, { port, tls });
      announce();
    }
  });
  cluster.on('listening', (worker, address) => {
    // A worker's first listener is the API's (main.ts listens there before gRPC).
    if (listening.has(worker.id)) return;
    listening.add(worker.id);
    apiPort ??= address.port;
    announce();
  });
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    grpcListening.delete(worker.id);
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
      const running = workers();
      const exits = running.map(
        (worker) =>
          new Promise<void>((resolve) => {
            worker.once('exit', (code) => {
              codes.push(code);
              resolve();
            });
          }),
      );
      // With a shutdown delay the workers keep accepting meanwhile, each on its own clock.
      const stopFirst =
        config.shutdownDelayMs === 0 ? stopAcceptingEverywhere(running, 2000) : Promise.resolve();
      void stopFirst.then(() => {
        for (const worker of running) worker.process.kill('SIGTERM');
      });
      // The workers keep their own grace period; this is a last resort.
      const limit = config.shutdownDelayMs + config.shutdownGraceMs + 5000;
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, limit).unref());
      void Promise.race([Promise.all(exits), timeout])
        .then(() => {
          for (const worker of workers()) worker.process.kill('SIGKILL');
          return closeServer(metricsServer, 1000, 0);
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
