/**
 * What a deployable costs while nobody asks it anything: the CPU of each of its processes
 * over a quiet stretch, once start-up is over (V8 keeps compiling and collecting for some
 * seconds after a process loads its code, so the first `--settle` seconds are not counted).
 * A CA that nobody calls should cost next to nothing; a timer that fires 100 times a second
 * does not.
 *
 *   node dist/bench/idle-cpu.js [--base DIR] [--settle 30] [--seconds 20] [--rounds 2]
 *                               [--out FILE]
 *
 * `--base DIR`: a built checkout to compare with (rounds alternate the builds). The CA runs
 * as shipped (`npm start`'s flags), with its default number of workers, the file CA and its
 * identity config from the dev issuer; the TSA and the CT log run on their embedded defaults.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { LOOPBACK_CA_ENV, identityConfigFor } from '../test/helpers/mayfly-process';
import { scratchDir } from './lib/fixtures';
import { middleMedian } from './lib/load';
import { load1, machineFacts, processTree, treeCpuSeconds } from './lib/proc';
import { CA_ENV, CA_NODE_ARGS } from '../services/common/ca-runtime';
import { spawnServer, stopper, waitForLine } from './lib/servers';
import { makeSoakCa } from './lib/soak/ca';

const repoRoot = resolve(__dirname, '..', '..');

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

interface Deployable {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly ready: RegExp;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      settle: { type: 'string', default: '30' },
      seconds: { type: 'string', default: '20' },
      rounds: { type: 'string', default: '2' },
      out: { type: 'string' },
    },
    strict: true,
  });
  const settle = Number(values.settle);
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const started = new Date();
  const loadBefore = load1();
  const dir = scratchDir();
  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const ca = await makeSoakCa(dir);
  const builds = [
    { name: 'this build', root: repoRoot },
    ...(values.base ? [{ name: 'base build', root: resolve(values.base) }] : []),
  ];
  const deployables = (root: string, tag: string): Deployable[] => [
    {
      name: 'CA (default workers)',
      script: join(root, 'dist/services/ca/main.js'),
      args: CA_NODE_ARGS,
      env: {
        ...CA_ENV,
        ...LOOPBACK_CA_ENV,
        MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
        MAYFLY_RATELIMITS: 'off',
        MAYFLY_CA: 'file',
        MAYFLY_CA_CERT: ca.chainFile,
        MAYFLY_CA_KEY: ca.keyFile,
        MAYFLY_AUDIT_LOG_FILE: join(dir, `audit-${tag}.log`),
      },
      ready: /listening on http:\/\/127\.0\.0\.1:\d+/,
    },
    {
      name: 'TSA',
      script: join(root, 'dist/services/tsa/main.js'),
      args: [],
      env: {
        MAYFLY_TSA_HOST: '127.0.0.1',
        MAYFLY_TSA_PORT: '0',
        MAYFLY_TSA_METRICS_HOST: '127.0.0.1',
        MAYFLY_TSA_METRICS_PORT: '0',
      },
      ready: /mayfly TSA listening on/,
    },
    {
      name: 'CT log (directory)',
      script: join(root, 'dist/services/ctlog/main.js'),
      args: [],
      env: {
        MAYFLY_CTLOG_HOST: '127.0.0.1',
        MAYFLY_CTLOG_PORT: '0',
        MAYFLY_CTLOG_DIR: join(dir, `ctlog-${tag}`),
      },
      ready: /ctlog listening/,
    },
  ];

  // build → deployable → per-round CPU ms per second, per process (primary first).
  const results = new Map<string, Map<string, number[][]>>();
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? builds : [...builds].reverse();
    for (const build of order) {
      const tag = `${build.name.replace(/\W+/g, '-')}-${round}`;
      const running = [];
      for (const d of deployables(build.root, tag)) {
        const out = join(dir, `${d.name.replace(/\W+/g, '-')}-${tag}.log`);
        const child = spawnServer(d.script, [...d.args], d.env, out);
        await waitForLine(out, d.ready, child, d.name);
        running.push({ d, child, stop: stopper(child) });
      }
      log(`idle-cpu: round ${round}, ${build.name}: started, settling ${settle} s`);
      await sleep(settle * 1000);
      const pids = running.map((r) => processTree(r.child.pid!));
      const before = pids.map((ps) => ps.map((pid) => treeCpuSeconds([pid])));
      await sleep(seconds * 1000);
      const after = pids.map((ps) => ps.map((pid) => treeCpuSeconds([pid])));
      running.forEach((r, i) => {
        const perProcess = pids[i]!.map(
          (_, j) => ((after[i]![j]! - before[i]![j]!) / seconds) * 1000,
        );
        const byName = results.get(build.name) ?? new Map<string, number[][]>();
        results.set(build.name, byName);
        byName.set(r.d.name, [...(byName.get(r.d.name) ?? []), perProcess]);
        log(
          `idle-cpu: ${build.name}, ${r.d.name}: ${perProcess.map((v) => v.toFixed(2)).join(' / ')} ms per second`,
        );
      });
      for (const r of running) await r.stop();
    }
  }
  await issuer.close();

  const facts = machineFacts();
  const command = `node dist/bench/idle-cpu.js${values.base ? ' --base DIR' : ''} --settle ${settle} --seconds ${seconds} --rounds ${rounds}`;
  const lines = [
    `# CPU at idle — ${started.toISOString()}`,
    '',
    `Command: \`${command}\` (after \`npx tsc -p tsconfig.bench.json\`).`,
    '',
    `Machine: ${facts.cpu}, ${facts.cores} cores, node ${facts.node}; load average ${loadBefore} before, ${load1()} after.`,
    '',
    `Each deployable started, left alone ${settle} s, then its CPU (all threads, /proc/<pid>/stat, 10 ms ticks) read over ${seconds} s in which nothing called it. ${rounds} rounds${builds.length > 1 ? ', the builds alternating' : ''}; the table gives each round. The CA runs with its default workers: primary first, then each worker.`,
    '',
    '| build | deployable | CPU ms per second, per process, each round |',
    '|---|---|---|',
  ];
  for (const [build, byName] of results)
    for (const [name, perRound] of byName)
      lines.push(
        `| ${build} | ${name} | ${perRound.map((p) => p.map((v) => v.toFixed(1)).join(' + ')).join(' · ')} (total median ${middleMedian(perRound.map((p) => p.reduce((a, b) => a + b, 0))).toFixed(1)}) |`,
      );
  lines.push('');
  const out = resolve(values.out ?? join(repoRoot, 'bench/results/idle-cpu.md'));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, lines.join('\n'));
  log(`idle-cpu: wrote ${out}`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
