import type { Server } from 'node:http';
import type { Logger } from '../common/logger';

/**
 * Graceful stop of one serving process. On the first SIGTERM (or SIGINT) the process
 * reports not-ready, keeps serving for `delayMs` (so load balancers that poll readiness move
 * away), then stops accepting connections, lets in-flight requests finish for up to
 * `graceMs`, releases what it holds (Redis, file watchers) and exits 0. A second signal
 * exits at once with status 1.
 */

export interface CloseResult {
  /** True when the grace period ran out and open connections were cut. */
  readonly forced: boolean;
}

/**
 * Stops accepting, then waits for open connections to finish. Idle keep-alive connections
 * are closed at once and again every 100 ms (a connection becomes idle when its last
 * request is answered); after `graceMs` whatever is left is cut.
 */
export function closeServer(server: Server, graceMs: number): Promise<CloseResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (forced: boolean) => {
      if (done) return;
      done = true;
      clearInterval(sweep);
      clearTimeout(timer);
      resolve({ forced });
    };
    const timer = setTimeout(() => {
      server.closeAllConnections();
      finish(true);
    }, graceMs);
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    server.close(() => finish(false));
    server.closeIdleConnections();
  });
}

export interface DrainPlan {
  readonly logger: Logger;
  /** Keep serving, reporting not-ready, this long before closing the listeners. */
  readonly delayMs: number;
  readonly graceMs: number;
  setReady(ready: boolean): void;
  /** The API listener(s): closed after the delay, with the grace period. */
  readonly servers: readonly Server[];
  /** Listeners that only go away at the end (metrics), with a short grace. */
  readonly lateServers?: readonly Server[];
  /** Releases the rest (Redis, watchers, the development issuer). */
  close(): Promise<void>;
}

export async function drain(plan: DrainPlan): Promise<CloseResult> {
  const started = Date.now();
  plan.setReady(false);
  plan.logger.info({ delayMs: plan.delayMs, graceMs: plan.graceMs }, 'draining: not ready');
  if (plan.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
  plan.logger.info('draining: no longer accepting connections');
  const results = await Promise.all(plan.servers.map((s) => closeServer(s, plan.graceMs)));
  const forced = results.some((r) => r.forced);
  if (forced)
    plan.logger.warn(
      { graceMs: plan.graceMs },
      'grace period over: connections still open were closed',
    );
  await Promise.all((plan.lateServers ?? []).map((s) => closeServer(s, 1000)));
  try {
    await plan.close();
  } catch (err) {
    plan.logger.warn({ err: (err as Error).message }, 'error while releasing resources');
  }
  plan.logger.info({ forced, drainMs: Date.now() - started }, 'stopped');
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
