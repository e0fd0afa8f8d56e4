import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { systemClock } from '../services/common/clock';
import { silentLogger } from '../services/common/logger';
import { LIMIT, LIMIT_NAMES, clientId, identityId } from '../services/ca/ra/rate-limits';
import { RateLimiter, type RateLimitMetrics } from '../services/common/ratelimit/limiter';
import { loadLimitsFile } from '../services/common/ratelimit/limits-file';
import type { LimitTable, Transaction } from '../services/common/ratelimit/limits';
import { MemoryStore } from '../services/common/ratelimit/memory-store';
import { RedisStore } from '../services/common/ratelimit/redis-store';
import type { RateLimitStore } from '../services/common/ratelimit/store';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { startRedis, stopAllRedis, type RedisProcess } from '../test/helpers/redis';
import { identityConfigFor, LOOPBACK_CA_ENV } from '../test/helpers/mayfly-process';
import { generousLimitsFile, makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type LoadResult } from './lib/load';
import { load1, machineFacts, treeCpuSeconds } from './lib/proc';

/**
 * `npm run bench:ratelimit`: what rate limiting costs, with Redis versus the in-memory
 * store, measured in one run on one machine, everything on loopback.
 *
 * 1. The limiter alone, in this process: one request's limiter work (the per-client-ip
 *    spend, then one spend of per-identity + per-issuer + global, transactions and their
 *    SHA-256 bucket keys included), one request at a time (latency) and 64 at a time
 *    (throughput), against the memory store and against a local redis-server.
 * 2. End to end: certificates per second from the compiled service (one process) under a
 *    closed-loop autocannon load, with limits off, in memory, and in Redis. The limits
 *    are generous: every bucket is spent and nothing is refused.
 *
 * Results: bench/results/ratelimit-<date>.md and bench/results/ratelimit.md (the latest).
 * `--smoke` runs every step for a moment and writes to a scratch folder instead.
 */

const repoRoot = resolve(__dirname, '..', '..');
const mainJs = join(repoRoot, 'dist/services/ca/main.js');
const smoke = process.argv.includes('--smoke');
const MICRO_MS = smoke ? 300 : 3000;
const E2E_SECONDS = smoke ? 1 : Number(process.env.BENCH_E2E_SECONDS ?? 6);
const WARMUP_SECONDS = smoke ? 1 : 3;
/** Rounds of (off, memory, redis), each mode once per round: noise hits all three alike. */
const ROUNDS = smoke ? 1 : Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = 32;
const IDENTITIES = smoke ? 50 : 500;

const log = (line: string) => process.stderr.write(`${line}\n`);
const noMetrics: RateLimitMetrics = {
  decision: () => undefined,
  storeCall: () => undefined,
  insurance: () => undefined,
};

interface MicroResult {
  readonly name: string;
  readonly concurrency: number;
  readonly requests: number;
  readonly perSecond: number;
  /** Microseconds per request, one request's own time. */
  readonly p50: number;
  readonly p99: number;
  /** CPU µs per request in this process (the limiter and its Redis client). */
  readonly cpuUs: number;
  /** CPU µs per request in redis-server. */
  readonly redisCpuUs: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

/** One request's limiter work, as the HTTP layer and the RA do it. */
function requestWork(limiter: RateLimiter, table: LimitTable, i: number) {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const email = `ci-${i % IDENTITIES}@builds.example.com`;
  const issuer = 'https://issuer.example.com';
  return async () => {
    await limiter.spend([table.transaction(LIMIT.clientIp, clientId(ip))!]);
    const txns = [
      table.transaction(LIMIT.identity, identityId(issuer, email)),
      table.transaction(LIMIT.issuer, issuer),
      table.transaction(LIMIT.global, ''),
    ].filter((t): t is Transaction => t !== undefined);
    const decision = await limiter.spend(txns);
    if (!decision.allowed || decision.source !== 'store')
      throw new Error(`unexpected decision ${JSON.stringify(decision)}`);
  };
}

async function micro(
  name: string,
  store: RateLimitStore,
  table: LimitTable,
  concurrency: number,
  redisPid: number,
): Promise<MicroResult> {
  const limiter = new RateLimiter({
    store,
    insurance: new MemoryStore(systemClock),
    failurePolicy: 'fail-open',
    insuranceShare: 0.25,
    timeoutMs: 1000,
    failureBackoffMs: 1000,
    clock: systemClock,
    logger: silentLogger,
    metrics: noMetrics,
  });
  let next = 0;
  const samples: number[] = [];
  const run = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const started = performance.now();
      await requestWork(limiter, table, next++)();
      if (record) samples.push((performance.now() - started) * 1000);
    }
  };
  const warm = performance.now() + MICRO_MS / 5;
  await Promise.all(Array.from({ length: concurrency }, () => run(warm, false)));
  const cpuBefore = process.cpuUsage();
  const redisCpuBefore = treeCpuSeconds([redisPid]);
  const started = performance.now();
  const until = started + MICRO_MS;
  await Promise.all(Array.from({ length: concurrency }, () => run(until, true)));
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const redisCpuSeconds = treeCpuSeconds([redisPid]) - redisCpuBefore;
  samples.sort((a, b) => a - b);
  return {
    name,
    concurrency,
    requests: samples.length,
    perSecond: samples.length / seconds,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    cpuUs: (cpu.user + cpu.system) / samples.length,
    redisCpuUs: (redisCpuSeconds * 1e6) / samples.length,
  };
}

