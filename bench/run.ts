import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer, type DevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { startRedis as startTestRedis } from '../test/helpers/redis';
import {
  generousLimitsFile,
  makeFixtures,
  scratchDir,
  v2Requests,
  type Fixture,
} from './lib/fixtures';
import { fulcioBinary, startFulcio } from './lib/fulcio';
import { combineRounds, runLoad, type LoadResult, type RequestShape } from './lib/load';
import { runPaced } from './lib/paced';
import { latencyPlot, type LoadPoint } from './lib/plot';
import { load1, machineFacts, peakRssMb, processTree, rssMb } from './lib/proc';
import { summarizeProfile, type ProfileSummary } from './lib/profile';
import { makeSoakCa } from './lib/soak/ca';
import { CA_ENV, CA_NODE_ARGS } from '../services/common/ca-runtime';
import { usableCoresHere } from '../services/common/cpu-limit';
import { children, startMayfly, startScript, stopper, type RunningServer } from './lib/servers';
import {
  renderVersus,
  runVersus,
  versusTargets,
  type Contender,
  type VersusResult,
} from './lib/versus';
import { runMicro, type MicroReport } from './micro';

/**
 * `npm run bench`: everything, in one run on one machine, written to
 * bench/results/<date>.md (+ the latency plot) and bench/results/latest.md.
 * `npm run bench:smoke`: the same steps, seconds each, into a scratch folder (CI keeps the
 * command working with it; nothing is asserted about the numbers).
 *
 * Every server runs as its own process (the compiled `dist/services/ca/main.js`, as an
 * operator runs it), on loopback; autocannon runs in this process; server CPU is read from
 * /proc for the server's process tree only.
 */

const repoRoot = resolve(__dirname, '..', '..');
const peerJs = join(repoRoot, 'dist/bench/peer-server.js');
const expressJs = join(repoRoot, 'dist/bench/express-server.js');
const transportJs = join(repoRoot, 'dist/bench/transport-server.js');

interface Profile {
  readonly smoke: boolean;
  readonly fixtures: number;
  readonly microMs: number;
  readonly peakSeconds: number;
  readonly warmupSeconds: number;
  readonly curveSeconds: number;
  readonly curveFractions: readonly number[];
  readonly soakChunks: number;
  readonly soakChunk: number;
  readonly profileSeconds: number;
  readonly connections: number;
  /** Peak runs are split into this many rounds that visit every scenario in turn. */
  readonly rounds: number;
  /** mayfly versus Fulcio: closed-loop rounds (alternating), seconds each, connections. */
  readonly versusRounds: number;
  readonly versusSeconds: number;
  readonly versusConnections: number;
  /** mayfly versus Fulcio at fixed paces (200/s, 80 % of Fulcio's peak): rounds, seconds. */
  readonly pacedRounds: number;
  readonly pacedSeconds: number;
}

const FULL: Profile = {
  smoke: false,
  fixtures: 2000,
  microMs: 1500,
  peakSeconds: 15,
  warmupSeconds: 3,
  curveSeconds: 8,
  curveFractions: [0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5],
  soakChunks: 10,
  soakChunk: 10_000,
  profileSeconds: 8,
  connections: 16,
  rounds: 3,
  versusRounds: 5,
  versusSeconds: 4,
  versusConnections: 32,
  pacedRounds: 3,
  pacedSeconds: 8,
};

const SMOKE: Profile = {
  smoke: true,
  fixtures: 50,
  microMs: 60,
  peakSeconds: 1,
  warmupSeconds: 0.5,
  curveSeconds: 1,
  curveFractions: [0.5, 0.8],
  soakChunks: 2,
  soakChunk: 300,
  profileSeconds: 1,
  connections: 8,
  rounds: 1,
  versusRounds: 1,
  versusSeconds: 1,
  versusConnections: 8,
  pacedRounds: 1,
  pacedSeconds: 1,
};

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------------------------------------------------------------- servers

/** A redis-server of test/helpers (tracked, killed on exit), or undefined without one. */
async function startRedis(): Promise<{ port: number; stop(): Promise<void> } | undefined> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return undefined;
  return startTestRedis();
}

/** A number from the server's Prometheus metrics. */
function metric(port: number | undefined, name: string): Promise<number | undefined> {
  if (port === undefined) return Promise.resolve(undefined);
  return new Promise((resolveMetric) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
        resolveMetric(match ? Number(match[1]) : undefined);
      });
    }).on('error', () => resolveMetric(undefined));
  });
}

