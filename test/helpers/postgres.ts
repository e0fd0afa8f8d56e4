import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis';

/**
 * Real PostgreSQL servers for tests, like the redis-server helper: `initdb` in a temporary
 * folder, `postgres` on a free loopback port, trust authentication for the test user. Run as
 * root (CI), the server runs as the `postgres` system user (PostgreSQL refuses root). Every
 * server this module starts is tracked; `stopAllPostgres()` stops them and removes their
 * folders, and a process 'exit' hook kills whatever is left.
 */

const live = new Set<PostgresProcess>();
process.once('exit', () => {
  for (const p of live) p.child?.kill('SIGKILL');
});

export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base))
    throw new Error('PostgreSQL is not installed (scripts/test.sh installs it)');
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  return join(base, versions[0]!, 'bin');
}

const asRoot = process.getuid?.() === 0;

/** Run as root, the server runs as the postgres system user (signals reach it directly). */
function owner(): { uid: number; gid: number } | Record<string, never> {
  if (!asRoot) return {};
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
  };
}

export class PostgresProcess {
  child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  /** `port`: a fixed one (the soak's, below the ephemeral range); default a free one. */
  static async start(port?: number): Promise<PostgresProcess> {
    const bin = postgresBinDir();
    const dir = mkdtempSync(join(tmpdir(), 'mayfly-pg-'));
    const ids = owner();
    if ('uid' in ids) chownSync(dir, ids.uid, ids.gid);
    execFileSync(
      join(bin, 'initdb'),
      ['-D', join(dir, 'data'), '-U', 'mayfly', '--auth=trust', '-E', 'UTF8', '--locale=C'],
      { stdio: 'pipe', cwd: dir, ...ids },
    );
    const p = new PostgresProcess(port ?? (await freePort()), dir);
    live.add(p);
    await p.spawn();
    return p;
  }

  get url(): string {
    return `postgres://mayfly@127.0.0.1:${this.port}/postgres`;
  }

  private spawn(): Promise<void> {
    this.output = '';
    const args = [
      '-D',
      join(this.dir, 'data'),
      '-p',
      String(this.port),
      '-k',
      this.dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'shared_buffers=32MB',
    ];
    const child = spawn(join(postgresBinDir(), 'postgres'), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
      ...owner(),
    });
    this.child = child;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`postgres on ${this.port} not ready:\n${this.output}`)),
        30_000,
      );
      const onData = (d: Buffer) => {
        this.output += d.toString();
        if (/database system is ready to accept connections/.test(this.output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`postgres on ${this.port} exited (${code}):\n${this.output}`));
      });
    });
  }

  log(): string {
    return this.output;
  }

  /**
   * Stops the server: SIGQUIT is PostgreSQL's immediate shutdown (no checkpoint: recovery
   * from the WAL at the next start, as after a crash); SIGINT a fast, clean one.
   */
  async stop(signal: NodeJS.Signals = 'SIGQUIT'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  /**
   * Stop and start again on the same port and data: by default a crash (immediate shutdown,
   * WAL recovery at the start); `fast` is `pg_ctl restart -m fast` (SIGINT: connections cut,
   * a checkpoint, a clean stop).
   */
  async restart(mode: 'immediate' | 'fast' = 'immediate'): Promise<void> {
    await this.stop(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    await this.spawn();
  }

  async destroy(): Promise<void> {
    await this.stop('SIGINT');
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function startPostgres(port?: number): Promise<PostgresProcess> {
  return PostgresProcess.start(port);
}

export async function stopAllPostgres(): Promise<void> {
  await Promise.all([...live].map((p) => p.destroy()));
}
