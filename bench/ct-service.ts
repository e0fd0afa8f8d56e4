/**
 * CT on vs CT off as an operator runs it (issue #17 targets: throughput with CT ≥ 60 % of
 * without, same machine, log and PostgreSQL included; p99 ≤ the log's sequencing interval +
 * 30 ms at 80 % of peak). The compiled CA (`dist/services/ca/main.js`, default settings, one
 * process, the file CA, rate limits off) twice, once with `MAYFLY_CT_LOG_URL` pointing at
 * mayfly's CT log and once without; the log as its own process
 * (`dist/services/ctlog/main.js`) on PostgreSQL (a real server started here with initdb) or
 * on its directory backend. Real v2 requests (an OIDC token from a local issuer, a fresh
 * P-256 key and its proof). Closed-loop rounds alternate the two CAs; then both are paced at
 * 80 % of the CT peak. CPU is read from /proc for the CA, and for the log and PostgreSQL.
 *
 *   npm run bench:ct-service [-- --backend postgres|directory --seconds 5 --rounds 3
 *                                --connections 256 --interval 100 --pace N --workers N
 *                                --profile]
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { encodePem } from '../services/common/encoding';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { freshDatabase } from '../test/helpers/ctlog';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../test/helpers/postgres';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { median, runLoad, type LoadResult, type RequestShape } from './lib/load';
import { runPaced } from './lib/paced';
import { load1, machineFacts, processTree, treeCpuSeconds, waitForQuiet } from './lib/proc';
import { threadSamples, threadUsage } from './lib/threads';
import { spawnServer, startMayfly, stopper, waitForLine, type RunningServer } from './lib/servers';
import { makeSoakCa } from './lib/soak/ca';
import { summarizeProfile } from './lib/profile';

const repoRoot = resolve(__dirname, '..', '..');
const ctlogJs = join(repoRoot, 'dist/services/ctlog/main.js');

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

interface Row {
  readonly round: number;
  readonly mode: 'CT off' | 'CT on';
  readonly result: LoadResult;
  /** CA + log + PostgreSQL CPU-ms per certificate. */
  readonly cpuMs: number;
  readonly caCpuMs: number;
}

async function startLog(
  dir: string,
  env: Record<string, string>,
  prof: string | undefined,
): Promise<RunningServer & { key: Buffer }> {
  const out = join(dir, 'ctlog.log');
  const args = prof ? ['--cpu-prof', `--cpu-prof-dir=${resolve(prof, 'ctlog')}`] : [];
  const child = spawnServer(ctlogJs, args, env, out);
  const match = await waitForLine(out, /"port":(\d+)[^\n]*"msg":"ctlog listening"/, child, 'ctlog');
  const url = `http://127.0.0.1:${match[1]}`;
  const meta = (await (await fetch(`${url}/log.json`)).json()) as { key: string };
  return {
    name: 'ctlog',
    pid: child.pid!,
    url,
    stop: stopper(child),
    key: Buffer.from(meta.key, 'base64'),
  };
}

/** The log's own histograms (sum, count, cumulative buckets), read from its /metrics. */
async function logHistograms(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m =
      /^(mayfly_ctlog_(?:sequencing_duration_seconds|integration_delay_seconds|sequencing_batch_size)_(?:sum|count|bucket)(?:\{[^}]*\})?) ([\d.e+-]+)$/.exec(
        line,
      );
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Means and the share within some bounds between two scrapes, as a line. */
function logTimings(before: Map<string, number>, after: Map<string, number>): string {
  const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const mean = (name: string) => d(`${name}_sum`) / Math.max(1, d(`${name}_count`));
  const share = (name: string, le: string) =>
    d(`${name}_bucket{le="${le}"}`) / Math.max(1, d(`${name}_count`));
  const integration = 'mayfly_ctlog_integration_delay_seconds';
  return [
    `${d('mayfly_ctlog_sequencing_duration_seconds_count')} batches of ${mean('mayfly_ctlog_sequencing_batch_size').toFixed(1)} entries on average`,
    `a batch took ${(mean('mayfly_ctlog_sequencing_duration_seconds') * 1000).toFixed(1)} ms on average`,
    `a submission waited ${(mean(integration) * 1000).toFixed(1)} ms on average from queued to sequenced`,
    `${(share(integration, '0.1') * 100).toFixed(1)} % within 100 ms, ${(share(integration, '0.15') * 100).toFixed(1)} % within 150 ms, ${(share(integration, '0.25') * 100).toFixed(1)} % within 250 ms`,
  ].join('; ');
}

