/**
 * Timestamp authority benchmark (npm run bench:tsa; TSA_BENCH_TIMESTAMPS scales the RSS run).
 *
 * 1. The in-process floor: what one timestamp cannot do without — one SHA-256 over a
 *    TSTInfo-sized buffer (the messageDigest attribute) and one ECDSA P-256 signature over
 *    the signed attributes, with node:crypto — and the whole token built in process
 *    (TimestampService: parse, pkijs TSTInfo/SignedData, sign, audit line), no HTTP.
 * 2. Over HTTP: the TSA as its own process (file key, audit to a file), autocannon in this
 *    process, JSON requests (what sigstore-js sends): the closed-loop peak, then a paced run
 *    at 80 % of it for the p99, then a long run for RSS, sampled every quarter.
 * Ratios are within one run; the machine is shared, so absolute figures move with its load.
 */
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { systemClock } from '../services/common/clock';
import { certificatePem } from '../services/common/encoding';
import { KeySigner } from '../services/common/signer/signer';
import { createEphemeralTsaChain } from '../services/tsa/certificates';
import { uncheckedClock } from '../services/tsa/clock-monitor';
import { createTsaMetrics } from '../services/tsa/metrics';
import { TimestampService } from '../services/tsa/service';
import { runLoad, type LoadResult } from './lib/load';
import { load1, machineFacts, processTree, rssMb } from './lib/proc';

const RSS_TIMESTAMPS = Number(process.env.TSA_BENCH_TIMESTAMPS ?? 200_000);
const PEAK_SECONDS = Number(process.env.TSA_BENCH_SECONDS ?? 10);
const CONNECTIONS = 16;

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