function v1Requests(fixtures: readonly Fixture[]): RequestShape[] {
  return fixtures.map((f) => ({
    path: '/api/v1/signingCert',
    body: f.v1Body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${f.token}` },
  }));
}

// ---------------------------------------------------------------- scenarios

interface ScenarioResult {
  readonly name: string;
  readonly what: string;
  readonly load: LoadResult;
  readonly peakRssMb: number;
  readonly loadAverage: number;
}

async function peakRun(
  profile: Profile,
  server: RunningServer,
  requests: readonly RequestShape[],
  okStatus: number,
): Promise<LoadResult> {
  // Warm-up: JIT, discovery and JWKS, connection pools.
  await runLoad({
    url: server.url,
    requests,
    connections: profile.connections,
    duration: profile.warmupSeconds,
    serverPid: server.pid,
    okStatus,
  });
  return runLoad({
    url: server.url,
    requests,
    connections: profile.connections,
    duration: profile.peakSeconds,
    serverPid: server.pid,
    okStatus,
  });
}

function describe(result: LoadResult): string {
  return `${Math.round(result.certificatesPerSecond)} certs/s, p99 ${result.p99} ms, ${result.cpuSecondsPer1000.toFixed(3)} CPU-s/1000, ${result.failures} failures`;
}

// ---------------------------------------------------------------- report

function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function packageVersion(name: string): string {
  try {
    const text = readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8');
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return '?';
  }
}

interface Report {
  readonly started: Date;
  readonly command: string;
  readonly loadBefore: number;
  readonly loadAfter: number;
  readonly micro: MicroReport;
  readonly scenarios: ScenarioResult[];
  readonly curve: LoadPoint[];
  readonly curvePeak: number;
  readonly plotFile: string;
  readonly soak: { after: number; rssMb: number; heapMb?: number | undefined }[];
  readonly soakPeakRss: number;
  readonly profiles: { name: string; summary: ProfileSummary }[];
  readonly notes: string[];
  readonly connections: number;
  readonly rounds: number;
  /** CPU the transport floor server burned per request to serve at a CA's pace (µs). */
  readonly transportBurnUs: number;
  readonly versus: VersusResult;
  readonly versusReference: string;
}

function ratio(a: number, b: number): number {
  return a / b;
}

function renderReport(r: Report): string {
  const facts = machineFacts();
  const floorUs = r.micro.floor.cpuUs;
  const byName = new Map(r.scenarios.map((s) => [s.name, s]));
  const main = byName.get('mayfly v2');
  const lines: string[] = [];
  const usPerCert = (s: ScenarioResult) => s.load.cpuSecondsPer1000 * 1000;
  lines.push(
    `# mayfly benchmark — ${r.started.toISOString()}`,
    '',
    `Command: \`${r.command}\` (from the repository root; it builds first). Every number below comes from this one run on this machine.`,
    '',
    '## Machine',
    '',
    `| | |`,
    `|---|---|`,
    `| CPU | ${facts.cpu}, ${facts.cores} cores |`,
    `| memory | ${facts.memoryGb} GiB |`,
    `| kernel | ${facts.kernel} |`,
    `| node / V8 / OpenSSL | ${facts.node} / ${facts.v8} / ${facts.openssl} |`,
    `| packages | jose ${packageVersion('jose')}, pkijs ${packageVersion('pkijs')}, asn1js ${packageVersion('asn1js')}, express ${packageVersion('express')}, pino ${packageVersion('pino')}, prom-client ${packageVersion('prom-client')}, autocannon ${packageVersion('autocannon')}, @sigstore/mock ${packageVersion('@sigstore/mock')} |`,
    `| load average (1 min) | ${r.loadBefore} before, ${r.loadAfter} after${Math.max(r.loadBefore, r.loadAfter) > 1.5 ? ' — **the machine was busy with other work; re-run when it is quiet**' : ''} |`,
    '',
    `The load generator (autocannon) runs in the bench process on the same machine; server CPU is read from /proc for the server’s process tree only. Latencies are milliseconds; CPU per certificate is server CPU-seconds per 1,000 certificates at saturation (closed loop, ${r.connections} connections).`,
    '',
  );

  // Targets
  const targets: [string, string, boolean | undefined][] = versusTargets(
    r.versus,
    'mayfly (defaults)',
    r.versusReference,
  ).map((t) => [t.what, t.measured, t.met]);
  if (main) {
    const x = ratio(usPerCert(main), floorUs);
    targets.push([
      'server CPU per certificate over HTTP ≤ 1.4 × the floor (ES256 token, P-256 key, v2)',
      `${fmt(usPerCert(main))} µs vs floor ${fmt(floorUs)} µs = **${x.toFixed(2)} ×** (${fmt(100 / x)} % of the crypto limit)`,
      x <= 1.4,
    ]);
  }
  const at80 = r.curve.find((p) => Math.abs(p.offered - 0.8 * r.curvePeak) < 0.02 * r.curvePeak);
  if (at80)
    targets.push([
      'p99 ≤ 25 ms at 80 % of the peak rate, one process',
      `p99 **${at80.p99} ms** at ${fmt(at80.offered)}/s offered (${fmt(at80.achieved)}/s achieved)`,
      at80.p99 <= 25,
    ]);
  const peer = byName.get('peer: @sigstore/mock');
  if (main && peer) {
    const x = main.load.certificatesPerSecond / peer.load.certificatesPerSecond;
    targets.push([
      '≥ 10 × the peer’s certificates/s',
      `${fmt(main.load.certificatesPerSecond)} vs ${fmt(peer.load.certificatesPerSecond)} = **${x.toFixed(1)} ×**`,
      x >= 10,
    ]);
  }
  const workers = byName.get('mayfly v2, 2 workers');
  if (main && workers) {
    const x = usPerCert(workers) / usPerCert(main);
    targets.push([
      'with N = 2 worker processes, CPU per certificate within 10 % of one process',
      `${fmt(usPerCert(workers))} vs ${fmt(usPerCert(main))} µs = **${((x - 1) * 100).toFixed(1)} %**`,
      x <= 1.1,
    ]);
  }
  if (r.soak.length >= 2) {
    const first = r.soak[0]!;
    const last = r.soak[r.soak.length - 1]!;
    const growth = last.rssMb - first.rssMb;
    targets.push([
      `peak RSS ≤ 200 MB per process after ${fmt(last.after)} certificates`,
      `peak **${fmt(r.soakPeakRss, 1)} MB**`,
      r.soakPeakRss <= 200,
    ]);
    targets.push([
      'no growth between the first and the last 10,000 certificates',
      `RSS ${fmt(first.rssMb, 1)} MB after ${fmt(first.after)}, ${fmt(last.rssMb, 1)} MB after ${fmt(last.after)} (**${growth >= 0 ? '+' : ''}${fmt(growth, 1)} MB**); V8 heap used ${fmt(first.heapMb, 1)} → ${fmt(last.heapMb, 1)} MB`,
      growth <= Math.max(5, first.rssMb * 0.05),
    ]);
  }
  const memory = byName.get('mayfly v2, in-memory limiter');
  if (main && memory) {
    const x = usPerCert(memory) / usPerCert(main) - 1;
    targets.push([
      'the in-memory limiter adds ≤ 3 % CPU per certificate',
      `${fmt(usPerCert(memory))} vs ${fmt(usPerCert(main))} µs = **${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %**`,
      x <= 0.03,
    ]);
  }
  const redis = byName.get('mayfly v2, Redis limiter');
  if (main && redis) {
    const x = usPerCert(redis) / usPerCert(main) - 1;
    targets.push([
      'the Redis limiter adds ≤ 10 % CPU per certificate (mayfly’s CPU; redis-server’s own is not counted)',
      `${fmt(usPerCert(redis))} vs ${fmt(usPerCert(main))} µs = **${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %**`,
      x <= 0.1,
    ]);
  }
  lines.push('## Targets', '', '| target | measured | met |', '|---|---|---|');
  for (const [what, measured, met] of targets)
    lines.push(`| ${what} | ${measured} | ${met === undefined ? '–' : met ? 'yes' : '**no**'} |`);
  lines.push('');

  lines.push(...renderVersus(r.versus, r.versusReference));

  // Scenarios
  lines.push(
    `## Scenarios (peak: closed loop, ${r.rounds} rounds visiting every scenario in turn)`,
    '',
    '| scenario | certificates/s | p50 | p90 | p99 | CPU-s / 1,000 certs | CPU per cert ÷ floor | peak RSS MB (per process) | failed | load avg |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const s of r.scenarios) {
    lines.push(
      `| ${s.name} | ${fmt(s.load.certificatesPerSecond)} | ${s.load.p50} | ${s.load.p90} | ${s.load.p99} | ${fmt(s.load.cpuSecondsPer1000, 3)} | ${fmt(usPerCert(s) / floorUs, 2)} | ${fmt(s.peakRssMb, 1)} | ${s.load.failures} | ${s.loadAverage} |`,
    );
  }
  lines.push('', ...r.scenarios.map((s) => `- **${s.name}**: ${s.what}`), '');
  lines.push(
    `The floor: **${fmt(floorUs, 1)} µs** CPU per certificate in-process (${fmt(r.micro.floor.opsPerSecond)}/s on one core): the ES256 token’s signature checked with node:crypto, the client’s P-256 key imported (its raw point through WebCrypto: the cheapest import that still checks the point is on the curve), the proof of possession verified, one ECDSA P-256 signature by the CA. With jose’s jwtVerify as the token check instead: ${fmt(r.micro.floorJose.cpuUs, 1)} µs (${fmt(r.micro.floorJose.opsPerSecond)}/s).`,
    '',
  );

  // Where the CPU per certificate goes, from the parts measured in this run.
  const transport = byName.get('transport floor: node:http only');
  const postSignCheck = r.micro.steps.find((s) =>
    s.name.startsWith('of which: signature verify with the issuing key'),
  );
  if (main && transport && postSignCheck) {
    const transportUs = usPerCert(transport) - r.transportBurnUs;
    const reachable = floorUs + postSignCheck.cpuUs + transportUs;
    const rest = usPerCert(main) - reachable;
    lines.push(
      '### Where the CPU per certificate goes (mayfly v2)',
      '',
      '| part | CPU µs per certificate | ÷ floor |',
      '|---|---:|---:|',
      `| the floor (token signature, key import, proof of possession, CA signature) | ${fmt(floorUs, 1)} | 1.00 |`,
      `| the check of the CA’s signature on every certificate before it leaves (Go’s x509.CreateCertificate, hence Fulcio, makes it too) | ${fmt(postSignCheck.cpuUs, 1)} | ${fmt(postSignCheck.cpuUs / floorUs, 2)} |`,
      `| HTTP on loopback at a CA’s pace (the transport floor scenario’s CPU per request minus the ${fmt(r.transportBurnUs)} µs it burns) | ${fmt(transportUs, 1)} | ${fmt(transportUs / floorUs, 2)} |`,
      `| **sum: the least a Fulcio-equivalent CA over HTTP costs here** | **${fmt(reachable, 1)}** | **${fmt(reachable / floorUs, 2)}** |`,
      `| everything else mayfly does (claims, identity, key policy, certificate, lint, logs, audit, metrics, GC) | ${fmt(rest, 1)} | ${fmt(rest / floorUs, 2)} |`,
      `| mayfly v2 | ${fmt(usPerCert(main), 1)} | ${fmt(usPerCert(main) / floorUs, 2)} |`,
      '',
    );
  }

  // Curve
  lines.push(
    '## Latency versus load (mayfly v2, one process)',
    '',
    `Peak (closed loop, measured again on this server just before the curve): ${fmt(r.curvePeak)} certificates/s. Each point offers requests at a fixed pace (open loop, bench/lib/paced.ts: request i is due at i / rate, and its latency counts from when it was due).`,
    '',
    `![latency versus load](${r.plotFile})`,
    '',
    '| offered /s | achieved /s | p50 | p90 | p99 |',
    '|---:|---:|---:|---:|---:|',
    ...r.curve.map(
      (p) =>
        `| ${fmt(p.offered)} | ${fmt(p.achieved)} | ${fmt(p.p50, 1)} | ${fmt(p.p90, 1)} | ${fmt(p.p99, 1)} |`,
    ),
    '',
  );

  // Soak
  if (r.soak.length) {
    lines.push(
      '## Memory over a long run (mayfly v2, one process)',
      '',
      '| certificates issued | RSS MB | V8 heap used MB |',
      '|---:|---:|---:|',
      ...r.soak.map((s) => `| ${fmt(s.after)} | ${fmt(s.rssMb, 1)} | ${fmt(s.heapMb, 1)} |`),
      '',
      `Peak RSS (VmHWM) of the process: ${fmt(r.soakPeakRss, 1)} MB.`,
      '',
    );
  }

  // Micro
  lines.push(
    '## Each step in-process (CPU µs per operation, all threads; ops/s on one core)',
    '',
    '| step | CPU µs | ops/s | ÷ floor |',
    '|---|---:|---:|---:|',
  );
  let group = '';
  for (const s of r.micro.steps) {
    const label = s.group !== group ? `**${s.group}** · ` : '';
    group = s.group;
    lines.push(
      `| ${label}${s.name} | ${fmt(s.cpuUs, 1)} | ${fmt(s.opsPerSecond)} | ${fmt(s.cpuUs / floorUs, 2)} |`,
    );
  }
  lines.push('');

  const [mainProfile, ...otherProfiles] = r.profiles;
  if (mainProfile) {
    const perCert = (p: ProfileSummary, ms: number) => (ms * 1000) / Math.max(1, p.certificates);
    const main = mainProfile.summary;
    const areaNames = [
      ...new Set(r.profiles.flatMap((p) => p.summary.areas.map((a) => a.name))),
    ].sort(
      (a, b) =>
        (main.areas.find((x) => x.name === b)?.ms ?? 0) -
        (main.areas.find((x) => x.name === a)?.ms ?? 0),
    );
    lines.push(
      '## Where the time goes (CPU profiles at peak, main thread, self time)',
      '',
      ...r.profiles.map(
        (p) =>
          `- ${p.name}: ${fmt(p.summary.totalMs)} ms sampled over ${fmt(p.summary.certificates)} certificates, ${fmt(perCert(p.summary, p.summary.totalMs))} µs per certificate on the main thread (the profiler adds some).`,
      ),
      '',
      'Work on libuv’s thread pool (the asynchronous log writes) is not in these profiles but is in the CPU totals above; OpenSSL work done synchronously, all the signature checks included, is under node:crypto.',
      '',
      `| area (µs per certificate) | ${r.profiles.map((p) => p.name).join(' | ')} |`,
      `|---|${r.profiles.map(() => '---:').join('|')}|`,
      ...areaNames.map(
        (name) =>
          `| ${name} | ${r.profiles
            .map((p) =>
              fmt(perCert(p.summary, p.summary.areas.find((a) => a.name === name)?.ms ?? 0), 1),
            )
            .join(' | ')} |`,
      ),
      '',
      `| top functions of ${mainProfile.name} (self time) | where | µs per certificate |`,
      '|---|---|---:|',
      ...main.functions.map((f) => `| ${f.name} | ${f.where} | ${fmt(perCert(main, f.ms), 1)} |`),
      '',
    );
    for (const other of otherProfiles) {
      lines.push(
        `| top functions of ${other.name} (self time) | where | µs per certificate |`,
        '|---|---|---:|',
        ...other.summary.functions
          .slice(0, 12)
          .map((f) => `| ${f.name} | ${f.where} | ${fmt(perCert(other.summary, f.ms), 1)} |`),
        '',
      );
    }
  }
  if (r.notes.length) lines.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}

/** `env` without MAYFLY_WORKERS, for the service's own default. */
function withoutWorkers(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'MAYFLY_WORKERS'));
}

