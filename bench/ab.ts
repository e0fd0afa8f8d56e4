import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor, LOOPBACK_CA_ENV } from '../test/helpers/mayfly-process';
import { CA_ENV, CA_NODE_ARGS } from '../services/common/ca-runtime';
import { usableCoresHere } from '../services/common/cpu-limit';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type LoadResult, type RequestShape } from './lib/load';
import { runPaced } from './lib/paced';
import { peakRssMb, processTree } from './lib/proc';
import { THREAD_CLASSES, threadSamples, threadUsage, type ThreadUsage } from './lib/threads';

/**
 * A/B comparison of two ways to run mayfly under the same load, in one run: rounds alternate
 * A, B, A, B, ... (each round a fresh process: warm-up, then a measured closed-loop run), and
 * the report compares the medians, so that a machine whose load drifts (ours is shared)
 * shifts both sides alike.
 *
 *   node dist/bench/ab.js --scenario batching   # stage batching (next-turn) on vs off,
 *                                               # same build, MAYFLY_STAGE_BATCHING
 *   node dist/bench/ab.js --scenario semispace --semi 2
 *                                               # node --max-semi-space-size=2 vs node's default
 *   node dist/bench/ab.js --scenario memory --semi 2
 *                                               # the above and MALLOC_ARENA_MAX=2 vs defaults
 *   node dist/bench/ab.js --scenario flags --flags=--optimize-for-size
 *                                               # node flags vs node's defaults, same build
 *   node dist/bench/ab.js --scenario shipped --base DIR
 *                                               # this build with the CA runtime settings
 *                                               # (services/common/ca-runtime.ts) vs another
 *                                               # build run as plain node
 *   node dist/bench/ab.js --scenario workers    # the default worker count (MAYFLY_WORKERS
 *                                               # unset: one per usable core) vs one process
 *   node dist/bench/ab.js --scenario build --base DIR
 *                                               # this build vs another (e.g. a base commit
 *                                               # built in DIR), same settings
 *
 *   node dist/bench/ab.js --scenario env --env 'MAYFLY_X=1'
 *                                               # the same build with and without variables
 *
 * Options: --rounds N (per side, default 5), --seconds S (measured, default 8), --warmup S
 * (default 3), --connections N (default 16), --out FILE (a markdown report). --paced RATE
 * offers RATE requests/s in an open loop (bench/lib/paced.ts) instead of the closed loop, for
 * CPU per certificate at a steady rate rather than at saturation. --shipped runs both sides as
 * `npm start` does (services/common/ca-runtime.ts: its node flags and variables). Each
 * round also splits the server's CPU by thread (main, libuv's pool, V8's workers: user and
 * system time) and counts context switches (bench/lib/threads.ts).
 */

const repoRoot = resolve(__dirname, '../..');

