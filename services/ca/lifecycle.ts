import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import type { Logger } from '../common/logger';

/**
 * Graceful stop of one serving process. On the first SIGTERM (or SIGINT) the process
 * reports not-ready and from then on answers every request with `Connection: close`, keeps
 * serving for `delayMs` (so load balancers that poll readiness move away), then stops
 * accepting connections, lets in-flight requests finish for up to `graceMs`, releases what
 * it holds (Redis, file watchers) and exits 0. A second signal exits at once with status 1.
 *
 * No request that reached the process is dropped: a keep-alive connection is closed by the
 * server only after an answer that said so, or once it has been idle for `idleMs` (so no
 * request can be on its way on it), or when the grace period is over.
 */

export interface CloseResult {
  /** True when the grace period ran out and open connections were cut. */
  readonly forced: boolean;
}

/**
 * How long a keep-alive connection must have been idle (no request open, no byte received)
 * before a draining server closes it. HTTP/1.1 has no way to tell a client "do not send on
 * this connection" other than the `Connection: close` of an answer, so closing an idle
 * connection races with a request the client may be writing at that moment: a client that
 * loops sends its next request within milliseconds of the last answer, and a POST cut that
 * way is not retried (Go's net/http, nginx). A connection silent for this long is one the
 * client is not using; its next request (if any) would be a fresh pick from its pool.
 */
export const DRAIN_IDLE_MS = 2000;

interface Tracked {
  /**
   * socket.bytesRead when last looked at (-1: never; the first look counts as activity),
   * and when it last changed or an answer was seen in progress.
   */
  bytesRead: number;
  activeAt: number;
  /** The connection's latest answer: while it is not finished, a request is open. */
  latest?: ServerResponse;
}

const busy = (tracked: Tracked) => !!tracked.latest && !tracked.latest.writableFinished;

/**
 * The connections of one HTTP server, as its drain needs them: which are idle and for how
 * long, judged from what was received (socket.bytesRead, which counts bytes of a request
 * whose headers are not complete yet) as well as from the answer in progress.
 *
 * Node's own `server.close()` (and `closeIdleConnections()`) destroys every connection
 * that is between requests at that instant, including one whose next request is already
 * on its way: that is the cut this class exists to avoid. So the listener is closed with
 * net.Server's close (stop accepting, nothing more), answers carry `Connection: close`,
 * and only connections idle for `idleMs` are closed.
 *
 * While nobody drains, a request costs one map lookup (bench/drain-overhead.ts); the
 * looking happens in the drain's sweeps.
 */
export class ServerDrain {
  private readonly connections = new Map<Socket, Tracked>();
  private draining = false;
  /** Connections this drain closed because they were idle. */
  closedIdle = 0;