function perSecond(n: number, run: () => void): number {
  for (let i = 0; i < Math.min(n, 2000); i++) run(); // warm up
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run();
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function perSecondAsync(n: number, run: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(n, 2000); i++) await run();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await run();
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function bodies(count: number): { path: string; body: string; headers: Record<string, string> }[] {
  return Array.from({ length: count }, () => ({
    path: '/api/v1/timestamp',
    body: JSON.stringify({
      artifactHash: createHash('sha256').update(randomBytes(16)).digest('base64'),
      hashAlgorithm: 'sha256',
      nonce: BigInt(`0x${randomBytes(8).toString('hex')}`).toString(),
      certificates: true,
    }).replace(/"nonce":"(\d+)"/, '"nonce":$1'),
    headers: { 'content-type': 'application/json' },
  }));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-tsa-bench-'));
  const leafKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const signer = await createEphemeralTsaChain(
    new KeySigner(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey),
    new KeySigner(leafKey),
    systemClock,
  );
  writeFileSync(join(dir, 'key.pem'), leafKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'chain.pem'), signer.chain.map((d) => certificatePem(d)).join(''));

  // 1. In process.
  const tst = randomBytes(300);
  const attrs = randomBytes(230);
  const floor = perSecond(20_000, () => {
    createHash('sha256').update(tst).digest();
    sign('sha256', attrs, { key: leafKey, dsaEncoding: 'der' });
  });
  const service = new TimestampService({
    signer,
    policy: '1.3.6.1.4.1.57264.2',
    includeChain: false,
    clock: systemClock,
    clockCheck: uncheckedClock,
    metrics: createTsaMetrics(new Registry()),
    audit: pino(
      { level: 'info' },
      pino.destination({ dest: join(dir, 'inproc-audit.log'), sync: true }),
    ),
  });
  const body = Buffer.from(bodies(1)[0]!.body);
  const inProcess = await perSecondAsync(10_000, () => service.timestamp(body, 'json'));

  // 2. Over HTTP.
  const [port, metricsPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [resolve(__dirname, '../services/tsa/main.js')], {
    env: {
      ...process.env,
      MAYFLY_TSA_HOST: '127.0.0.1',
      MAYFLY_TSA_PORT: String(port),
      MAYFLY_TSA_METRICS_HOST: '127.0.0.1',
      MAYFLY_TSA_METRICS_PORT: String(metricsPort),
      MAYFLY_TSA_SIGNER: 'file',
      MAYFLY_TSA_CERT: join(dir, 'chain.pem'),
      MAYFLY_TSA_KEY: join(dir, 'key.pem'),
      MAYFLY_TSA_AUDIT_LOG_FILE: join(dir, 'audit.log'),
      MAYFLY_TSA_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((ok) => child.stdout!.once('data', () => ok()));
  const url = `http://127.0.0.1:${port}`;
  const requests = bodies(512);
  const base = { url, requests, serverPid: child.pid!, okStatus: 201 };
  await runLoad({ ...base, connections: CONNECTIONS, duration: 3 }); // warm up
  const loadBefore = load1();
  const peak = await runLoad({ ...base, connections: CONNECTIONS, duration: PEAK_SECONDS });
  const paced = await runLoad({
    ...base,
    connections: CONNECTIONS,
    duration: PEAK_SECONDS,
    rate: Math.round(peak.certificatesPerSecond * 0.8),
  });
  const rss: { after: number; mb: number }[] = [
    { after: 0, mb: rssMb(processTree(child.pid!))[0]! },
  ];
  let done = 0;
  const quarter = Math.round(RSS_TIMESTAMPS / 4);
  let longRun: LoadResult | undefined;
  for (let i = 0; i < 4; i++) {
    longRun = await runLoad({ ...base, connections: CONNECTIONS, amount: quarter });
    done += longRun.certificates;
    rss.push({ after: done, mb: rssMb(processTree(child.pid!))[0]! });
  }
  child.kill('SIGTERM');
  await new Promise((ok) => child.once('exit', ok));
  rmSync(dir, { recursive: true, force: true });

  const perCore = (r: LoadResult) => r.certificates / r.serverCpuSeconds;
  const m = machineFacts();
  const stamp = new Date()
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
  const f = (n: number, d = 0) =>
    n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const md = `# TSA benchmark ${stamp}

Command: \`npm run bench:tsa\` (TSA_BENCH_TIMESTAMPS=${RSS_TIMESTAMPS}, TSA_BENCH_SECONDS=${PEAK_SECONDS}).
Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB, Linux ${m.kernel}, Node ${m.node}, OpenSSL ${m.openssl}.
1-minute load average ${loadBefore} when the measured runs began (on a machine shared with other work, absolute
figures are low and noisy; compare the ratios, which come from one run).

| what | figure |
| --- | --- |
| in-process floor (1 SHA-256 + 1 ECDSA P-256 signature, node:crypto) | ${f(floor)} /s |
| in-process token (parse JSON, TSTInfo + SignedData framed on pkijs-built constants, sign, audit line), no HTTP | ${f(inProcess)} /s (${f(floor / inProcess, 2)} × the floor's cost) |
| HTTP closed loop, ${CONNECTIONS} connections, ${PEAK_SECONDS} s: peak | ${f(peak.certificatesPerSecond)} timestamps/s wall |
| same, per core of TSA CPU (timestamps / server CPU-seconds) | ${f(perCore(peak))} /s (${f(floor / perCore(peak), 2)} × the floor's cost) |
| server CPU per 1,000 timestamps at peak | ${f(peak.cpuSecondsPer1000, 3)} s |
| peak latency p50 / p99 | ${f(peak.p50, 1)} / ${f(peak.p99, 1)} ms |
| paced at 80 % of peak (${f(paced.offeredRate ?? 0)} /s offered): achieved | ${f(paced.certificatesPerSecond)} /s |
| paced p50 / p99 / max | ${f(paced.p50, 1)} / ${f(paced.p99, 1)} / ${f(paced.max, 1)} ms |
| failures (peak, paced, long run) | ${peak.failures}, ${paced.failures}, ${longRun?.failures ?? 0} |

RSS of the TSA process over ${f(done)} timestamps (scaled down from 1,000,000 to fit the shared machine):

| timestamps served | RSS MB |
| --- | --- |
${rss.map((r) => `| ${f(r.after)} | ${f(r.mb, 1)} |`).join('\n')}
`;
  const out = resolve(__dirname, '../../bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `tsa-${stamp}.md`), md);
  writeFileSync(join(out, 'tsa-latest.md'), md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:tsa failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
