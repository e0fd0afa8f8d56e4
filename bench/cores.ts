import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type RequestShape } from './lib/load';
import { runPaced } from './lib/paced';
import { processTree } from './lib/proc';
import { summarizeProfile } from './lib/profile';
import { startMayfly } from './lib/servers';
import { makeSoakCa } from './lib/soak/ca';

/**
 * Where a cluster's extra CPU per certificate goes (issue #18, item 2): each side (one
 * process, node cluster with round-robin or OS scheduling, ...) runs the same phases, paced
 * at fixed rates (so that the load generator's share of the machine is the same on every
 * side) and closed-loop at saturation, and for every phase the CPU of each of the server's
 * processes is read from /proc: user and system time, voluntary and involuntary context
 * switches (all threads). Rounds alternate the sides (reversed every other round); the
 * report gives medians.
 *
 *   node dist/bench/cores.js [--sides one,rr2,none2] [--rates 400,900] [--rounds 3]
 *                            [--seconds 6] [--profile] [--out FILE]
 *
 * --profile: after the rounds, one more round per side under `node --cpu-prof` (each process
 * writes its own profile), saturation only, and the share of GC, OpenSSL and the rest of the
 * main thread per certificate for the primary and the workers.
 */

const TICKS = 100;

interface Side {
  readonly key: string;
  readonly name: string;
  readonly env: Record<string, string>;
}

const SIDES: Record<string, Side> = {
  one: { key: 'one', name: 'one process', env: { MAYFLY_WORKERS: '1' } },
  rr2: { key: 'rr2', name: 'cluster, 2 workers, round-robin', env: { MAYFLY_WORKERS: '2' } },
  none2: {
    key: 'none2',
    name: 'cluster, 2 workers, SCHED_NONE',
    env: { MAYFLY_WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: 'none' },
  },
  rr3: { key: 'rr3', name: 'cluster, 3 workers, round-robin', env: { MAYFLY_WORKERS: '3' } },
  none3: {
    key: 'none3',
    name: 'cluster, 3 workers, SCHED_NONE',
    env: { MAYFLY_WORKERS: '3', NODE_CLUSTER_SCHED_POLICY: 'none' },
  },
  onenb: {
    key: 'onenb',
    name: 'one process, no stage batching',
    env: { MAYFLY_WORKERS: '1', MAYFLY_STAGE_BATCHING: 'false' },
  },
  rr2nb: {
    key: 'rr2nb',
    name: 'cluster, 2 workers, round-robin, no stage batching',
    env: { MAYFLY_WORKERS: '2', MAYFLY_STAGE_BATCHING: 'false' },
  },
  none2nb: {
    key: 'none2nb',
    name: 'cluster, 2 workers, SCHED_NONE, no stage batching',
    env: { MAYFLY_WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: 'none', MAYFLY_STAGE_BATCHING: 'false' },
  },
};

interface Counters {
  readonly user: number;
  readonly system: number;
  readonly voluntary: number;
  readonly involuntary: number;
}

function counters(pid: number): Counters {
  let user = 0;
  let system = 0;
  let voluntary = 0;
  let involuntary = 0;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    user = Number(fields[11]) / TICKS;
    system = Number(fields[12]) / TICKS;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
      voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    }
  } catch {
    // gone
  }
  return { user, system, voluntary, involuntary };
}

interface PhaseFigures {
  readonly certificates: number;
  readonly seconds: number;
  readonly p99: number;
  readonly failures: number;
  /** Per role ('primary' / 'workers' / 'process'), per certificate: µs user, µs system, switches. */
  readonly roles: Record<string, { userUs: number; systemUs: number; vcs: number; ics: number }>;
}

