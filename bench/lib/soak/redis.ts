import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRunning, spawnLogged, stablePort, stopChild, until, waitForLine } from './procs';

/**
 * Redis for the soak: one primary, one replica and three sentinels (quorum 2) on loopback,
 * without persistence, with short Sentinel timeouts so that a failover takes a second or
 * two. Same shape as test/helpers/redis.ts (which the bench build cannot import), plus what
 * the chaos schedule needs: a forced failover and a crash of whichever node is primary.
 */

const execFileAsync = promisify(execFile);

export const SENTINEL_NAME = 'mymaster';

export class RedisNode {
  private child: ChildProcess | undefined;

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly dir: string,
    private readonly argv: readonly string[],
    private readonly ready: RegExp,
  ) {}

  get logFile(): string {
    return join(this.dir, `${this.name}.log`);
  }

  get pid(): number | undefined {
    return isRunning(this.child) ? this.child.pid : undefined;
  }

  async start(): Promise<void> {
    const offset = fileSize(this.logFile);
    this.child = spawnLogged('redis-server', this.argv, { logFile: this.logFile });
    await waitForLine(this.logFile, this.ready, this.child, this.name, { offset });
  }

  /** SIGKILL: a crash, not a shutdown. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return stopChild(this.child, signal, 5000);
  }

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync(
      'redis-cli',
      ['-h', '127.0.0.1', '-p', String(this.port), ...args],
      { timeout: 5000 },
    );
    return stdout.trim();
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function serverArgs(port: number, dir: string, extra: readonly string[] = []): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    ...extra,
  ];
}

export interface SentinelGroup {
  readonly nodes: readonly RedisNode[];
  readonly sentinels: readonly RedisNode[];
  /** host:port of each sentinel, as MAYFLY_REDIS_SENTINELS wants them. */
  readonly sentinelAddresses: readonly string[];
  /** The data node the sentinels currently name as primary. */
  primary(): Promise<RedisNode>;
  /** Waits until the sentinels name a primary other than `port`; returns it. */
  waitForNewPrimary(fromPort: number, timeoutMs?: number): Promise<RedisNode>;
  /** Waits until `node` replicates from the primary with its link up. */
  waitForReplica(node: RedisNode, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSentinelGroup(dir: string): Promise<SentinelGroup> {
  mkdirSync(dir, { recursive: true });
  const primaryPort = await stablePort();
  const replicaPort = await stablePort();
  const primary = new RedisNode(
    'redis-a',
    primaryPort,
    dir,
    serverArgs(primaryPort, dir, ['--dbfilename', 'a.rdb']),
    /Ready to accept connections/,
  );
  const replica = new RedisNode(
    'redis-b',
    replicaPort,
    dir,
    serverArgs(replicaPort, dir, [
      '--dbfilename',
      'b.rdb',
      '--replicaof',
      '127.0.0.1',
      String(primaryPort),
    ]),
    /Ready to accept connections/,
  );
  await primary.start();
  await replica.start();
  const nodes = [primary, replica];
  const byPort = (port: number) => nodes.find((n) => n.port === port);
  const linkUp = async (node: RedisNode) =>
    /master_link_status:up/.test(await node.cli('INFO', 'replication')) ? true : undefined;
  await until('the replica to sync', () => linkUp(replica));

  const sentinels: RedisNode[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await stablePort();
    const file = join(dir, `sentinel-${i}.conf`);
    // Sentinels rewrite their config file as they learn; each needs its own.
    writeFileSync(
      file,
      [
        `sentinel monitor ${SENTINEL_NAME} 127.0.0.1 ${primaryPort} 2`,
        `sentinel down-after-milliseconds ${SENTINEL_NAME} 1000`,
        `sentinel failover-timeout ${SENTINEL_NAME} 2000`,
        `sentinel parallel-syncs ${SENTINEL_NAME} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push(
      new RedisNode(
        `sentinel-${i}`,
        port,
        dir,
        [file, '--sentinel', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
        /Sentinel ID is/,
      ),
    );
  }
  await Promise.all(sentinels.map((s) => s.start()));

  const primaryPortNow = async (): Promise<number> => {
    // Any sentinel that answers will do: one of them may be mid-election.
    for (const s of sentinels) {
      try {
        const out = await s.cli('SENTINEL', 'get-master-addr-by-name', SENTINEL_NAME);
        const port = Number(out.split('\n')[1]);
        if (Number.isFinite(port) && port > 0) return port;
      } catch {
        // Try the next sentinel.
      }
    }
    throw new Error('no sentinel names a primary');
  };
  // A failover needs every sentinel to know the replica and the other sentinels.
  await until('the sentinels to discover each other', async () => {
    for (const s of sentinels) {
      const fields = (await s.cli('SENTINEL', 'master', SENTINEL_NAME)).split('\n');
      const value = (key: string) => Number(fields[fields.indexOf(key) + 1]);
      if (value('num-slaves') < 1 || value('num-other-sentinels') < 2) return undefined;
    }
    return true;
  });

  return {
    nodes,
    sentinels,
    sentinelAddresses: sentinels.map((s) => `127.0.0.1:${s.port}`),
    primary: async () => {
      const port = await primaryPortNow();
      const node = byPort(port);
      if (!node) throw new Error(`the sentinels name an unknown primary on port ${port}`);
      return node;
    },
    waitForNewPrimary: (fromPort, timeoutMs = 30_000) =>
      until(
        'a new primary',
        async () => {
          const port = await primaryPortNow();
          if (port === fromPort) return undefined;
          const node = byPort(port);
          // The sentinels switch first; wait until the node itself accepts writes.
          if (!node || !/role:master/.test(await node.cli('INFO', 'replication'))) return undefined;
          return node;
        },
        timeoutMs,
        50,
      ),
    waitForReplica: (node, timeoutMs = 30_000) =>
      until(`${node.name} to replicate`, () => linkUp(node), timeoutMs, 200).then(() => undefined),
    stop: async () => {
      await Promise.all([...sentinels, ...nodes].map((n) => n.kill('SIGKILL')));
    },
  };
}
