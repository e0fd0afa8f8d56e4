import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { usableCoresHere } from '../../services/common/cpu-limit';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  ensureBuilt,
  identityConfigFor,
  mainJs,
  postSigningRequest,
  repoRoot,
  signingBody,
  waitFor,
} from '../helpers/mayfly-process';

/**
 * The compiled service with MAYFLY_WORKERS unset: outside Kubernetes one worker per core
 * the process may use (CPU affinity, cgroup limit), none when that is one core; in
 * Kubernetes one process. The start-up output says how many and why, and the worker
 * processes are counted in /proc.
 */

let issuer: DevIssuer;
let identityConfig: string;
const started = new Set<ChildProcess>();

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
}, 120_000);

afterAll(async () => {
  for (const child of started) child.kill('SIGKILL');
  await issuer?.close();
});

/** Node processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * A new cgroup limited to `quota` of a core (v1 `cpu` controller, else v2 with the cpu
 * controller on), and the shell wrapper that moves the service into it before exec. CI runs
 * as root on a machine with one or the other.
 */
function limitedCgroup(quota: number): { wrapper: string[]; remove: () => void } {
  const name = `mayfly-cores-test-${process.pid}`;
  const period = 100_000;
  const v1 = '/sys/fs/cgroup/cpu';
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? '/sys/fs/cgroup'
    : '/sys/fs/cgroup/unified';
  let dir: string;
  if (existsSync(`${v1}/cpu.cfs_quota_us`)) {
    dir = `${v1}/${name}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.cfs_period_us`, String(period));
    writeFileSync(`${dir}/cpu.cfs_quota_us`, String(Math.round(quota * period)));
  } else if (/\bcpu\b/.test(readFileSync(`${v2}/cgroup.subtree_control`, 'utf8'))) {
    dir = `${v2}/${name}`;
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.max`, `${Math.round(quota * period)} ${period}`);
  } else throw new Error('no cgroup CPU controller to limit a process with (v1 cpu, or v2 cpu)');
  return {
    wrapper: ['sh', '-c', `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`],
    remove: () => rmdirSync(dir),
  };
}

async function startDefault(extraEnv: Record<string, string>, wrapper: string[] = []) {
  const argv = [...wrapper, process.execPath, mainJs];
  // The environment is built from scratch: no MAYFLY_WORKERS, no KUBERNETES_SERVICE_HOST
  // unless given.
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_HOST: '127.0.0.1',
      MAYFLY_PORT: '0',
      MAYFLY_METRICS_HOST: '127.0.0.1',
      MAYFLY_METRICS_PORT: '0',
      MAYFLY_GRPC_PORT: 'off',
      MAYFLY_LOG_LEVEL: 'info',
      MAYFLY_IDENTITY_CONFIG: identityConfig,
      MAYFLY_RATELIMITS: 'off',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const match = await waitFor(
    () => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out),
    'the listening line',
    30_000,
  );
  const line = await waitFor(() => /^mayfly: (.*)$/m.exec(out), 'the processes line');
  const listening = await waitFor(
    () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'mayfly listening' && 'workers' in l),
    // A cluster's workers log their own line, without the count.
    'the listening log line with the count',
  );
  // The process wrapper (taskset) execs node: the pid is node's.
  const workers = childrenOf(child.pid!);
  const stop = async () => {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    started.delete(child);
  };
  return {
    url: `http://127.0.0.1:${match[1]}`,
    line: line[1]!,
    listening,
    workers,
    stop,
    out: () => out,
  };
}

test('unset, outside Kubernetes: one worker per usable core (none on one core), and says why', async () => {
  const expected = usableCoresHere();
  const proc = await startDefault({});
  try {
    if (expected.cores > 1) {
      expect(proc.line).toBe(
        `${expected.cores} worker processes (default: one per core (${expected.reason}))`,
      );
      expect(proc.workers).toHaveLength(expected.cores);
      expect(proc.listening.workers).toBe(expected.cores);
    } else {
      expect(proc.line).toBe(
        `one process, no cluster (default: one per core (${expected.reason}))`,
      );
      expect(proc.workers).toHaveLength(0);
      expect(proc.listening.workers).toBe(1);
    }
    expect(proc.listening.workersReason).toBe(`default: one per core (${expected.reason})`);
    const outcome = await postSigningRequest(
      proc.url,
      await signingBody(issuer, 'cores@example.com'),
    );
    expect(outcome.status).toBe(200);
  } finally {
    await proc.stop();
  }
}, 60_000);

test('unset, on one CPU (taskset): one process, no cluster', async () => {
  const proc = await startDefault({}, ['taskset', '-c', '0']);
  try {
    expect(proc.line).toMatch(
      /^one process, no cluster \(default: one per core \(1 CPUs available/,
    );
    expect(proc.workers).toHaveLength(0);
  } finally {
    await proc.stop();
  }
}, 60_000);

test('unset, in Kubernetes: one process per pod', async () => {
  const proc = await startDefault({ KUBERNETES_SERVICE_HOST: 'kubernetes.default.svc' });
  try {
    expect(proc.line).toMatch(/^one process, no cluster \(default in Kubernetes/);
    expect(proc.workers).toHaveLength(0);
  } finally {
    await proc.stop();
  }
}, 60_000);

test('MAYFLY_WORKERS=0 means one per usable core, here one CPU (taskset)', async () => {
  const proc = await startDefault({ MAYFLY_WORKERS: '0' }, ['taskset', '-c', '0']);
  try {
    expect(proc.line).toBe(
      'one process, no cluster (MAYFLY_WORKERS=0: one per core (1 CPUs available, no cgroup CPU limit))',
    );
  } finally {
    await proc.stop();
  }
}, 60_000);

test('unset, in a cgroup limited to half a core: one process, and the log says it is the cgroup', async () => {
  const cgroup = limitedCgroup(0.5);
  try {
    const proc = await startDefault({}, cgroup.wrapper);
    try {
      const cpus = availableParallelism();
      expect(proc.line).toBe(
        cpus > 1
          ? `one process, no cluster (default: one per core (cgroup CPU limit 0.5 (rounded up to 1) of ${cpus} CPUs available))`
          : 'one process, no cluster (default: one per core (1 CPUs available, cgroup CPU limit 0.5))',
      );
      expect(proc.workers).toHaveLength(0);
    } finally {
      await proc.stop();
    }
  } finally {
    cgroup.remove();
  }
}, 60_000);
