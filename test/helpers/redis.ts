import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Real redis-server processes for tests: standalone servers, a Sentinel group and a Cluster,
 * each on free loopback ports in a temporary folder, with no persistence. Every process
 * this module starts is tracked; `stopAllRedis()` (call it from afterAll) stops them and
 * removes their folders, and a process 'exit' hook kills whatever is left, so a failing or
 * interrupted test leaves nothing running.
 */

const execFileAsync = promisify(execFile);

const live = new Set<RedisProcess>();
process.once('exit', () => {
  for (const p of live) p.child?.kill('SIGKILL');
});

/** A free loopback port; `withBus` also keeps port+10000 free (Redis Cluster's bus). */
export async function freePort(withBus = false): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnce(0);
    if (!withBus) return port;
    if (port + 10000 > 65535) continue;
    try {
      await listenOnce(port + 10000);
      return port;
    } catch {
      // The bus port is taken; try another.
    }
  }
  throw new Error('no free port found');
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

export interface RedisProcessOptions {
  /** Extra redis-server arguments, e.g. ['--requirepass', 'x']. */
  readonly args?: readonly string[];
  /** A sentinel: the config file text (written to the folder; sentinels rewrite it). */
  readonly sentinelConfig?: (port: number) => string;
  readonly withBus?: boolean;
  /** Serve TLS only, on the chosen port, with these PEM files (clients need no cert). */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
}

/** One redis-server process, which a test can kill, pause, resume and restart. */
export class RedisProcess {
  child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly argv: readonly string[],
    private readonly readyLine: RegExp,
  ) {}

  static async start(options: RedisProcessOptions = {}): Promise<RedisProcess> {
    const port = await freePort(options.withBus);
    const dir = mkdtempSync(join(tmpdir(), 'mayfly-redis-'));
    let argv: string[];
    if (options.sentinelConfig) {
      const file = join(dir, 'sentinel.conf');
      writeFileSync(file, options.sentinelConfig(port));
      argv = [file, '--sentinel', '--port', String(port), '--bind', '127.0.0.1'];
    } else if (options.tls) {
      argv = ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1'];
      argv.push('--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile);
      argv.push('--tls-ca-cert-file', options.tls.caFile, '--tls-auth-clients', 'no');
    } else {
      argv = ['--port', String(port), '--bind', '127.0.0.1'];
    }
    argv.push(
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--logfile',
      '',
      ...(options.args ?? []),
    );
    const ready = options.sentinelConfig ? /Sentinel ID is/ : /Ready to accept connections/;
    const p = new RedisProcess(port, dir, argv, ready);
    live.add(p);
    await p.spawn();
    return p;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && !this.child.killed;
  }

  private spawn(): Promise<void> {
    this.output = '';
    const child = spawn('redis-server', this.argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`redis-server on ${this.port} not ready:\n${this.output}`)),
        10_000,
      );
      const onData = (d: Buffer) => {
        this.output += d.toString();
        if (this.readyLine.test(this.output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server on ${this.port} exited (${code}):\n${this.output}`));
      });
    });
  }

  /** Everything the server logged since it last started. */
  log(): string {
    return this.output;
  }

  /** Kills the process (SIGKILL by default: a crash, not a shutdown) and waits for it. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  /** Freezes the process: connections stay open but nothing answers (a hung server). */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Starts it again on the same port and folder, empty (nothing is persisted). */
  async restart(): Promise<void> {
    await this.kill();
    await this.spawn();
  }

  /** Runs redis-cli against this server and returns its output. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('redis-cli', [
      '-h',
      '127.0.0.1',
      '-p',
      String(this.port),
      ...args,
    ]);
    return stdout.trim();
  }

  async stop(): Promise<void> {
    this.resume();
    await this.kill();
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function startRedis(options: RedisProcessOptions = {}): Promise<RedisProcess> {
  return RedisProcess.start(options);
}

export async function stopAllRedis(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  ms = 20_000,
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
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface SentinelGroup {
  readonly name: string;
  readonly primary: RedisProcess;
  readonly replica: RedisProcess;
  readonly sentinels: readonly RedisProcess[];
  /** host:port of each sentinel, as MAYFLY_REDIS_SENTINELS wants them. */
  readonly sentinelAddresses: readonly string[];
  /** The port the sentinels currently call the primary. */
  currentPrimaryPort(): Promise<number>;
  /** Waits until the sentinels name a primary other than `port`. */
  waitForFailover(fromPort: number): Promise<number>;
}

/**
 * One primary, one replica and three sentinels (quorum 2) watching them, with short
 * timeouts so that a failover takes about a second or two instead of a minute.
 */
export async function startSentinelGroup(name = 'mymaster'): Promise<SentinelGroup> {
  const primary = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  await until('the replica to sync', async () =>
    /master_link_status:up/.test(await replica.cli('INFO', 'replication')) ? true : undefined,
  );
  const sentinels = await Promise.all(
    [0, 1, 2].map(() =>
      startRedis({
        sentinelConfig: () =>
          [
            `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${name} 500`,
            `sentinel failover-timeout ${name} 2000`,
            `sentinel parallel-syncs ${name} 1`,
            '',
          ].join('\n'),
      }),
    ),
  );
  const currentPrimaryPort = async () => {
    const out = await sentinels[0]!.cli('SENTINEL', 'get-master-addr-by-name', name);
    return Number(out.split('\n')[1]);
  };
  // Wait until every sentinel knows the replica and the other sentinels, or a failover
  // could not reach quorum.
  await until('the sentinels to discover each other', async () => {
    for (const s of sentinels) {
      const info = await s.cli('SENTINEL', 'master', name);
      const fields = info.split('\n');
      const value = (key: string) => Number(fields[fields.indexOf(key) + 1]);
      if (value('num-slaves') < 1 || value('num-other-sentinels') < 2) return undefined;
    }
    return true;
  });
  return {
    name,
    primary,
    replica,
    sentinels,
    sentinelAddresses: sentinels.map((s) => `127.0.0.1:${s.port}`),
    currentPrimaryPort,
    waitForFailover: (fromPort) =>
      until('a failover', async () => {
        const port = await currentPrimaryPort();
        return port !== fromPort && Number.isFinite(port) ? port : undefined;
      }),
  };
}

export interface RedisCluster {
  readonly nodes: readonly RedisProcess[];
  /** host:port of each node, as MAYFLY_REDIS_CLUSTER_NODES wants them. */
  readonly addresses: readonly string[];
}

/** `count` primaries (no replicas) sharing the 16384 slots, ready when every node says ok. */
export async function startCluster(count = 3): Promise<RedisCluster> {
  const nodes = await Promise.all(
    Array.from({ length: count }, () =>
      startRedis({
        withBus: true,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '2000',
        ],
      }),
    ),
  );
  const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
  await execFileAsync('redis-cli', [
    '--cluster',
    'create',
    ...addresses,
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ]);
  await until('the cluster to be ok', async () => {
    for (const n of nodes)
      if (!/cluster_state:ok/.test(await n.cli('CLUSTER', 'INFO'))) return undefined;
    return true;
  });
  return { nodes, addresses };
}
