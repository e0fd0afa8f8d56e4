import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, type X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePem } from '../../../services/common/encoding';
import { ctLogKey, type CtLogKey } from '../../../services/common/ct/sct';
import {
  postgresBinDir,
  startPostgres,
  type PostgresProcess,
} from '../../../test/helpers/postgres';
import { startNginx, type RunningNginx } from './nginx';
import { exited, isRunning, spawnLogged, stablePort, stopChild, until, waitForLine } from './procs';

/**
 * The soak's CT log (`--ct`): the compiled log (`node dist/services/ctlog/main.js`, as an
 * operator runs it), two replicas on fixed loopback ports sharing one PostgreSQL, with one
 * log key (PKCS#8 PEM) made here for both. One of them sequences, elected by PostgreSQL; the
 * chaos step finds it from its metrics (`mayfly_ctlog_sequencer_leader 1`).
 */

export interface LogKeyFiles {
  /** PKCS#8 PEM private key, for both replicas (MAYFLY_CTLOG_KEY). */
  readonly keyFile: string;
  /** PEM SPKI, for the CA (MAYFLY_CT_LOG_PUBLIC_KEY_FILE). */
  readonly publicKeyFile: string;
  readonly key: CtLogKey;
  /** DER SPKI. */
  readonly spki: Buffer;
}

export function makeLogKey(dir: string): LogKeyFiles {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(dir, 'ctlog-key.pem');
  const publicKeyFile = join(dir, 'ctlog-key.pub.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), {
    mode: 0o600,
  });
  chmodSync(keyFile, 0o600);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  writeFileSync(publicKeyFile, encodePem('PUBLIC KEY', spki));
  return {
    keyFile,
    publicKeyFile,
    key: ctLogKey(createPublicKey({ key: spki, format: 'der', type: 'spki' })),
    spki,
  };
}

export class LogReplica {
  private child: ChildProcess | undefined;
  /** Pids of every process started, in order. */
  readonly pids: number[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly where: {
      readonly mainJs: string;
      readonly cwd: string;
      readonly dir: string;
      readonly env: Record<string, string>;
    },
  ) {}

  get logFile(): string {
    return join(this.where.dir, `${this.name}.log`);
  }

  get pid(): number | undefined {
    return isRunning(this.child) ? this.child.pid : undefined;
  }