/** mayfly with its defaults (and as one process) against the real Fulcio, alternating. */
async function versusPhase(o: {
  profile: Profile;
  dir: string;
  issuerUrl: string;
  ca: { chainFile: string; keyFile: string };
  baseEnv: Record<string, string>;
  fulcio: ReturnType<typeof fulcioBinary>;
  requests: readonly RequestShape[];
  notes: string[];
}): Promise<{ versus: VersusResult; fulcioName: string }> {
  const { profile, dir, issuerUrl, ca, baseEnv, fulcio, requests, notes } = o;
  const contenders: Contender[] = [];
  const fulcioName = 'Fulcio' + ('skipped' in fulcio ? '' : ` ${fulcio.version}`);
  if (!('skipped' in fulcio)) {
    let fulcioCount = 0;
    contenders.push({
      name: fulcioName,
      what: `the reference Fulcio (Go), built offline from Debian’s packages by scripts/go-refs.sh, \`serve --ca=fileca\` with the same chain and key files, the same issuer in its JSON identity config, no CT log, its default settings otherwise (GOMAXPROCS: every core it may use)`,
      start: async () => {
        const server = await startFulcio({
          binary: fulcio.path,
          dir,
          name: `fulcio-${++fulcioCount}`,
          issuerUrl,
          chainFile: ca.chainFile,
          keyFile: ca.keyFile,
        });
        children.add(server.child);
        return { pid: server.pid, url: server.url, stop: stopper(server.child) };
      },
      requests,
      okStatus: 200,
    });
  }
  // The service's own default (MAYFLY_WORKERS unset, not in Kubernetes): one worker per core
  // this process may use, as services/ca/cluster.ts's planWorkers decides.
  const cores = usableCoresHere();
  const defaultProcesses =
    cores.cores > 1
      ? `${cores.cores} workers and their primary, one worker per usable core: ${cores.reason}`
      : `one process: ${cores.reason}`;
  contenders.push({
    name: 'mayfly (defaults)',
    what: `the compiled service as \`npm start\` and the image run it (node ${CA_NODE_ARGS.join(' ')}, ${Object.entries(
      CA_ENV,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(
        ' ',
      )}), its default settings (MAYFLY_WORKERS unset: here ${defaultProcesses}), the file CA, rate limits off, info logs and the audit log to files`,
    start: () =>
      startMayfly('mayfly-versus', dir, withoutWorkers(baseEnv), [], { oneProcess: false }),
    requests,
    okStatus: 200,
  });
  contenders.push({
    name: 'mayfly, one process',
    what: 'as mayfly (defaults) with MAYFLY_WORKERS=1 (no cluster)',
    start: () => startMayfly('mayfly-versus-one', dir, { ...baseEnv, MAYFLY_WORKERS: '1' }),
    requests,
    okStatus: 200,
  });
  log(`versus ${fulcioName}`);
  const versus = await runVersus({
    contenders,
    reference: fulcioName,
    steadyRate: 200,
    rounds: profile.versusRounds,
    seconds: profile.versusSeconds,
    connections: profile.versusConnections,
    warmupSeconds: profile.warmupSeconds,
    pacedRounds: profile.pacedRounds,
    pacedSeconds: profile.pacedSeconds,
    log,
    notes,
  });

  return { versus, fulcioName };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    args: process.argv.slice(2),
    options: { smoke: { type: 'boolean' }, versus: { type: 'boolean' }, out: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const profile = args.smoke ? SMOKE : FULL;
  const outDir = resolve(
    args.out !== undefined
      ? args.out
      : profile.smoke
        ? scratchDir()
        : join(repoRoot, 'bench/results'),
  );
  mkdirSync(outDir, { recursive: true });
  const dir = scratchDir();
  const started = new Date();
  const loadBefore = load1();
  const notes: string[] = [];
  log(`bench: ${profile.smoke ? 'smoke' : 'full'} run, scratch ${dir}, results to ${outDir}`);

  const issuer: DevIssuer = await startDevIssuer({ host: '127.0.0.1' });
  const identityConfig = identityConfigFor(issuer, dir);
  log(`fixtures: ${profile.fixtures} tokens, keys and proofs`);
  const fixtures = await makeFixtures(issuer, profile.fixtures, 'ES256');
  const rsaFixtures = await makeFixtures(issuer, Math.min(profile.fixtures, 500), 'RS256', 'rs');

  // One file CA for every server, Fulcio included: a P-256 root and an issuing intermediate.
  const ca = await makeSoakCa(dir);
  const baseEnv = {
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'file',
    MAYFLY_CA_CERT: ca.chainFile,
    MAYFLY_CA_KEY: ca.keyFile,
  };
  const fulcio = fulcioBinary();
  if ('skipped' in fulcio) {
    const line = `Fulcio peer skipped: it cannot be built on this machine (${fulcio.skipped})`;
    log(`bench: ${line}`);
    notes.push(line);
  }

  if (args.versus) {
    // Only the comparison with Fulcio (quicker, for work on the targets of issue #18).
    const { versus, fulcioName } = await versusPhase({
      profile,
      dir,
      issuerUrl: issuer.url,
      ca,
      baseEnv,
      fulcio,
      requests: v2Requests(fixtures),
      notes,
    });
    await issuer.close();
    const stamp = started
      .toISOString()
      .replace(/[:.]/g, '-')
      .replace(/-\d{3}Z$/, 'Z');
    const facts = machineFacts();
    const markdown = [
      `# mayfly versus ${fulcioName} — ${started.toISOString()}`,
      '',
      `Command: \`npm run bench${profile.smoke ? ':smoke' : ''} -- --versus\`. ${facts.cpu}, ${facts.cores} cores, node ${facts.node}; load average ${loadBefore} before, ${load1()} after.`,
      '',
      '| target (issue #18) | measured | met |',
      '|---|---|---|',
      ...versusTargets(versus, 'mayfly (defaults)', fulcioName).map(
        (t) => `| ${t.what} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`,
      ),
      '',
      ...renderVersus(versus, fulcioName),
      ...(notes.length ? ['## Notes', '', ...notes.map((n) => `- ${n}`), ''] : []),
    ].join('\n');
    const resultFile = join(outDir, profile.smoke ? 'versus-smoke.md' : `versus-${stamp}.md`);
    writeFileSync(resultFile, markdown);
    if (!profile.smoke) writeFileSync(join(outDir, 'versus-latest.md'), markdown);
    log(`results: ${resultFile}`);
    process.stdout.write(`${resultFile}\n`);
    return;
  }

  log('micro-benchmarks');
  const micro = await runMicro(issuer, fixtures, rsaFixtures, profile.microMs, log);

  // The transport floor serves at a CA's pace: it burns the floor plus the final signature
  // check per request, so that its HTTP work happens as it does in mayfly.
  const transportBurnUs =
    micro.floor.cpuUs +
    (micro.steps.find((s) => s.name.startsWith('of which: signature verify with the issuing key'))
      ?.cpuUs ?? 0);
  const scenarios: ScenarioResult[] = [];
  interface Spec {
    readonly name: string;
    readonly what: string;
    readonly start: () => Promise<RunningServer>;
    readonly requests: readonly RequestShape[];
    readonly okStatus: number;
    server?: RunningServer;
    readonly rounds: LoadResult[];
  }
  const specs: Spec[] = [];
  const scenario = (
    name: string,
    what: string,
    start: () => Promise<RunningServer>,
    requests: readonly RequestShape[],
    okStatus = 200,
  ) => specs.push({ name, what, start, requests, okStatus, rounds: [] });

  const v2 = v2Requests(fixtures);
  scenario(
    'mayfly v2',
    'POST /api/v2/signingCert, ES256 tokens, fresh P-256 keys with proofs, one process, rate limits off, info logs and the audit log to files',
    () => startMayfly('mayfly-v2', dir, baseEnv),
    v2,
  );
  scenario(
    'mayfly v1',
    'POST /api/v1/signingCert (cosign 2.x shape: token in Authorization, base64 PEM key, signedEmailAddress), otherwise as above; answers 201',
    () => startMayfly('mayfly-v1', dir, baseEnv),
    v1Requests(fixtures),
    201,
  );
  scenario(
    'mayfly v2, RS256 tokens',
    'as mayfly v2 with RS256 identity tokens (GitHub Actions and Google sign with RS256)',
    () => startMayfly('mayfly-v2-rs256', dir, baseEnv),
    v2Requests(rsaFixtures),
  );
  scenario(
    'mayfly v2, warn logs',
    'as mayfly v2 with MAYFLY_LOG_LEVEL=warn (no info line per certificate; the audit line stays): what the operational log costs',
    () => startMayfly('mayfly-v2-warn', dir, { ...baseEnv, MAYFLY_LOG_LEVEL: 'warn' }),
    v2,
  );
  const limitsFile = generousLimitsFile(dir);
  scenario(
    'mayfly v2, in-memory limiter',
    'as mayfly v2 with the rate limiter on (every bucket spent: per-client-ip, per-identity, per-issuer, global), in-memory store, limits high enough that nothing is refused',
    () => startMayfly('mayfly-memory-limiter', dir, { ...baseEnv, MAYFLY_RATELIMITS: limitsFile }),
    v2,
  );
  const redis = await startRedis();
  if (redis) {
    scenario(
      'mayfly v2, Redis limiter',
      `as the in-memory limiter scenario with the Redis store (redis-server on 127.0.0.1:${redis.port}, spawned for the run; its own CPU is not counted)`,
      () =>
        startMayfly('mayfly-redis-limiter', dir, {
          ...baseEnv,
          MAYFLY_RATELIMITS: limitsFile,
          MAYFLY_REDIS_URL: `redis://127.0.0.1:${redis.port}`,
        }),
      v2,
    );
  } else notes.push('Redis limiter: not measured (no redis-server on this machine)');
  scenario(
    'mayfly v2, 2 workers',
    'as mayfly v2 with MAYFLY_WORKERS=2 (node cluster: a primary and two workers; CPU and RSS of all three); the load generator shares the two cores',
    () => startMayfly('mayfly-workers', dir, { ...baseEnv, MAYFLY_WORKERS: '2' }),
    v2,
  );
  scenario(
    'mayfly v2 through Express',
    'the same app with the signing routes served by the Express router instead of the node:http fast path (bench/express-server.ts): what Express costs',
    () => startScript('express', expressJs, dir, baseEnv),
    v2,
  );
  scenario(
    'transport floor: node:http only',
    'node:http reading and JSON-parsing the same v2 bodies and answering each with a canned 200 of the size of mayfly’s answer, no cryptography and no logs, but burning the floor plus the final signature check in CPU per request first (bench/transport-server.ts): HTTP on loopback served at a CA’s pace. Without the burn it answers some twenty times as many requests, and each write costs a third as much because the load generator never sleeps',
    () =>
      startScript('transport', transportJs, dir, {
        TRANSPORT_BURN_US: String(Math.round(transportBurnUs)),
      }),
    v2,
  );
  scenario(
    'peer: @sigstore/mock',
    '@sigstore/mock’s Fulcio handler on node:http (bench/peer-server.ts), the same v2 requests; it checks neither the token nor the proof; answers 201',
    () => startScript('peer', peerJs, dir, {}),
    v2,
    201,
  );

  // Every server up and warm first; then rounds that visit each scenario in turn, so that
  // a change in the machine's load during the run falls on all of them alike.
  for (const spec of specs) {
    log(`start: ${spec.name}`);
    try {
      spec.server = await spec.start();
      await runLoad({
        url: spec.server.url,
        requests: spec.requests,
        connections: profile.connections,
        duration: profile.warmupSeconds,
        serverPid: spec.server.pid,
        okStatus: spec.okStatus,
      });
    } catch (err) {
      notes.push(`${spec.name}: not measured (${(err as Error).message.split('\n')[0]})`);
      log(`  failed: ${(err as Error).message}`);
      await spec.server?.stop();
      spec.server = undefined;
    }
  }
  for (let round = 1; round <= profile.rounds; round++) {
    for (const spec of specs) {
      if (!spec.server) continue;
      const result = await runLoad({
        url: spec.server.url,
        requests: spec.requests,
        connections: profile.connections,
        duration: profile.peakSeconds / profile.rounds,
        serverPid: spec.server.pid,
        okStatus: spec.okStatus,
      });
      spec.rounds.push(result);
      log(`round ${round} ${spec.name}: ${describe(result)} (load ${load1()})`);
    }
  }
  for (const spec of specs) {
    if (!spec.server) continue;
    const load = combineRounds(spec.rounds);
    scenarios.push({
      name: spec.name,
      what: spec.what,
      load,
      peakRssMb: Math.max(...peakRssMb(processTree(spec.server.pid))),
      loadAverage: load1(),
    });
    await spec.server.stop();
  }
  await redis?.stop();

  // mayfly with its defaults against the real Fulcio, alternating.
  const { versus, fulcioName } = await versusPhase({
    profile,
    dir,
    issuerUrl: issuer.url,
    ca,
    baseEnv,
    fulcio,
    requests: v2,
    notes,
  });

  // Latency versus load, one process.
  log('latency versus load');
  const curve: LoadPoint[] = [];
  let curvePeak = scenarios.find((s) => s.name === 'mayfly v2')?.load.certificatesPerSecond ?? 0;
  {
    const server = await startMayfly('mayfly-curve', dir, baseEnv);
    try {
      const peak = await peakRun(profile, server, v2, 200);
      curvePeak = peak.certificatesPerSecond;
      for (const fraction of profile.curveFractions) {
        const rate = Math.max(1, Math.round(curvePeak * fraction));
        const point = await runPaced({
          url: server.url,
          requests: v2,
          rate,
          seconds: profile.curveSeconds,
          serverPid: server.pid,
          okStatus: 200,
        });
        curve.push(point);
        if (point.failures > 0) notes.push(`curve at ${rate}/s: ${point.failures} failures`);
        log(
          `  ${rate}/s offered: ${Math.round(point.achieved)}/s, p50 ${point.p50} p90 ${point.p90} p99 ${point.p99} ms`,
        );
      }
    } finally {
      await server.stop();
    }
  }
  const stamp = started
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
  const plotFile = `${profile.smoke ? 'smoke' : stamp}-latency.svg`;
  writeFileSync(
    join(outDir, plotFile),
    latencyPlot(curve, {
      peak: curvePeak,
      targetMs: 25,
      title: `mayfly v2, one process: latency versus offered load (${started.toISOString().slice(0, 10)})`,
    }),
  );

  // Memory over 100,000 certificates.
  log('memory soak');
  const soak: Report['soak'] = [];
  let soakPeakRss = 0;
  {
    const server = await startMayfly('mayfly-soak', dir, baseEnv);
    try {
      for (let chunk = 1; chunk <= profile.soakChunks; chunk++) {
        const result = await runLoad({
          url: server.url,
          requests: v2,
          connections: profile.connections,
          amount: profile.soakChunk,
          serverPid: server.pid,
          okStatus: 200,
        });
        const heap = await metric(server.metricsPort, 'mayfly_nodejs_heap_size_used_bytes');
        soak.push({
          after: chunk * profile.soakChunk,
          rssMb: rssMb([server.pid])[0]!,
          heapMb: heap === undefined ? undefined : heap / 2 ** 20,
        });
        if (result.failures > 0) notes.push(`soak chunk ${chunk}: ${result.failures} failures`);
      }
      soakPeakRss = peakRssMb([server.pid])[0]!;
    } finally {
      await server.stop();
    }
  }

  // CPU profiles: the main scenario, and the in-memory limiter next to it.
  log('profiles');
  const profiles: { name: string; summary: ProfileSummary }[] = [];
  for (const [index, [name, env]] of (
    [
      ['mayfly v2', baseEnv],
      ['mayfly v2, in-memory limiter', { ...baseEnv, MAYFLY_RATELIMITS: limitsFile }],
    ] as const
  ).entries()) {
    const profDir = join(dir, `cpuprofile-${index}`);
    mkdirSync(profDir, { recursive: true });
    const server = await startMayfly(`mayfly-profile-${index}`, dir, env, [
      '--cpu-prof',
      `--cpu-prof-dir=${profDir}`,
    ]);
    let certificates = 0;
    let window: { from: number; to: number } | undefined;
    try {
      await runLoad({
        url: server.url,
        requests: v2,
        connections: profile.connections,
        duration: profile.warmupSeconds,
        serverPid: server.pid,
        okStatus: 200,
      });
      const from = Number(process.hrtime.bigint() / 1000n);
      const result = await runLoad({
        url: server.url,
        requests: v2,
        connections: profile.connections,
        duration: profile.profileSeconds,
        serverPid: server.pid,
        okStatus: 200,
      });
      certificates = result.certificates;
      window = { from, to: Number(process.hrtime.bigint() / 1000n) };
    } finally {
      await server.stop();
    }
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      profiles.push({
        name,
        summary: summarizeProfile(readFileSync(join(profDir, file), 'utf8'), certificates, window),
      });
      notes.push(
        `CPU profile of ${name}: ${join(profDir, file)} (scratch; open it in Chrome DevTools)`,
      );
    } else notes.push(`profile of ${name}: no .cpuprofile was written`);
  }
  await issuer.close();

  const report: Report = {
    started,
    command: profile.smoke ? 'npm run bench:smoke' : 'npm run bench',
    loadBefore,
    loadAfter: load1(),
    micro,
    scenarios,
    curve,
    curvePeak,
    plotFile,
    soak,
    soakPeakRss,
    profiles,
    notes,
    connections: profile.connections,
    rounds: profile.rounds,
    transportBurnUs,
    versus,
    versusReference: fulcioName,
  };
  const markdown = renderReport(report);
  const resultFile = join(outDir, profile.smoke ? 'smoke.md' : `${stamp}.md`);
  writeFileSync(resultFile, markdown);
  if (!profile.smoke) writeFileSync(join(outDir, 'latest.md'), markdown);
  log(`results: ${relative(process.cwd(), resultFile) || resultFile}`);
  process.stdout.write(`${resultFile}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