async function measure(
  root: number,
  run: () => Promise<{ certificates: number; seconds: number; p99: number; failures: number }>,
): Promise<PhaseFigures> {
  const pids = processTree(root);
  const before = new Map(pids.map((p) => [p, counters(p)]));
  const result = await run();
  const roles: PhaseFigures['roles'] = {};
  const single = pids.length === 1;
  for (const pid of pids) {
    const a = before.get(pid)!;
    const b = counters(pid);
    const role = single ? 'process' : pid === root ? 'primary' : 'workers';
    const r = (roles[role] ??= { userUs: 0, systemUs: 0, vcs: 0, ics: 0 });
    const n = Math.max(1, result.certificates);
    r.userUs += ((b.user - a.user) / n) * 1e6;
    r.systemUs += ((b.system - a.system) / n) * 1e6;
    r.vcs += (b.voluntary - a.voluntary) / n;
    r.ics += (b.involuntary - a.involuntary) / n;
  }
  return { ...result, roles };
}

function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '–';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      sides: { type: 'string', default: 'one,rr2,none2' },
      rates: { type: 'string', default: '400,900' },
      rounds: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '6' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '32' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
    strict: true,
  });
  const sides = values.sides.split(',').map((k) => {
    const side = SIDES[k];
    if (!side) throw new Error(`unknown side ${k}; one of ${Object.keys(SIDES).join(', ')}`);
    return side;
  });
  const rates = values.rates
    .split(',')
    .filter(Boolean)
    .map((r) => Number(r));
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const connections = Number(values.connections);

  const dir = scratchDir();
  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const fixtures = await makeFixtures(issuer, 2000);
  const requests: RequestShape[] = v2Requests(fixtures);
  const ca = await makeSoakCa(dir);
  const baseEnv = {
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'file',
    MAYFLY_CA_CERT: ca.chainFile,
    MAYFLY_CA_KEY: ca.keyFile,
  };
  const phases = [...rates.map((r) => `${r}/s`), 'saturation'];
  const results = new Map<string, PhaseFigures[]>();
  const load: number[] = [loadavg()[0]!];
  const started = new Date();

  const runPhase = async (url: string, pid: number, phase: string) => {
    if (phase === 'saturation') {
      return measure(pid, async () => {
        const r = await runLoad({
          url,
          requests,
          connections,
          duration: seconds,
          serverPid: pid,
          okStatus: 200,
        });
        return {
          certificates: r.certificates,
          seconds: r.seconds,
          p99: r.p99,
          failures: r.failures,
        };
      });
    }
    const rate = Number(phase.replace('/s', ''));
    return measure(pid, async () => {
      const r = await runPaced({ url, requests, rate, seconds, serverPid: pid, okStatus: 200 });
      return { certificates: r.certificates, seconds, p99: r.p99, failures: r.failures };
    });
  };

  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const server = await startMayfly(`cores-${side.key}`, dir, { ...baseEnv, ...side.env });
      try {
        await runLoad({
          url: server.url,
          requests,
          connections,
          duration: warmup,
          serverPid: server.pid,
          okStatus: 200,
        });
        for (const phase of phases) {
          const figures = await runPhase(server.url, server.pid, phase);
          const key = `${side.key}|${phase}`;
          (results.get(key) ?? results.set(key, []).get(key)!).push(figures);
          const total = Object.values(figures.roles).reduce((s, r) => s + r.userUs + r.systemUs, 0);
          process.stderr.write(
            `round ${round + 1} ${side.name} ${phase}: ${fmt(figures.certificates / figures.seconds)} certs/s, ${fmt(total)} µs CPU/cert, p99 ${figures.p99} ms\n`,
          );
        }
      } finally {
        await server.stop();
      }
    }
    load.push(loadavg()[0]!);
  }

  const lines: string[] = [
    `# Where the cluster's CPU goes — ${started.toISOString()}`,
    '',
    `Command: \`node dist/bench/cores.js ${process.argv.slice(2).join(' ')}\` (after \`npx tsc -p tsconfig.bench.json\`). ${cpus().length} × ${cpus()[0]?.model ?? '?'}; the machine was shared with other engineers' work (load average ${load.map((l) => l.toFixed(1)).join(' → ')}): compare the sides of this run only.`,
    '',
    `Each round, every side in turn (reversed every other round), a fresh server (as shipped: ${'`npm start`'} flags, file CA, rate limits off, info and audit logs to files), ${warmup} s closed-loop warm-up, then ${phases.join(', ')} for ${seconds} s each (paced: open loop at that rate; saturation: ${connections} keep-alive connections, closed loop). Figures per certificate, medians over ${rounds} rounds; CPU from /proc/<pid>/stat (all threads), context switches summed over /proc/<pid>/task/*/status.`,
    '',
  ];
  for (const phase of phases) {
    lines.push(`## ${phase}`, '');
    lines.push(
      '| side | certs/s | p99 ms | CPU µs/cert | of which primary | user µs | system µs | voluntary switches/cert | involuntary/cert |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const side of sides) {
      const rs = results.get(`${side.key}|${phase}`) ?? [];
      const sum = (r: PhaseFigures, f: (x: PhaseFigures['roles'][string]) => number) =>
        Object.values(r.roles).reduce((s, x) => s + f(x), 0);
      const total = median(rs.map((r) => sum(r, (x) => x.userUs + x.systemUs)));
      const primary = median(
        rs.map((r) => (r.roles.primary ? r.roles.primary.userUs + r.roles.primary.systemUs : NaN)),
      );
      lines.push(
        `| ${side.name} | ${fmt(median(rs.map((r) => r.certificates / r.seconds)))} | ${fmt(median(rs.map((r) => r.p99)), 1)} | **${fmt(total)}** | ${fmt(primary)} | ${fmt(median(rs.map((r) => sum(r, (x) => x.userUs))))} | ${fmt(median(rs.map((r) => sum(r, (x) => x.systemUs))))} | ${fmt(median(rs.map((r) => sum(r, (x) => x.vcs))), 2)} | ${fmt(median(rs.map((r) => sum(r, (x) => x.ics))), 2)} |`,
      );
    }
    lines.push('');
  }

  if (values.profile) {
    lines.push(
      '## Profiles at saturation (node --cpu-prof, one round per side)',
      '',
      'Self time of the sampled main threads per certificate (µs), within the measured window; the primary shown apart.',
      '',
      '| side | process | certificates | sampled µs/cert | GC µs/cert | node:crypto µs/cert | node:http, net µs/cert | (program) µs/cert |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const side of sides) {
      const profDir = join(dir, `prof-${side.key}`);
      mkdirSync(profDir, { recursive: true });
      const server = await startMayfly(`cores-prof-${side.key}`, dir, { ...baseEnv, ...side.env }, [
        '--cpu-prof',
        `--cpu-prof-dir=${profDir}`,
      ]);
      let certificates = 0;
      const pids = processTree(server.pid);
      let from = 0;
      let to = 0;
      try {
        await runLoad({
          url: server.url,
          requests,
          connections,
          duration: warmup,
          serverPid: server.pid,
          okStatus: 200,
        });
        from = Number(process.hrtime.bigint() / 1000n);
        const r = await runLoad({
          url: server.url,
          requests,
          connections,
          duration: seconds,
          serverPid: server.pid,
          okStatus: 200,
        });
        to = Number(process.hrtime.bigint() / 1000n);
        certificates = r.certificates;
      } finally {
        await server.stop();
      }
      await new Promise((r) => setTimeout(r, 1000));
      for (const file of existsSync(profDir) ? readdirSync(profDir) : []) {
        const pid = Number(/^CPU\.\d+\.\d+\.(\d+)\./.exec(file)?.[1]);
        const role =
          pids.length === 1 ? 'process' : pid === server.pid ? 'primary' : `worker ${pid}`;
        const summary = summarizeProfile(readFileSync(join(profDir, file), 'utf8'), certificates, {
          from,
          to,
        });
        const area = (name: RegExp) =>
          summary.areas.filter((a) => name.test(a.name)).reduce((s, a) => s + a.ms, 0);
        const per = (ms: number) => fmt((ms * 1000) / Math.max(1, certificates));
        lines.push(
          `| ${side.name} | ${role} | ${fmt(certificates)} | ${per(summary.totalMs)} | ${per(area(/garbage/))} | ${per(area(/node:crypto/))} | ${per(area(/node:http/))} | ${per(area(/program/))} |`,
        );
      }
    }
    lines.push('');
  }
  await issuer.close();
  const report = lines.join('\n');
  process.stdout.write(report);
  if (values.out) {
    mkdirSync(resolve(values.out, '..'), { recursive: true });
    writeFileSync(values.out, report);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `cores: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