  async start(): Promise<number> {
    const began = Date.now();
    const offset = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
    const child = spawnLogged(process.execPath, [this.where.mainJs], {
      logFile: this.logFile,
      cwd: this.where.cwd,
      env: {
        PATH: process.env.PATH ?? '',
        MAYFLY_CTLOG_HOST: '127.0.0.1',
        MAYFLY_CTLOG_PORT: String(this.port),
        ...this.where.env,
      },
    });
    this.child = child;
    await waitForLine(this.logFile, /mayfly-ctlog listening on http:\/\//, child, this.name, {
      offset,
    });
    this.pids.push(child.pid!);
    return Date.now() - began;
  }

  async crash(): Promise<void> {
    await stopChild(this.child, 'SIGKILL');
  }

  async terminate(): Promise<void> {
    await stopChild(this.child, 'SIGTERM', 20_000);
  }

  exited(): Promise<void> {
    return this.child ? exited(this.child) : Promise.resolve();
  }

  /** Whether this replica says it sequences (its metrics); undefined when it cannot say. */
  async leads(): Promise<boolean | undefined> {
    if (!this.pid) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/metrics`, {
        signal: AbortSignal.timeout(2000),
      });
      const m = /^mayfly_ctlog_sequencer_leader (\d+)/m.exec(await res.text());
      return m ? m[1] === '1' : undefined;
    } catch {
      return undefined;
    }
  }

  /** How many times this replica's processes took the sequencer lock (its log lines). */
  leadershipsTaken(): number {
    if (!existsSync(this.logFile)) return 0;
    return readFileSync(this.logFile, 'utf8').split('sequencing: this instance leads').length - 1;
  }
}

/** The one replica that sequences, once exactly one says so (the gauge refreshes each second). */
export function findLeader(replicas: readonly LogReplica[], ms = 20_000): Promise<LogReplica> {
  return until(
    'one CT log replica to lead the sequencer',
    async () => {
      const says = await Promise.all(replicas.map((r) => r.leads()));
      const leaders = replicas.filter((_, i) => says[i] === true);
      return leaders.length === 1 ? leaders[0] : undefined;
    },
    ms,
    250,
  );
}

/** The log's signed tree head size (RFC 6962 get-sth), through the given base URL. */
export async function treeSize(url: string): Promise<number> {
  const res = await fetch(`${url}/ct/v1/get-sth`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`get-sth: HTTP ${res.status}`);
  return ((await res.json()) as { tree_size: number }).tree_size;
}

/**
 * Builds test/go/soak-ct-check with scripts/go-refs.sh (Debian's Go and ct-go sources,
 * offline, cached); returns the binary. (test/helpers/go-refs.ts finds the repository from
 * its own folder, which is wrong once compiled into dist/.)
 */
export function buildInclusionChecker(repoRoot: string): string {
  const out = execFileSync(
    'bash',
    [join(repoRoot, 'scripts/go-refs.sh'), 'build', join(repoRoot, 'test/go/soak-ct-check')],
    { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ).trim();
  if (!out || out.includes('\n') || !existsSync(out))
    throw new Error(`scripts/go-refs.sh build test/go/soak-ct-check printed no binary: ${out}`);
  return out;
}

export interface InclusionCheck {
  readonly treeSize: number;
  readonly checked: number;
  readonly sctVerified: number;
  readonly included: number;
  readonly failures: readonly string[];
  /** Exit status of the checker, and how long it took (ms). */
  readonly code: number;
  readonly ms: number;
}

/**
 * The final, independent check (test/go/soak-ct-check, certificate-transparency-go): every
 * certificate's embedded SCT verified by ct-go, and its entry in the log's tree at the SCT's
 * leaf_index with a valid inclusion proof (get-proof-by-hash) against a verified STH.
 */
export function checkInclusion(
  binary: string,
  url: string,
  logKey: LogKeyFiles,
  issuers: readonly X509Certificate[],
  leaves: readonly Buffer[],
): Promise<InclusionCheck> {
  const began = Date.now();
  return new Promise((resolve) => {
    const child = execFile(
      binary,
      [],
      { timeout: 30 * 60_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        const line = stdout.trim().split('\n').pop() ?? '';
        let parsed: Omit<InclusionCheck, 'code' | 'ms'>;
        try {
          parsed = JSON.parse(line) as typeof parsed;
        } catch {
          parsed = {
            treeSize: 0,
            checked: 0,
            sctVerified: 0,
            included: 0,
            failures: [`soak-ct-check: ${(stderr || String(err)).trim().slice(0, 500)}`],
          };
        }
        resolve({ ...parsed, code, ms: Date.now() - began });
      },
    );
    child.stdin!.end(
      JSON.stringify({
        log: url,
        key: logKey.spki.toString('base64'),
        issuers: issuers.map((c) => c.raw.toString('base64')),
        leaves: leaves.map((l) => l.toString('base64')),
      }),
    );
  });
}

export interface SoakLog {
  readonly postgres: PostgresProcess;
  readonly postgresVersion: string;
  readonly replicas: readonly LogReplica[];
  readonly nginx: RunningNginx;
  /** The log's base URL as the CA and the final check see it (its nginx). */
  readonly url: string;
  readonly key: LogKeyFiles;
  stop(): Promise<void>;
}

/**
 * PostgreSQL (initdb in a temporary folder, on a fixed loopback port), two log replicas on
 * it, and an nginx of their own in front (the CA's config: passive health checks, a failed
 * or 502 attempt goes on to the other replica, which is safe, the log deduplicates; but a
 * 503, the database away, goes back to the CA, which retries it). The first replica starts
 * alone, so that it creates the schema.
 */
export async function startSoakLog(input: {
  readonly dir: string;
  readonly mainJs: string;
  readonly cwd: string;
  readonly nginxBinary: string;
  readonly root: X509Certificate;
}): Promise<SoakLog> {
  if (!existsSync(input.mainJs))
    throw new Error(`${input.mainJs} is missing: run \`npm run soak\` (it builds first)`);
  const postgres = await startPostgres(await stablePort());
  const postgresVersion = execFileSync(join(postgresBinDir(), 'postgres'), ['--version'], {
    encoding: 'utf8',
  }).trim();
  const key = makeLogKey(input.dir);
  const rootsFile = join(input.dir, 'ctlog-roots.pem');
  writeFileSync(rootsFile, encodePem('CERTIFICATE', input.root.raw));
  const nginxPort = await stablePort();
  const url = `http://127.0.0.1:${nginxPort}`;
  const env = {
    MAYFLY_LOG_LEVEL: 'info',
    MAYFLY_CTLOG_DATABASE_URL: postgres.url,
    MAYFLY_CTLOG_ROOTS: rootsFile,
    MAYFLY_CTLOG_KEY: key.keyFile,
    MAYFLY_CTLOG_URL: url,
    MAYFLY_CTLOG_DESCRIPTION: 'mayfly soak CT log',
    MAYFLY_CTLOG_SHUTDOWN_GRACE_MS: '5000',
  };
  const replicas: LogReplica[] = [];
  for (const name of ['ctlog-a', 'ctlog-b'])
    replicas.push(
      new LogReplica(name, await stablePort(), {
        mainJs: input.mainJs,
        cwd: input.cwd,
        dir: input.dir,
        env,
      }),
    );
  await replicas[0]!.start();
  await findLeader(replicas.slice(0, 1));
  await replicas[1]!.start();
  const nginx = await startNginx(input.nginxBinary, {
    dir: join(input.dir, 'nginx-ctlog'),
    port: nginxPort,
    upstreams: replicas.map((r) => r.port),
    nextUpstreamOn503: false,
  });
  return {
    postgres,
    postgresVersion,
    replicas,
    nginx,
    url,
    key,
    stop: async () => {
      await nginx.stop();
      await Promise.all(replicas.map((r) => r.terminate()));
      await postgres.destroy();
    },
  };
}
