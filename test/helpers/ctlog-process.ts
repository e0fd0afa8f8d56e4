import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The compiled log as an operator runs it (`node dist/services/ctlog/main.js`), for the
 * crash, failover and signal tests. Every process started here is killed when the test
 * process exits.
 */

const repoRoot = resolve(__dirname, '../..');
export const ctlogMainJs = join(repoRoot, 'dist/services/ctlog/main.js');

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Builds dist/ when a test runs without `npm run build` first. */
export function ensureCtlogBuilt(): void {
  if (!existsSync(ctlogMainJs))
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot, stdio: 'inherit' });
}

export interface CtlogProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<number | null>;
  output(): string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startCtlogProcess(env: Record<string, string>): Promise<CtlogProcess> {
  ensureCtlogBuilt();
  let out = '';
  const child = spawn(process.execPath, [ctlogMainJs], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_LOG_LEVEL: 'info',
      MAYFLY_CTLOG_HOST: '127.0.0.1',
      MAYFLY_CTLOG_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) =>
    child.on('exit', (code) => {
      live.delete(child);
      res(code);
    }),
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`ctlog did not start:\n${out}`)), 30_000);
    const check = () => {
      const m = /mayfly-ctlog listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ctlog exited (${code}) before listening:\n${out}`));
    });
  });
  return {
    child,
    url,
    exited,
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