  constructor(
    private readonly server: Server,
    private readonly now: () => number = Date.now,
  ) {
    server.on('connection', (socket: Socket) => this.track(socket));
    // First of the 'request' listeners, so that it runs before any handler answers.
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      if (this.draining) res.shouldKeepAlive = false;
      const socket = req.socket as Socket;
      (this.connections.get(socket) ?? this.track(socket)).latest = res;
    });
  }

  private track(socket: Socket): Tracked {
    const tracked: Tracked = { bytesRead: -1, activeAt: this.now() };
    this.connections.set(socket, tracked);
    socket.once('close', () => this.connections.delete(socket));
    return tracked;
  }

  /** Open connections (accepted and not yet closed). */
  get size(): number {
    return this.connections.size;
  }

  /**
   * From now on every answer carries `Connection: close` (an answer already being written
   * keeps what it started with; its client gets the close on its next request).
   */
  startDraining(): void {
    this.draining = true;
    for (const { latest } of this.connections.values())
      if (latest && !latest.headersSent) latest.shouldKeepAlive = false;
  }

  /**
   * Closes the connections that have been idle (no answer in progress, no byte received) for
   * at least `idleMs`, as seen by the calls to this method, which should come every
   * `everyMs`. The decision is taken after an I/O poll (setImmediate), so bytes that reached
   * the process while it was busy are counted before a connection is judged silent.
   */
  closeIdle(idleMs: number, everyMs = 0): Promise<number> {
    const now = this.now();
    const candidates: Socket[] = [];
    for (const [socket, tracked] of this.connections) {
      if (busy(tracked) || socket.bytesRead !== tracked.bytesRead) {
        tracked.bytesRead = socket.bytesRead;
        tracked.activeAt = now;
      } else if (now - tracked.activeAt >= idleMs + everyMs) {
        // (+ everyMs: the answer may have ended just after the last look found it busy.)
        candidates.push(socket);
      }
    }
    if (candidates.length === 0) return Promise.resolve(0);
    return new Promise((resolve) =>
      setImmediate(() => {
        let closed = 0;
        for (const socket of candidates) {
          const tracked = this.connections.get(socket);
          if (!tracked || busy(tracked) || socket.bytesRead !== tracked.bytesRead) continue;
          socket.destroy();
          closed++;
          this.closedIdle++;
        }
        resolve(closed);
      }),
    );
  }

  private stopped: Promise<void> | undefined;

  /**
   * Stops accepting connections (once; later calls return the same promise); resolves once
   * every open connection has closed.
   */
  stopAccepting(): Promise<void> {
    this.stopped ??= new Promise((resolve) => {
      // net.Server's close, not http.Server's: the latter also destroys idle connections.
      NetServer.prototype.close.call(this.server, () => resolve());
    });
    return this.stopped;
  }

  /** Cuts every connection still open (the grace period is over). */
  closeAll(): void {
    for (const socket of this.connections.keys()) socket.destroy();
    this.server.closeAllConnections();
  }
}

const drains = new WeakMap<Server, ServerDrain>();

/**
 * The drain bookkeeping of a server; call it right after creating the server, so that it
 * sees every connection (a connection accepted before it is tracked from its next request).
 */
export function drainable(server: Server): ServerDrain {
  let drain = drains.get(server);
  if (!drain) {
    drain = new ServerDrain(server);
    drains.set(server, drain);
  }
  return drain;
}

/**
 * Closes, every `idleMs / 4` (at most every 100 ms), the connections idle for `idleMs`;
 * returns the function that stops it.
 */
const sweepEvery = (idleMs: number) => Math.max(10, Math.min(100, idleMs / 4));

export function sweepIdle(drain: ServerDrain, idleMs: number): () => void {
  const everyMs = sweepEvery(idleMs);
  const sweep = setInterval(() => void drain.closeIdle(idleMs, everyMs), everyMs);
  return () => clearInterval(sweep);
}

/**
 * Stops accepting, then waits for open connections to finish: every answer from now on
 * carries `Connection: close`, a connection idle for `idleMs` (DRAIN_IDLE_MS by default) is
 * closed, and after `graceMs` whatever is left is cut.
 */
export function closeServer(
  server: Server,
  graceMs: number,
  idleMs: number = DRAIN_IDLE_MS,
): Promise<CloseResult> {
  const drain = drainable(server);
  drain.startDraining();
  return new Promise((resolve) => {
    let done = false;
    const finish = (forced: boolean) => {
      if (done) return;
      done = true;
      stopSweep();
      clearTimeout(timer);
      // (http.Server's request-timeout timer is left running: it holds no connection and does
      // not keep the process alive.)
      resolve({ forced });
    };
    const timer = setTimeout(() => {
      drain.closeAll();
      finish(true);
    }, graceMs);
    const stopSweep = sweepIdle(drain, idleMs);
    void drain.closeIdle(idleMs, sweepEvery(idleMs));
    void drain.stopAccepting().then(() => finish(false));
  });
}