interface Side {
  readonly name: string;
  readonly mainJs: string;
  readonly env: Record<string, string>;
  /** node options before the script (e.g. V8 heap flags). */
  readonly nodeArgs?: readonly string[];
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

async function startServer(side: Side, dir: string, env: Record<string, string>) {
  const out = join(dir, `${side.name.replace(/\W+/g, '-')}.log`);
  const fd = openSync(out, 'w');
  const child = spawn(process.execPath, [...(side.nodeArgs ?? []), side.mainJs], {
    cwd: repoRoot,
    // An empty value leaves the variable unset (the service's own default).
    env: Object.fromEntries(
      Object.entries({
        PATH: process.env.PATH ?? '',
        ...LOOPBACK_CA_ENV,
        // One process unless a side says otherwise (the default is one per usable core).
        MAYFLY_WORKERS: '1',
        MAYFLY_LOG_LEVEL: 'info',
        MAYFLY_AUDIT_LOG_FILE: join(dir, 'audit.log'),
        MAYFLY_RATELIMITS: 'off',
        ...env,
        ...side.env,
      }).filter(([, v]) => v !== ''),
    ),
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  children.add(child);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(out, 'utf8'));
    if (match) {
      return {
        pid: child.pid!,
        url: `http://127.0.0.1:${match[1]}`,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => {
              children.delete(child);
              done();
            });
            child.kill('SIGKILL');
          }),
      };
    }
    if (child.exitCode !== null)
      throw new Error(`${side.name} exited: ${readFileSync(out, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`${side.name} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      scenario: { type: 'string', default: 'batching' },
      base: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '16' },
      semi: { type: 'string', default: '2' },
      flags: { type: 'string' },
      env: { type: 'string' },
      paced: { type: 'string' },
      shipped: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const connections = Number(values.connections);
  const thisMain = join(repoRoot, 'dist/services/ca/main.js');
  let sides: [Side, Side];
  let question: string;
  if (values.scenario === 'batching') {
    question =
      'stage batching (services/common/next-turn.ts: the RA yields to the event loop between its stages): the same build with MAYFLY_STAGE_BATCHING on and off';
    sides = [
      { name: 'batching on', mainJs: thisMain, env: { MAYFLY_STAGE_BATCHING: 'true' } },
      { name: 'batching off', mainJs: thisMain, env: { MAYFLY_STAGE_BATCHING: 'false' } },
    ];
  } else if (values.scenario === 'workers') {
    const cores = usableCoresHere();
    question = `the default number of processes (MAYFLY_WORKERS unset: one worker per usable core, here ${cores.cores}: ${cores.reason}; node cluster, round-robin) against one process (MAYFLY_WORKERS=1), same build, as shipped (node ${CA_NODE_ARGS.join(' ')}, ${Object.entries(
      CA_ENV,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')})`;
    sides = [
      {
        name: `defaults (${cores.cores > 1 ? `${cores.cores} workers` : 'one process'})`,
        mainJs: thisMain,
        env: { ...CA_ENV, MAYFLY_WORKERS: '' },
        nodeArgs: CA_NODE_ARGS,
      },
      {
        name: 'one process',
        mainJs: thisMain,
        env: { ...CA_ENV, MAYFLY_WORKERS: '1' },
        nodeArgs: CA_NODE_ARGS,
      },
    ];
  } else if (values.scenario === 'build') {
    if (!values.base) throw new Error('--scenario build needs --base DIR (a built checkout)');
    const base = resolve(values.base);
    question = `this build against the build in ${base}, same settings`;
    sides = [
      { name: 'this build', mainJs: thisMain, env: {} },
      { name: 'base build', mainJs: join(base, 'dist/services/ca/main.js'), env: {} },
    ];
  } else if (values.scenario === 'shipped') {
    if (!values.base) throw new Error('--scenario shipped needs --base DIR (a built checkout)');
    const base = resolve(values.base);
    question = `this build as \`npm start\` runs it (node ${CA_NODE_ARGS.join(' ')}, ${Object.entries(
      CA_ENV,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}) against the build in ${base} run as \`node dist/services/ca/main.js\``;
    sides = [
      { name: 'this build, shipped', mainJs: thisMain, env: { ...CA_ENV }, nodeArgs: CA_NODE_ARGS },
      { name: 'base build, plain node', mainJs: join(base, 'dist/services/ca/main.js'), env: {} },
    ];
  } else if (values.scenario === 'semispace') {
    const mb = Number(values.semi);
    question = `V8's young generation capped (node --max-semi-space-size=${mb}, MB) against node's default, same build`;
    sides = [
      {
        name: `semi-space ${mb} MB`,
        mainJs: thisMain,
        env: {},
        nodeArgs: [`--max-semi-space-size=${mb}`],
      },
      { name: 'node default', mainJs: thisMain, env: {} },
    ];
  } else if (values.scenario === 'memory') {
    const mb = Number(values.semi);
    question = `the memory settings of the image (node --max-semi-space-size=${mb} and MALLOC_ARENA_MAX=2: glibc keeps two malloc arenas instead of eight per core for OpenSSL's and libuv's threads) against node's and glibc's defaults, same build`;
    sides = [
      {
        name: 'image memory settings',
        mainJs: thisMain,
        env: { MALLOC_ARENA_MAX: '2' },
        nodeArgs: [`--max-semi-space-size=${mb}`],
      },
      { name: 'defaults', mainJs: thisMain, env: {} },
    ];
  } else if (values.scenario === 'flags') {
    // --flags '--optimize-for-size MALLOC_ARENA_MAX=2': node flags and NAME=VALUE variables.
    const words = (values.flags ?? '').split(/\s+/).filter(Boolean);
    if (words.length === 0) throw new Error('--scenario flags needs --flags="NODE FLAGS"');
    const flags = words.filter((w) => w.startsWith('-'));
    const env = Object.fromEntries(
      words.filter((w) => !w.startsWith('-')).map((w) => [w.split('=')[0]!, w.split('=')[1]!]),
    );
    question = `node ${words.join(' ')} against node's and glibc's defaults, same build`;
    sides = [
      { name: words.join(' '), mainJs: thisMain, env, nodeArgs: flags },
      { name: 'defaults', mainJs: thisMain, env: {} },
    ];
  } else if (values.scenario === 'env') {
    const words = (values.env ?? '').split(/\s+/).filter(Boolean);
    if (words.length === 0) throw new Error('--scenario env needs --env="NAME=VALUE ..."');
    const env = Object.fromEntries(
      words.map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
    );
    question = `the same build with ${words.join(' ')} and without`;
    sides = [
      { name: words.join(' '), mainJs: thisMain, env },
      { name: 'without', mainJs: thisMain, env: {} },
    ];
  } else throw new Error(`unknown scenario ${values.scenario}`);
  if (values.shipped) {
    const shipped = (side: Side): Side => ({
      ...side,
      env: { ...CA_ENV, ...side.env },
      nodeArgs: [...CA_NODE_ARGS, ...(side.nodeArgs ?? [])],
    });
    sides = [shipped(sides[0]), shipped(sides[1])];
  }
  const paced = values.paced === undefined ? undefined : Number(values.paced);

  const dir = scratchDir();
  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const fixtures = await makeFixtures(issuer, 2000);
  const requests: RequestShape[] = v2Requests(fixtures);
  const env = { MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir) };
  const results = new Map<string, LoadResult[]>(sides.map((s) => [s.name, []]));
  const peaks = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const threads = new Map<string, { usage: ThreadUsage; certificates: number }[]>(
    sides.map((s) => [s.name, []]),
  );
  const load: number[] = [loadavg()[0]!];
  const started = new Date();
  for (let round = 0; round < rounds; round++) {
    // A, B in odd rounds and B, A in even ones: neither side always goes first.
    const order = round % 2 === 0 ? sides : ([sides[1], sides[0]] as const);
    for (const side of order) {
      const server = await startServer(side, dir, env);
      try {
        const run = async (duration: number): Promise<LoadResult> => {
          if (paced === undefined)
            return runLoad({
              url: server.url,
              requests,
              connections,
              duration,
              serverPid: server.pid,
              okStatus: 200,
            });
          const r = await runPaced({
            url: server.url,
            requests,
            rate: paced,
            seconds: duration,
            serverPid: server.pid,
            okStatus: 200,
          });
          return {
            requests: r.certificates + r.failures,
            certificates: r.certificates,
            failures: r.failures,
            seconds: duration,
            certificatesPerSecond: r.achieved,
            offeredRate: paced,
            p50: r.p50,
            p90: r.p90,
            p99: r.p99,
            max: r.max,
            serverCpuSeconds: (r.cpuSecondsPer1000 * r.certificates) / 1000,
            cpuSecondsPer1000: r.cpuSecondsPer1000,
            serverProcesses: 1,
            rssMbAfter: [],
          };
        };
        if (paced === undefined) await run(warmup);
        else {
          // As bench/lib/versus.ts: warmed at saturation (V8 has compiled the hot code: at
          // 200/s a fresh process spends seconds more in its compiler threads), then a
          // second at the measured pace.
          await runLoad({
            url: server.url,
            requests,
            connections,
            duration: warmup,
            serverPid: server.pid,
            okStatus: 200,
          });
          await run(1);
        }
        const before = threadSamples(server.pid);
        const result = await run(seconds);
        threads.get(side.name)!.push({
          usage: threadUsage(server.pid, before, threadSamples(server.pid)),
          certificates: result.certificates,
        });
        results.get(side.name)!.push(result);
        peaks.get(side.name)!.push(Math.max(...peakRssMb(processTree(server.pid))));
        process.stderr.write(
          `round ${round + 1} ${side.name}: ${fmt(result.certificatesPerSecond)} certs/s, ${fmt(result.cpuSecondsPer1000, 3)} CPU-s/1000, p99 ${result.p99} ms, ${result.failures} failures\n`,
        );
      } finally {
        await server.stop();
      }
    }
    load.push(loadavg()[0]!);
  }
  await issuer.close();

  const [a, b] = sides.map((s) => results.get(s.name)!);
  const row = (name: string, rs: readonly LoadResult[]) =>
    `| ${name} | ${rs.map((r) => fmt(r.cpuSecondsPer1000, 3)).join(' / ')} | **${fmt(median(rs.map((r) => r.cpuSecondsPer1000)), 3)}** | ${fmt(median(rs.map((r) => r.certificatesPerSecond)))} | ${fmt(median(rs.map((r) => r.p50)))} | ${fmt(median(rs.map((r) => r.p99)))} | ${fmt(median(peaks.get(name)!), 1)} | ${rs.reduce((n, r) => n + r.failures, 0)} |`;
  const cpuA = median(a!.map((r) => r.cpuSecondsPer1000));
  const cpuB = median(b!.map((r) => r.cpuSecondsPer1000));
  const perRound = a!.map((r, i) => r.cpuSecondsPer1000 / b![i]!.cpuSecondsPer1000 - 1);
  const command = `node dist/bench/ab.js ${process.argv.slice(2).join(' ')}`;
  // Per certificate, medians of the rounds: µs of CPU by thread class (user + system) and
  // context switches.
  const perCert = (name: string, pick: (u: ThreadUsage) => number, scale: number) =>
    median(threads.get(name)!.map((t) => (pick(t.usage) / t.certificates) * scale));
  const threadRow = (name: string) => {
    const cells = THREAD_CLASSES.map(
      (cls) =>
        `${fmt(perCert(name, (u) => u.user[cls] ?? 0, 1e6))} + ${fmt(perCert(name, (u) => u.system[cls] ?? 0, 1e6))}`,
    );
    const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
    const onCpu = threads.get(name)!.map((t) => (t.usage.onCpu / t.certificates) * 1e6);
    const switches = (pick: (u: ThreadUsage) => number) => fmt(perCert(name, pick, 1), 2);
    return `| ${name} | ${onCpu.map((v) => fmt(v)).join(' / ')} | **${fmt(median(onCpu))}** | ${cells.join(' | ')} | ${switches((u) => u.voluntarySwitches.main ?? 0)} / ${switches((u) => u.voluntarySwitches['other threads'] ?? 0)} | ${switches((u) => sum(u.involuntarySwitches))} |`;
  };
  const loadLine =
    paced === undefined
      ? `${connections} keep-alive connections, closed loop`
      : `an open loop at ${fmt(paced)} requests/s (bench/lib/paced.ts: keep-alive connections, request i due at i / rate)`;
  const report = [
    `# A/B: ${sides[0].name} vs ${sides[1].name}`,
    '',
    `- Question: ${question}.`,
    `- Command: \`${command}\` (after \`npx tsc -p tsconfig.bench.json\`), ${started.toISOString()}.`,
    `- Load: POST /api/v2/signingCert, ES256 tokens, a fresh P-256 key and proof per request (2,000 fixtures), ${loadLine}; each round a fresh server process, ${warmup} s warm-up${paced === undefined ? '' : ' at saturation (closed loop, as bench/lib/versus.ts) and 1 s at the pace'} then ${seconds} s measured; ${rounds} rounds per side, alternating (A B, B A, ...). Rate limits off; info logs and the audit log to files; ${values.shipped ? 'both sides run as `npm start` runs the CA (services/common/ca-runtime.ts)' : 'plain node unless the side says otherwise'}.`,
    `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, shared with other engineers' work while this ran: load average (1 min) ${load.map((l) => l.toFixed(1)).join(' → ')}. Compare the two sides of this run only, not with other files.`,
    '',
    '| side | server CPU-s per 1,000 certificates, each round | median | certs/s (median) | p50 ms | p99 ms | peak RSS MB (median) | failures |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    row(sides[0].name, a!),
    row(sides[1].name, b!),
    '',
    `**${sides[0].name} / ${sides[1].name}, CPU per certificate (medians): ${fmt((cpuA / cpuB - 1) * 100, 1)} %**; per round pair: ${perRound.map((x) => `${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} %`).join(', ')}.`,
    '',
    `**${sides[0].name} / ${sides[1].name}, certificates/s (medians): ${fmt((median(a!.map((r) => r.certificatesPerSecond)) / median(b!.map((r) => r.certificatesPerSecond)) - 1) * 100, 1)} %**; per round pair: ${a!
      .map((r, i) => r.certificatesPerSecond / b![i]!.certificatesPerSecond - 1)
      .map((x) => `${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} %`)
      .join(', ')}.`,
    '',
    'By thread, per certificate: time on a CPU from schedstat (nanoseconds, all threads, each round and median: finer than the 10 ms ticks above); then medians of the rounds: CPU µs as user + system (ticks) of the main thread and of all others (V8 platform workers, libuv pool); voluntary context switches of the main thread / of the others; involuntary ones of all threads.',
    '',
    `| side | on CPU µs, each round | median | ${THREAD_CLASSES.map((c) => `${c} µs`).join(' | ')} | voluntary switches main / others | involuntary switches |`,
    `| --- | --- | --- | ${THREAD_CLASSES.map(() => '---').join(' | ')} | --- | --- |`,
    threadRow(sides[0].name),
    threadRow(sides[1].name),
    '',
  ].join('\n');
  process.stdout.write(report);
  if (values.out) {
    mkdirSync(resolve(values.out, '..'), { recursive: true });
    writeFileSync(values.out, report);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
