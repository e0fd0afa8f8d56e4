import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/**
 * Child processes of the soak (mayfly replicas, redis-server, sentinels, nginx): each
 * writes to a log file of its own (reading pipes would cost this process CPU it needs for
 * the load), and every one still alive is killed when this process exits, however it exits.
 */

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) {
    try {
      // The whole group: nginx's workers outlive a master killed with SIGKILL.
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }
});

export function spawnLogged(
  command: string,
  args: readonly string[],
  options: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
): ChildProcess {
  const fd = openSync(options.logFile, 'a');
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', fd, fd],
    // A process group of its own, so that the exit hook can kill what it started too; and a
    // terminal's Ctrl-C reaches only this process, which then stops the rest.
    detached: true,
  });
  closeSync(fd);
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return !!child && child.exitCode === null && child.signalCode === null;
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends a signal and waits for the exit; SIGKILL after `killAfterMs` if it is still up. */
export async function stopChild(
  child: ChildProcess | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
  killAfterMs = 15_000,
): Promise<void> {
  if (!isRunning(child)) return;
  const done = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  await done;
  clearTimeout(timer);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls a log file (from `offset`) until `pattern` matches; fails if the child exits. */
export async function waitForLine(
  file: string,
  pattern: RegExp,
  child: ChildProcess,
  what: string,
  options: { offset?: number; timeoutMs?: number } = {},
): Promise<RegExpExecArray> {
  const until = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const text = readFileSync(file, 'utf8').slice(options.offset ?? 0);
    const match = pattern.exec(text);
    if (match) return match;
    if (!isRunning(child)) throw new Error(`${what} exited before it was ready:\n${text}`);
    if (Date.now() > until) throw new Error(`${what} was not ready in time:\n${text}`);
    await sleep(50);
  }
}

/** Retries `check` until it returns a value (or throws the last error after `ms`). */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  ms = 20_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch {
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/);
    return Number(low) || 32768;
  } catch {
    return 32768;
  }
}

const handedOut = new Set<number>();

/**
 * A free loopback port BELOW the kernel's ephemeral range. Processes that the soak restarts
 * (replicas, Redis) come back on the same port, which nginx and the sentinels know; a port
 * from the ephemeral range could meanwhile become the local end of somebody's outgoing
 * connection (other tests run on this machine) and the restart would fail with EADDRINUSE.
 */
export async function stablePort(): Promise<number> {
  const high = ephemeralLow() - 1;
  const low = Math.max(1024, Math.min(20_000, high - 2000));
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range');
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