/**
 * A listener that drains itself (the gRPC server: GOAWAY, then the calls in flight finish):
 * close() stops taking new calls and calls back once those in flight are done;
 * closeAllConnections() cuts what is left.
 */
export interface SelfDraining {
  close(callback: (err?: Error) => void): unknown;
  closeAllConnections(): void;
}

/** Closes a self-draining listener within the grace period, cutting what is left after it. */
export function closeSelfDraining(listener: SelfDraining, graceMs: number): Promise<CloseResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (forced: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ forced });
    };
    const timer = setTimeout(() => {
      listener.closeAllConnections();
      finish(true);
    }, graceMs);
    listener.close(() => finish(false));
  });
}

export interface DrainPlan {
  readonly logger: Logger;
  /** Keep serving, reporting not-ready, this long before closing the listeners. */
  readonly delayMs: number;
  readonly graceMs: number;
  /** A keep-alive connection idle this long is closed (DRAIN_IDLE_MS by default). */
  readonly idleMs?: number;
  setReady(ready: boolean): void;
  /** The API listener(s): closed after the delay, with the grace period. */
  readonly servers: readonly Server[];
  /** Listeners that drain themselves (gRPC): closed beside `servers`, with the same grace. */
  readonly selfDraining?: readonly SelfDraining[];
  /** Listeners that only go away at the end (metrics), with a short grace. */
  readonly lateServers?: readonly Server[];
  /** Releases the rest (Redis, watchers, the development issuer). */
  close(): Promise<void>;
}

export async function drain(plan: DrainPlan): Promise<CloseResult> {
  const started = Date.now();
  const idleMs = plan.idleMs ?? DRAIN_IDLE_MS;
  plan.setReady(false);
  // From the signal on, every answer closes its connection, and connections left idle are
  // closed, so clients move on by themselves (to another replica, once readiness has told
  // the load balancer) while this one still accepts.
  const drains = plan.servers.map(drainable);
  for (const d of drains) d.startDraining();
  plan.logger.info({ delayMs: plan.delayMs, graceMs: plan.graceMs, idleMs }, 'draining: not ready');
  if (plan.delayMs > 0) {
    const stops = drains.map((d) => sweepIdle(d, idleMs));
    await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
    for (const stop of stops) stop();
  }
  plan.logger.info(
    { connections: drains.reduce((n, d) => n + d.size, 0) },
    'draining: no longer accepting connections',
  );
  const results = await Promise.all([
    ...plan.servers.map((s) => closeServer(s, plan.graceMs, idleMs)),
    ...(plan.selfDraining ?? []).map((l) => closeSelfDraining(l, plan.graceMs)),
  ]);
  const forced = results.some((r) => r.forced);
  if (forced)
    plan.logger.warn(
      { graceMs: plan.graceMs },
      'grace period over: connections still open were closed',
    );
  await Promise.all((plan.lateServers ?? []).map((s) => closeServer(s, 1000, 0)));
  try {
    await plan.close();
  } catch (err) {
    plan.logger.warn({ err: (err as Error).message }, 'error while releasing resources');
  }
  plan.logger.info(
    {
      forced,
      closedIdle: drains.reduce((n, d) => n + d.closedIdle, 0),
      drainMs: Date.now() - started,
    },
    'stopped',
  );
  return { forced };
}

/**
 * Runs `onFirst` on the first SIGTERM/SIGINT and exits with status 1 on the next one.
 * Cluster workers listen to SIGTERM only: a terminal's Ctrl-C reaches the whole process
 * group, and the primary, which got it too, sends each worker its one SIGTERM.
 */
export function onStopSignals(
  logger: Logger,
  onFirst: (signal: string) => void,
  options: { signals?: readonly NodeJS.Signals[]; onSecond?: () => void } = {},
): void {
  let stopping = false;
  const handle = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      options.onSecond?.();
      process.exit(1);
    }
    stopping = true;
    onFirst(signal);
  };
  for (const signal of options.signals ?? ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => handle(signal));
  }
}
