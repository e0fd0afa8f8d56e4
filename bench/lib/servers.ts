import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CA_ENV, CA_NODE_ARGS } from '../../services/common/ca-runtime';
import { LOOPBACK_CA_ENV } from '../../test/helpers/mayfly-process';

/**
 * The benchmarks' servers: each its own process (the compiled services, as an operator
 * runs them), output to a file rather than through the bench (reading it would cost the
 * bench CPU), killed when the bench exits.
 */

const repoRoot = resolve(__dirname, '..', '..', '..');
const mainJs = join(repoRoot, 'dist/services/ca/main.js');

export interface RunningServer {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  readonly metricsPort?: number;
  stop(): Promise<void>;
}

export const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export async function waitForLine(
  file: string,
  pattern: RegExp,
  child: ChildProcess,
  what: string,
) {
  const until = Date.now() + 30_000;
  for (;;) {
    const match = pattern.exec(readFileSync(file, 'utf8'));
    if (match) return match;
    if (child.exitCode !== null) throw new Error(`${what} exited: ${readFileSync(file, 'utf8')}`);
    if (Date.now() > until) throw new Error(`${what} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolvePromise) => {
      if (child.exitCode !== null) return resolvePromise();
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('exit', () => {
        clearTimeout(timer);
        children.delete(child);
        resolvePromise();
      });
      child.kill('SIGTERM');
    });
}

/** Output goes to a file, not through this process: reading it would cost the bench CPU. */
export function spawnServer(
  script: string,
  args: string[],
  env: Record<string, string>,
  out: string,
) {
  const fd = openSync(out, 'w');
  const child = spawn(process.execPath, [...args, script], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  children.add(child);
  return child;
}

export async function startMayfly(
  name: string,
  dir: string,
  env: Record<string, string>,
  nodeArgs: readonly string[] = [],
  /**
   * `asShipped` (default): as `npm start` and the image run it, with the CA's node flags and
   * memory settings (services/common/ca-runtime.ts); false runs plain node with `nodeArgs`.
   */
  /**
   * `oneProcess` (default): MAYFLY_WORKERS=1 unless `env` sets it; false leaves it unset, for
   * the service's own default (one worker per usable core outside Kubernetes).
   */
  {
    asShipped = true,
    oneProcess = true,
  }: { readonly asShipped?: boolean; readonly oneProcess?: boolean } = {},
): Promise<RunningServer> {
  const out = join(dir, `${name.replace(/\W+/g, '-')}.log`);
  const child = spawnServer(
    mainJs,
    [...(asShipped ? CA_NODE_ARGS : []), ...nodeArgs],
    {
      ...(asShipped ? CA_ENV : {}),
      ...LOOPBACK_CA_ENV,
      MAYFLY_LOG_LEVEL: 'info',
      MAYFLY_AUDIT_LOG_FILE: join(dir, 'audit.log'),
      MAYFLY_SHUTDOWN_GRACE_MS: '2000',
      ...(oneProcess ? { MAYFLY_WORKERS: '1' } : {}),
      ...env,
    },
    out,
  );
  const match = await waitForLine(
    out,
    /listening on http:\/\/127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)/,
    child,
    name,
  );
  return {
    name,
    pid: child.pid!,
    url: `http://127.0.0.1:${match[1]}`,
    metricsPort: Number(match[2]),
    stop: stopper(child),
  };
}

export async function startScript(
  name: string,
  script: string,
  dir: string,
  env: Record<string, string>,
) {
  const out = join(dir, `${name.replace(/\W+/g, '-')}.log`);
  const child = spawnServer(script, [], env, out);
  const match = await waitForLine(out, /listening (\d+)/, child, name);
  return {
    name,
    pid: child.pid!,
    url: `http://127.0.0.1:${match[1]}`,
    stop: stopper(child),
  } satisfies RunningServer;
}