function pgPids(pg: PostgresProcess | undefined): number[] {
  if (!pg) return [];
  const pid = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  return processTree(pid);
}

/** Self time by area over `window`, summed over every profile in `folder` (all processes). */
function areasIn(folder: string, window: { from: number; to: number }): Map<string, number> {
  const areas = new Map<string, number>();
  if (!existsSync(folder)) return areas;
  for (const file of readdirSync(folder).filter((f) => f.endsWith('.cpuprofile'))) {
    const summary = summarizeProfile(readFileSync(join(folder, file), 'utf8'), 1, window);
    for (const a of summary.areas) areas.set(a.name, (areas.get(a.name) ?? 0) + a.ms);
  }
  return areas;
}

/**
 * Where the time of the CA's threads that V8 samples (the main thread of each of its
 * processes) goes while paced, CT off against CT on at the same rate, and the log's.
 */
function profileReport(
  prof: string,
  windows: Record<'on' | 'off', { from: number; to: number }>,
  certificates: Record<'on' | 'off', number>,
): string[] {
  const off = areasIn(join(prof, 'off'), windows.off);
  const on = areasIn(join(prof, 'on'), windows.on);
  const log = areasIn(join(prof, 'ctlog'), windows.on);
  const per = (m: Map<string, number>, name: string, n: number) =>
    ((m.get(name) ?? 0) * 1000) / Math.max(1, n);
  const names = [...new Set([...off.keys(), ...on.keys(), ...log.keys()])].sort(
    (a, b) =>
      per(on, b, certificates.on) -
      per(off, b, certificates.off) -
      (per(on, a, certificates.on) - per(off, a, certificates.off)),
  );
  const total = (m: Map<string, number>, n: number) =>
    ([...m.values()].reduce((a, b) => a + b, 0) * 1000) / Math.max(1, n);
  const f = (x: number) => x.toFixed(1);
  return [
    '## Where the time goes while paced (CPU profiles, self time, µs per certificate)',
    '',
    "The CA's main threads (`node --cpu-prof` in each of its processes), CT off and CT on at the",
    "same rate, and the log's while the CT-on CA was paced; idle time left out. A sample counts the",
    'wall-clock time since the one before, so a busy process that the kernel preempted for another',
    '(the log, PostgreSQL, the other worker, the load generator) is charged for the wait, and the',
    'profiler adds time of its own: compare the columns, not these totals with the CPU above.',
    '',
    '| area | CT off | CT on | CT on − off | the log |',
    '|---|---:|---:|---:|---:|',
    ...names.map(
      (name) =>
        `| ${name} | ${f(per(off, name, certificates.off))} | ${f(per(on, name, certificates.on))} | ${f(per(on, name, certificates.on) - per(off, name, certificates.off))} | ${f(per(log, name, certificates.on))} |`,
    ),
    `| **total** | **${f(total(off, certificates.off))}** | **${f(total(on, certificates.on))}** | **${f(total(on, certificates.on) - total(off, certificates.off))}** | **${f(total(log, certificates.on))}** |`,
    '',
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'postgres' },
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '256' },
      interval: { type: 'string', default: '100' },
      fixtures: { type: 'string', default: '2000' },
      pace: { type: 'string' },
      workers: { type: 'string', default: 'default' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const backend = values.backend === 'directory' ? 'directory' : 'postgres';
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const connections = Number(values.connections);
  const interval = Number(values.interval);
  const started = new Date();
  const loadBefore = load1();
  const dir = scratchDir();
  // --profile (or BENCH_CT_PROF=<dir>): --cpu-prof profiles of both CAs (<dir>/off,
  // <dir>/on) and the log, summarised over the paced phases at the end of the report.
  const prof = values.profile ? join(dir, 'prof') : process.env.BENCH_CT_PROF;
  const servers: { stop(): Promise<void> }[] = [];
  let pg: PostgresProcess | undefined;
  try {
    const issuer = await startDevIssuer({ host: '127.0.0.1' });
    servers.push({ stop: () => issuer.close() });
    log(`ct-service: ${values.fixtures} fixtures`);
    const fixtures = await makeFixtures(issuer, Number(values.fixtures), 'ES256');
    const requests: RequestShape[] = v2Requests(fixtures);
    const ca = await makeSoakCa(dir);
    const rootsFile = join(dir, 'roots.pem');
    writeFileSync(rootsFile, encodePem('CERTIFICATE', Buffer.from(ca.chain.at(-1)!.raw)));

    const logEnv: Record<string, string> = {
      MAYFLY_CTLOG_HOST: '127.0.0.1',
      MAYFLY_CTLOG_PORT: '0',
      MAYFLY_CTLOG_ROOTS: rootsFile,
      MAYFLY_CTLOG_SEQUENCE_INTERVAL_MS: String(interval),
      MAYFLY_LOG_LEVEL: 'info',
    };
    if (backend === 'postgres') {
      log('ct-service: PostgreSQL');
      pg = await startPostgres();
      logEnv.MAYFLY_CTLOG_DATABASE_URL = await freshDatabase(pg);
    } else {
      logEnv.MAYFLY_CTLOG_DIR = join(dir, 'ctlog');
    }
    const ctlog = await startLog(dir, logEnv, prof);
    servers.push(ctlog);
    const logKeyFile = join(dir, 'ctlog.pub');
    writeFileSync(logKeyFile, encodePem('PUBLIC KEY', ctlog.key));

    const baseEnv = {
      MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
      MAYFLY_RATELIMITS: 'off',
      MAYFLY_CA: 'file',
      MAYFLY_CA_CERT: ca.chainFile,
      MAYFLY_CA_KEY: ca.keyFile,
    };
    const profArgs = (name: string) =>
      prof ? ['--cpu-prof', `--cpu-prof-dir=${resolve(prof, name)}`] : [];
    // --workers default: the CA's own default, as deployed (outside Kubernetes one worker per
    // usable core); --workers N: MAYFLY_WORKERS=N.
    const workersEnv: Record<string, string> =
      values.workers === 'default' ? {} : { MAYFLY_WORKERS: String(Number(values.workers)) };
    const caOptions = { oneProcess: false } as const;
    const off = await startMayfly(
      'ca-ct-off',
      dir,
      { ...baseEnv, ...workersEnv },
      profArgs('off'),
      caOptions,
    );
    servers.push(off);
    const on = await startMayfly(
      'ca-ct-on',
      dir,
      {
        ...baseEnv,
        ...workersEnv,
        MAYFLY_CT_LOG_URL: ctlog.url,
        MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
      },
      [...profArgs('on'), ...(process.env.BENCH_CT_ON_ARGS?.split(' ').filter(Boolean) ?? [])],
      caOptions,
    );
    const processes = processTree(off.pid).length;
    servers.push(on);

    const sidePids = () => [ctlog.pid, ...pgPids(pg)];
    const allPids = () => [...processTree(off.pid), ...processTree(on.pid), ...sidePids()];
    const measure = async (
      server: RunningServer,
      options: { duration: number; rate?: number },
    ): Promise<{ result: LoadResult; cpuMs: number; caCpuMs: number }> => {
      // The previous phase's requests (the other CA's, or those waiting on the log) finish
      // first: their CPU is not this phase's.
      await waitForQuiet(allPids());
      const side = sidePids();
      const before = treeCpuSeconds(side);
      const result = await runLoad({
        url: server.url,
        requests,
        connections,
        duration: options.duration,
        ...(options.rate !== undefined ? { rate: options.rate } : {}),
        serverPid: server.pid,
        okStatus: 200,
      });
      const sideCpu = treeCpuSeconds(side) - before;
      const n = Math.max(1, result.certificates);
      return {
        result,
        caCpuMs: (result.serverCpuSeconds / n) * 1000,
        cpuMs: ((result.serverCpuSeconds + sideCpu) / n) * 1000,
      };
    };

    log('ct-service: warm-up');
    const warmOff = await measure(off, { duration: 2 });
    const warmOn = await measure(on, { duration: 2 });
    log(
      `ct-service: warm-up certificates: CT off ${warmOff.result.certificates}, CT on ${warmOn.result.certificates}`,
    );
    const rows: Row[] = [];
    // --pace N: no closed-loop rounds, both CAs paced at N/s (profiles at equal rates).
    const fixedPace = values.pace === undefined ? undefined : Number(values.pace);
    for (let round = 1; fixedPace === undefined && round <= rounds; round++) {
      const order = round % 2 === 1 ? ([off, on] as const) : ([on, off] as const);
      for (const server of order) {
        const mode = server === on ? 'CT on' : 'CT off';
        log(`ct-service: round ${round}, ${mode}`);
        const m = await measure(server, { duration: seconds });
        rows.push({ round, mode, ...m });
      }
    }
    const modeRows = (mode: Row['mode']) => rows.filter((r) => r.mode === mode);
    const rate = (mode: Row['mode']) =>
      median(modeRows(mode).map((r) => r.result.certificatesPerSecond));
    const cpu = (mode: Row['mode'], f: (r: Row) => number) => median(modeRows(mode).map(f));
    const peakOn = rate('CT on');
    const peakOff = rate('CT off');
    const pace = fixedPace ?? Math.max(1, Math.round(peakOn * 0.8));
    log(`ct-service: paced at ${pace}/s${fixedPace === undefined ? ' (80 % of the CT peak)' : ''}`);
    // Open loop (bench/lib/paced.ts, as the versus bench): each request leaves on its
    // schedule, whatever the others do, and its latency counts from then.
    // The monotonic clock V8 stamps profile samples with (µs): each paced phase's window.
    const nowUs = () => Number(process.hrtime.bigint() / 1000n);
    const windows = { on: { from: 0, to: 0 }, off: { from: 0, to: 0 } };
    const paced = async (server: RunningServer) => {
      const waited = await waitForQuiet(allPids());
      log(`ct-service: ${waited} ms for the servers to go quiet before ${server.name} is paced`);
      const window = windows[server === on ? 'on' : 'off'];
      window.from = nowUs();
      const side = sidePids();
      const before = treeCpuSeconds(side);
      const threadsBefore = threadSamples(server.pid);
      const logBefore = treeCpuSeconds([ctlog.pid]);
      const histogramsBefore = await logHistograms(ctlog.url);
      const r = await runPaced({
        url: server.url,
        requests,
        rate: pace,
        seconds: seconds * 2,
        serverPid: server.pid,
        okStatus: 200,
      });
      window.to = nowUs();
      const sideCpu = treeCpuSeconds(side) - before;
      const usage = threadUsage(server.pid, threadsBefore, threadSamples(server.pid));
      const perCert = (cls: string) =>
        (
          (((usage.user[cls] ?? 0) + (usage.system[cls] ?? 0)) / Math.max(1, r.certificates)) *
          1000
        ).toFixed(3);
      const threads = [`main ${perCert('main')}`, `other threads ${perCert('other threads')}`];
      log(
        `ct-service: ${server.name} CPU ms per certificate by thread (its first process): ${threads.join(', ')}`,
      );
      const logMs =
        ((treeCpuSeconds([ctlog.pid]) - logBefore) / Math.max(1, r.certificates)) * 1000;
      if (server === on)
        log(
          `ct-service: the log while paced: ${logTimings(histogramsBefore, await logHistograms(ctlog.url))}`,
        );
      log(
        `ct-service: while ${server.name} was paced, CPU ms per certificate: the log ${logMs.toFixed(3)}, PostgreSQL ${((sideCpu / Math.max(1, r.certificates)) * 1000 - logMs).toFixed(3)}`,
      );
      return {
        ...r,
        cpuMs: r.cpuSecondsPer1000 + (sideCpu / Math.max(1, r.certificates)) * 1000,
      };
    };
    const pacedOn = await paced(on);
    const pacedOff = await paced(off);
    // The profiles are written when the processes exit.
    const profileLines = prof
      ? await (async () => {
          for (const server of [on, off, ctlog]) await server.stop();
          return profileReport(prof, windows, {
            on: pacedOn.certificates,
            off: pacedOff.certificates,
          });
        })()
      : [];
    log(
      `ct-service: paced certificates: CT on ${pacedOn.certificates}, CT off ${pacedOff.certificates}`,
    );

    const facts = machineFacts();
    const command = `npm run bench:ct-service -- --backend ${backend} --seconds ${seconds} --rounds ${rounds} --connections ${connections} --interval ${interval}${values.workers === 'default' ? '' : ` --workers ${values.workers}`}${fixedPace === undefined ? '' : ` --pace ${fixedPace}`}${values.profile ? ' --profile' : ''}`;
    const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
    const lines = [
      `# CT on vs off, as deployed (issue #17) — ${started.toISOString()}`,
      '',
      `Command: \`${command}\``,
      '',
      `Machine: ${facts.cpu}, ${facts.cores} cores, node ${facts.node}; load average ${loadBefore} before, ${load1()} after.`,
      '',
      `The compiled CA (${values.workers === 'default' ? `default settings: here ${processes === 1 ? 'one process' : `${processes - 1} workers and their primary`}` : `MAYFLY_WORKERS=${values.workers}`}, file CA, rate limits off) with and without`,
      `\`MAYFLY_CT_LOG_URL\`; mayfly's CT log as its own process on ${backend === 'postgres' ? 'PostgreSQL 15 (started here, same machine)' : 'its directory backend'},`,
      `sequencing interval ${interval} ms; v2 requests with real OIDC tokens and proofs, ${connections}`,
      `keep-alive connections, ${seconds} s per round, the two CAs alternating. "CPU per certificate" is`,
      'the CA process plus, with CT, the log and PostgreSQL processes (everything the certificate cost).',
      '',
      '| round | mode | certificates/s | p50 ms | p99 ms | CPU ms per certificate (all) | of which the CA | failures |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.round} | ${r.mode} | ${fmt(r.result.certificatesPerSecond)} | ${fmt(r.result.p50)} | ${fmt(r.result.p99)} | ${fmt(r.cpuMs, 3)} | ${fmt(r.caCpuMs, 3)} | ${r.result.failures} |`,
      ),
      '',
      `Throughput with CT / without (medians): **${fmt((peakOn / peakOff) * 100)} %** (${fmt(peakOn)} vs ${fmt(peakOff)} certificates/s; target ≥ 60 %).`,
      `CPU per certificate, everything included, without / with CT: ${fmt((cpu('CT off', (r) => r.cpuMs) / cpu('CT on', (r) => r.cpuMs)) * 100)} %;`,
      `the CA's own CPU per certificate without / with CT: ${fmt((cpu('CT off', (r) => r.caCpuMs) / cpu('CT on', (r) => r.caCpuMs)) * 100)} %.`,
      '',
      fixedPace === undefined
        ? `## Paced at 80 % of the CT peak (${pace} requests/s, ${seconds * 2} s each)`
        : `## Paced at ${pace} requests/s, as --pace asked (${seconds * 2} s each)`,
      '',
      '| mode | achieved/s | p50 ms | p99 ms | CPU ms per certificate (all) | of which the CA | failures |',
      '|---|---|---|---|---|---|---|',
      ...(
        [
          ['CT on', pacedOn],
          ['CT off', pacedOff],
        ] as const
      ).map(
        ([mode, m]) =>
          `| ${mode} | ${fmt(m.achieved)} | ${fmt(m.p50, 1)} | ${fmt(m.p99, 1)} | ${fmt(m.cpuMs, 3)} | ${fmt(m.cpuSecondsPer1000, 3)} | ${m.failures} |`,
      ),
      '',
      fixedPace === undefined
        ? `Target: p99 with CT ≤ interval + 30 ms = ${interval + 30} ms → ${pacedOn.p99 <= interval + 30 ? 'met' : 'not met'} (${fmt(pacedOn.p99, 1)} ms).`
        : `p99 with CT: ${fmt(pacedOn.p99, 1)} ms against interval + 30 ms = ${interval + 30} ms (the target holds at 80 % of the CT peak; this run's rate was set by --pace).`,
      '',
      ...profileLines,
    ];
    const report = lines.join('\n');
    process.stdout.write(report);
    const outDir = resolve(values.out ?? join(repoRoot, 'bench/results'));
    mkdirSync(outDir, { recursive: true });
    // A paced-only run (--pace) has no closed-loop rounds: its own file.
    const name = `ct-service-${backend}${fixedPace === undefined ? '' : `-paced-${fixedPace}${values.workers === 'default' ? '' : `-workers-${values.workers}`}`}${prof ? '-profile' : ''}.md`;
    writeFileSync(join(outDir, name), report);
    log(`ct-service: wrote ${join(outDir, name)}`);
  } finally {
    for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    await stopAllPostgres();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