interface Server {
  readonly child: ChildProcess;
  readonly url: string;
  readonly logFile: string;
}

async function startMayfly(name: string, dir: string, env: Record<string, string>) {
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, [mainJs], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      ...LOOPBACK_CA_ENV,
      // One process, as measured so far (the default is one per usable core).
      MAYFLY_WORKERS: '1',
      MAYFLY_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const text = readFileSync(logFile, 'utf8');
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text)?.[1];
    const redisReady = !env.MAYFLY_REDIS_URL || text.includes('"msg":"redis connected"');
    if (port && redisReady) return { child, url: `http://127.0.0.1:${port}`, logFile } as Server;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`${name} did not start:\n${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(server: Server): Promise<void> {
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.kill('SIGTERM');
  await exited;
}

function version(command: string, args: string[]): string {
  return spawnSync(command, args, { encoding: 'utf8' }).stdout.trim();
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';
}

async function main(): Promise<void> {
  const dir = scratchDir();
  const limitsFile = generousLimitsFile(dir);
  const table = loadLimitsFile(limitsFile, { knownLimits: LIMIT_NAMES });
  let redis: RedisProcess | undefined;
  const servers: Server[] = [];
  try {
    redis = await startRedis();
    log(`bench:ratelimit ${smoke ? 'smoke' : 'full'} run; scratch ${dir}; redis on ${redis.port}`);

    // 1. The limiter alone.
    const microResults: MicroResult[] = [];
    for (const concurrency of [1, 64]) {
      const redisPid = redis.child!.pid!;
      microResults.push(
        await micro('memory', new MemoryStore(systemClock), table, concurrency, redisPid),
      );
      const client = new Redis(redis.url, { enableAutoPipelining: true });
      const store = new RedisStore({ client, keyPrefix: `bench:${concurrency}:` });
      microResults.push(await micro('redis', store, table, concurrency, redisPid));
      await store.close();
      log(
        `micro c=${concurrency}: ${microResults
          .slice(-2)
          .map((r) => `${r.name} ${fmt(r.perSecond)}/s`)
          .join(', ')}`,
      );
    }

    // 2. End to end.
    const issuer = await startDevIssuer();
    const fixtures = await makeFixtures(issuer, IDENTITIES);
    const requests = v2Requests(fixtures);
    const common = { MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir) };
    const modes: [string, Record<string, string>][] = [
      ['off', { MAYFLY_RATELIMITS: 'off' }],
      ['memory', { MAYFLY_RATELIMITS: limitsFile }],
      ['redis', { MAYFLY_RATELIMITS: limitsFile, MAYFLY_REDIS_URL: redis.url }],
    ];
    const started: { mode: string; server: Server; runs: LoadResult[] }[] = [];
    for (const [mode, env] of modes) {
      const server = await startMayfly(mode, dir, { ...common, ...env });
      servers.push(server);
      started.push({ mode, server, runs: [] });
    }
    const load = (server: Server, duration: number) =>
      runLoad({
        url: server.url,
        requests,
        connections: CONNECTIONS,
        serverPid: server.child.pid!,
        okStatus: 200,
        duration,
      });
    for (const { server } of started) await load(server, WARMUP_SECONDS);
    for (let round = 0; round < ROUNDS; round++) {
      // Each round starts with a different mode, so no mode always runs first or last.
      const order = started.map((_e, i) => started[(i + round) % started.length]!);
      for (const entry of order) {
        const result = await load(entry.server, E2E_SECONDS);
        entry.runs.push(result);
        log(
          `e2e round ${round + 1} ${entry.mode}: ${fmt(result.certificatesPerSecond)} certificates/s, ${fmt(result.cpuSecondsPer1000, 2)} CPU-s/1000, ${result.failures} failures`,
        );
      }
    }
    // The same servers at a fixed offered rate below every mode's capacity (open loop): the
    // cost per certificate without the closed loop's scheduling effects.
    const offRuns = started.find((e) => e.mode === 'off')!.runs;
    const pacedRate = Math.max(
      10,
      Math.round((0.6 * offRuns.reduce((n, r) => n + r.certificatesPerSecond, 0)) / offRuns.length),
    );
    const paced: { mode: string; result: LoadResult }[] = [];
    for (const entry of started) {
      const result = await runLoad({
        url: entry.server.url,
        requests,
        connections: CONNECTIONS,
        serverPid: entry.server.child.pid!,
        okStatus: 200,
        duration: E2E_SECONDS,
        rate: pacedRate,
      });
      paced.push({ mode: entry.mode, result });
      log(
        `e2e paced ${entry.mode}: ${fmt(result.certificatesPerSecond)} certificates/s, ${fmt(result.cpuSecondsPer1000, 2)} CPU-s/1000, p99 ${result.p99} ms`,
      );
    }
    const median = (values: number[]) =>
      [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
    const e2e = started.map(({ mode, runs }) => ({
      mode,
      runs,
      certificatesPerSecond: median(runs.map((r) => r.certificatesPerSecond)),
      cpuPer1000: median(runs.map((r) => r.cpuSecondsPer1000)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      failures: runs.reduce((n, r) => n + r.failures, 0),
    }));
    for (const { server } of started) await stop(server);
    servers.length = 0;
    await issuer.close();

    // Results.
    const facts = machineFacts();
    const commit = version('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
    const dirty = version('git', ['-C', repoRoot, 'status', '--porcelain'])
      ? ' (uncommitted changes)'
      : '';
    const ioredisVersion = (
      JSON.parse(readFileSync(join(repoRoot, 'node_modules/ioredis/package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    const date = new Date().toISOString();
    const memory = e2e.find((e) => e.mode === 'memory')!;
    const inRedis = e2e.find((e) => e.mode === 'redis')!;
    const off = e2e.find((e) => e.mode === 'off')!;
    // CPU with 64 in flight (the per-wake-up costs are shared, as under load); the wait is
    // one request alone.
    const microOf = (name: string, concurrency: number) =>
      microResults.find((r) => r.name === name && r.concurrency === concurrency)!;
    const memCpu = microOf('memory', 64).cpuUs;
    const redisCpu = microOf('redis', 64).cpuUs;
    const redisWait = microOf('redis', 1).p50;
    const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${fmt((a / b - 1) * 100, 1)} %`;
    const lines = [
      `# Rate limiting: Redis versus the in-memory store${smoke ? ' (smoke run: numbers are not meaningful)' : ''}`,
      '',
      `Run ${date} with \`npm run bench:ratelimit\` at ${commit}${dirty}; 1-minute load average ${load1()} at the end.`,
      '',
      `- Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGb} GB, Linux ${facts.kernel}`,
      `- Node ${facts.node} (V8 ${facts.v8}, OpenSSL ${facts.openssl}), ioredis ${ioredisVersion}, ${version('redis-server', ['--version'])}`,
      '- Everything on 127.0.0.1: one redis-server (no persistence), one mayfly process, autocannon in the bench process.',
      `- Limits: every bucket generous (nothing refused), so each request spends per-client-ip, then per-identity + per-issuer + global; ${IDENTITIES} identities in rotation.`,
      '',
      '## 1. The limiter alone (per request: two spends, four buckets)',
      '',
      `${MICRO_MS / 1000} s per row after a warm-up. Latency is per request, in µs; with 64 in flight it includes waiting behind the others (one event loop).`,
      '',
      '| store | in flight | requests/s | p50 µs | p99 µs | mayfly CPU µs/request | redis-server CPU µs/request |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...microResults.map(
        (r) =>
          `| ${r.name} | ${r.concurrency} | ${fmt(r.perSecond)} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${fmt(r.cpuUs, 1)} | ${r.name === 'redis' ? fmt(r.redisCpuUs, 1) : '—'} |`,
      ),
      '',
      '## 2. End to end: certificates per second, one mayfly process',
      '',
      `autocannon, ${CONNECTIONS} connections, closed loop, POST /api/v2/signingCert (P-256 keys, ES256 tokens). The three servers run side by side; each is warmed up for ${WARMUP_SECONDS} s, then measured for ${E2E_SECONDS} s in each of ${ROUNDS} interleaved rounds, each round starting with the next mode (off-memory-redis, memory-redis-off, ...). Medians of the rounds; server CPU is the mayfly process only (Redis's own CPU is not in it).`,
      '',
      '| limits | certificates/s | p50 ms | p99 ms | failures | server CPU-s per 1,000 certs | rounds (certificates/s) |',
      '|---|---:|---:|---:|---:|---:|---|',
      ...e2e.map(
        (e) =>
          `| ${e.mode} | ${fmt(e.certificatesPerSecond)} | ${e.p50} | ${e.p99} | ${e.failures} | ${fmt(e.cpuPer1000, 2)} | ${e.runs.map((r) => fmt(r.certificatesPerSecond)).join(', ')} |`,
      ),
      '',
      `At a fixed ${fmt(pacedRate)} requests/s (60 % of the limits-off median; open loop, latency corrected for coordinated omission), ${E2E_SECONDS} s each:`,
      '',
      '| limits | certificates/s | p50 ms | p99 ms | failures | server CPU-s per 1,000 certs |',
      '|---|---:|---:|---:|---:|---:|',
      ...paced.map(
        ({ mode, result: r }) =>
          `| ${mode} | ${fmt(r.certificatesPerSecond)} | ${r.p50} | ${r.p99} | ${r.failures} | ${fmt(r.cpuSecondsPer1000, 2)} |`,
      ),
      '',
      `Closed loop, Redis versus memory: ${pct(inRedis.certificatesPerSecond, memory.certificatesPerSecond)} certificates/s, ${pct(inRedis.cpuPer1000, memory.cpuPer1000)} server CPU per certificate. Memory versus off: ${pct(memory.certificatesPerSecond, off.certificatesPerSecond)} certificates/s, ${pct(memory.cpuPer1000, off.cpuPer1000)} CPU per certificate.`,
      '',
      '## Reading these numbers',
      '',
      `The limiter's own cost is section 1. A certificate costs ${fmt(off.cpuPer1000 * 1000)} µs of mayfly CPU with limits off; one request's limiter work adds ${fmt(memCpu, 1)} µs of CPU (${fmt((memCpu / (off.cpuPer1000 * 1000)) * 100, 1)} %) in memory and ${fmt(redisCpu, 1)} µs (${fmt((redisCpu / (off.cpuPer1000 * 1000)) * 100, 1)} %) with Redis (64 in flight; redis-server spends its own on top), and with Redis a request waits about ${fmt(redisWait)} µs for its two round trips (p50, one in flight).`,
      '',
      'A tight loop flatters: in the service the same code runs with colder caches, so the memory-versus-off difference of section 2 is the better estimate of the in-memory limiter’s in-service cost.',
      '',
      inRedis.cpuPer1000 < off.cpuPer1000
        ? 'The Redis rows of section 2 are dominated by scheduling rather than by the limiter: the Redis mode used *less* mayfly CPU per certificate than limits off, which no limiter work can do. A CPU profile taken while this benchmark was written (node --cpu-prof, same load) showed every area cheaper per certificate in that mode (OpenSSL calls, node:http and streams, logging), not just the limiter: while requests wait for auto-pipelined Redis replies, the event loop gathers them and then runs each step for many requests back to back (warmer caches, fewer and larger writes). Compare modes within one results file only, and treat differences under about 10 % as noise.'
        : 'Section 2 is what an operator sees; on a shared machine it also carries scheduling noise. Compare modes within one results file only, and treat differences under about 10 % as noise.',
      '',
    ];
    const outDir = smoke ? dir : join(repoRoot, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const dated = join(outDir, `ratelimit-${date.slice(0, 10)}.md`);
    writeFileSync(dated, lines.join('\n'));
    writeFileSync(join(outDir, 'ratelimit.md'), lines.join('\n'));
    process.stdout.write(lines.join('\n'));
    log(`results: ${relative(process.cwd(), dated) || dated}`);
  } finally {
    for (const s of servers) s.child.kill('SIGKILL');
    await stopAllRedis();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:ratelimit failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
