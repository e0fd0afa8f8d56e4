import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { systemClock } from '../services/common/clock';
import { silentLogger } from '../services/common/logger';
import { fingerprint } from '../services/ctlog/entry';
import { generateDevKeyDer, logKeyFromDer } from '../services/ctlog/log-key';
import { encodeTileIndex } from '../services/ctlog/merkle';
import { Sequencer } from '../services/ctlog/sequencer';
import { DirectoryStorage } from '../services/ctlog/storage/directory';
import { PostgresStorage } from '../services/ctlog/storage/postgres';
import {
  encodePending,
  type LogStorage,
  type PendingEntry,
} from '../services/ctlog/storage/storage';
import { b64, makeCert, makeHierarchy, pem } from '../test/helpers/ct-certs';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../test/helpers/postgres';
import { median, runLoad } from './lib/load';
import { runPaced } from './lib/paced';
import { load1, machineFacts, processTree, treeCpuSeconds } from './lib/proc';

/**
 * `npm run bench:ctlog`: the CT log against the issue's targets, in one run on one machine,
 * PostgreSQL (Debian's, started here) on the same machine, everything on loopback.
 *
 * 1. Sequencer throughput: N pending entries queued, then the sequencer integrates them
 *    (assign indices, sign every SCT, build tiles, sign a checkpoint, commit), on
 *    PostgreSQL and on the directory backend; entries/s and CPU-seconds per 1,000.
 * 2. Cost per entry as the tree grows: the same, batch after batch, up to MAX entries.
 * 3. Storage bytes per entry (PostgreSQL relation sizes, and the directory's bytes).
 * 4. Serving: GET of full and partial tiles, data tiles, an issuer and the checkpoint from
 *    the log process on PostgreSQL, closed loop, next to two floors measured the same way:
 *    a bare node:http server answering a constant, and the log's Express `/healthz`.
 *    `--serve` runs only this section (on a fresh log of N entries) and replaces §4 of
 *    bench/results/ctlog.md, keeping the other sections. BENCH_CTLOG_PROF=<dir> runs the log
 *    process under `node --cpu-prof` and writes its profile there. BENCH_CTLOG_BASE=<dir> (another
 *    checkout of this repository, built) serves the same log from that build too, in the same
 *    rounds: before/after in one run.
 * 5. add-pre-chain: the peak (closed loop), then p99 at 80 % of it (open loop, paced).
 *
 * `--smoke` runs every step small and writes to a scratch folder.
 */

const repoRoot = resolve(__dirname, '..', '..');
const smoke = process.argv.includes('--smoke');
const serveOnly = process.argv.includes('--serve');
const N = smoke ? 2000 : Number(process.env.BENCH_CTLOG_N ?? 20_000);
const MAX = smoke ? 4000 : Number(process.env.BENCH_CTLOG_MAX ?? 200_000);
const SECONDS = smoke ? 1 : 5;
const ROUNDS = smoke ? 1 : Number(process.env.BENCH_CTLOG_ROUNDS ?? 3);
const FLOOR = 'bare node:http, constant answer (floor)';
const HEALTHZ = 'Express `/healthz` (the old floor)';
const FLOOR_TILE = 'bare node:http, 8,192 random bytes (a full tile)';
const FLOOR_DATA = 'bare node:http, random bytes the size of the full data tile';
/** Another build of this repository (a directory with its dist/) to serve the same log. */
const BASE = process.env.BENCH_CTLOG_BASE;

type Row = [what: string, shown: string, target: ServedProcess, paths: readonly string[]];

const { root, intermediate } = makeHierarchy();
const leafDer = makeCert({ issuer: intermediate }).der;

function synthetic(): PendingEntry {
  // A realistic size (a Fulcio leaf is ~800 bytes); the sequencer never parses it.
  const signedEntry = Buffer.concat([leafDer, randomBytes(32)]);
  return {
    key: randomBytes(32),
    isPrecert: false,
    signedEntry,
    issuers: [intermediate.der, root.der],
  };
}

async function enqueuePg(url: string, count: number): Promise<void> {
  const c = new pg.Client(url);
  await c.connect();
  for (let done = 0; done < count; done += 5000) {
    const batch = Array.from({ length: Math.min(5000, count - done) }, synthetic);
    await c.query(
      'INSERT INTO ctlog_pending (key, body) SELECT * FROM unnest($1::bytea[], $2::bytea[])',
      [batch.map((b) => b.key), batch.map(encodePending)],
    );
  }
  await c.end();
}

async function integrate(storage: LogStorage, count: number) {
  const key = logKeyFromDer(generateDevKeyDer());
  const seq = new Sequencer(
    storage,
    key,
    systemClock,
    { intervalMs: 1, maxBatch: 4096, checkpointRefreshMs: 1000 },
    silentLogger,
    undefined,
    () => undefined,
  );
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let done = 0;
  while (done < count) done += await seq.step();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { seconds, perSecond: count / seconds, cpuPer1000: (cpuSeconds / count) * 1000 };
}

async function pgBytes(url: string): Promise<number> {
  const c = new pg.Client(url);
  await c.connect();
  const r = await c.query<{ bytes: string }>(
    `SELECT sum(pg_total_relation_size(c.oid))::bigint AS bytes FROM pg_class c
     WHERE c.relkind = 'r' AND c.relname LIKE 'ctlog_%'`,
  );
  await c.end();
  return Number(r.rows[0]!.bytes);
}

async function newDb(server: PostgresProcess, name: string): Promise<string> {
  await PostgresStorage.adminQuery(server.url, `CREATE DATABASE ${name}`);
  return server.url.replace(/\/postgres$/, `/${name}`);
}

interface ServedProcess {
  readonly child: ChildProcess;
  readonly url: string;
}

/** A closed loop of GETs (one path, or several in turn) and the server's CPU meanwhile. */
async function getLoad(server: ServedProcess, paths: readonly string[], seconds = SECONDS) {
  const pids = processTree(server.child.pid!);
  const cpu0 = treeCpuSeconds(pids);
  const r = await autocannon({
    url: server.url,
    connections: 32,
    duration: seconds,
    requests: paths.map((path) => ({ method: 'GET' as const, path })),
  });
  const cpu = treeCpuSeconds(pids) - cpu0;
  return {
    rps: r.requests.average,
    p99: r.latency.p99,
    bytesPerSecond: r.throughput.average,
    bad: r.non2xx + r.errors,
    perCpuSecond: cpu > 0 ? r.requests.total / cpu : 0,
  };
}

function waitListening(child: ChildProcess): Promise<string> {
  return new Promise<string>((res, rej) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /listening on (\S+)/.exec(text);
      if (m) res(m[1]!);
    });
    child.once('exit', (code) => rej(new Error(`exited (${code}) before listening`)));
  });
}

/**
 * The floor: node:http answering a constant, nothing else: `/` a 3-byte text, `/random/<n>` n
 * random bytes (made once). The random bodies matter: autocannon decodes every body into a
 * string, which costs the load generator far more for binary bytes than for ASCII, so a tile
 * is compared with a floor of the same size and kind of bytes.
 */
async function startBareHttp(): Promise<ServedProcess> {
  const code = `const bodies = new Map();
  require('node:http').createServer((q, s) => {
    const n = q.url.startsWith('/random/') ? Number(q.url.slice(8)) : 0;
    let b = bodies.get(n);
    if (!b) bodies.set(n, (b = n > 0 ? require('node:crypto').randomBytes(n) : Buffer.from('ok\\n')));
    s.writeHead(200, ['Content-Type', 'application/octet-stream', 'Content-Length', String(b.length)]);
    s.end(b);
  }).listen(0, '127.0.0.1', function () {
    console.log('listening on http://127.0.0.1:' + this.address().port);
  });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { child, url: await waitListening(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** The log process (dist/), on PostgreSQL; under --cpu-prof when BENCH_CTLOG_PROF is set. */
async function startLogProcess(
  rootsFile: string,
  dbUrl: string,
  build = repoRoot,
): Promise<ServedProcess> {
  const prof = process.env.BENCH_CTLOG_PROF;
  const args = prof ? ['--cpu-prof', '--cpu-prof-dir', resolve(prof)] : [];
  const child = spawn(process.execPath, [...args, join(build, 'dist/services/ctlog/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_LOG_LEVEL: 'warn',
      MAYFLY_CTLOG_HOST: '127.0.0.1',
      MAYFLY_CTLOG_PORT: '0',
      MAYFLY_CTLOG_ROOTS: rootsFile,
      MAYFLY_CTLOG_DATABASE_URL: dbUrl,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return { child, url: await waitListening(child) };
}

/** Section 4: the read path of a log process on PostgreSQL. */
async function serving(
  startLog: (dbUrl: string, build?: string) => Promise<ServedProcess>,
  dbUrl: string,
  out: (s: string) => void,
): Promise<void> {
  const served = await startLog(dbUrl);
  const base = BASE ? await startLog(dbUrl, BASE) : undefined;
  const bare = await startBareHttp();
  const note = await (await fetch(`${served.url}/checkpoint`)).text();
  const size = Number(note.split('\n')[1]);
  const last = Math.floor(size / 256);
  const w0 = size % 256;
  const w1 = Math.floor(size / 256) % 256;
  const tileName = (n: number) => encodeTileIndex(n);
  const fullTiles = Array.from({ length: Math.min(last, 256) }, (_, n) => `/tile/0/${tileName(n)}`);
  const logRows = (prefix: string, p: ServedProcess): Row[] => [
    [`${prefix}checkpoint`, '`/checkpoint`', p, ['/checkpoint']],
    [`${prefix}full level-0 tile`, '`/tile/0/000`', p, ['/tile/0/000']],
    [
      `${prefix}every full level-0 tile in turn`,
      `\`/tile/0/<N>\` (${fullTiles.length})`,
      p,
      fullTiles,
    ],
    size >= 65536
      ? [`${prefix}full level-1 tile`, '`/tile/1/000`', p, ['/tile/1/000']]
      : [`${prefix}partial level-1 tile`, `\`/tile/1/000.p/${w1}\``, p, [`/tile/1/000.p/${w1}`]],
    [`${prefix}full data tile`, '`/tile/data/000`', p, ['/tile/data/000']],
    [
      `${prefix}current partial level-0 tile`,
      `\`/tile/0/${tileName(last)}.p/${w0}\``,
      p,
      [`/tile/0/${tileName(last)}.p/${w0}`],
    ],
    [
      `${prefix}current partial data tile`,
      `\`/tile/data/${tileName(last)}.p/${w0}\``,
      p,
      [`/tile/data/${tileName(last)}.p/${w0}`],
    ],
    [
      `${prefix}issuer`,
      '`/issuer/<sha256>`',
      p,
      [`/issuer/${fingerprint(intermediate.der).toString('hex')}`],
    ],
  ];
  const dataTileBytes = (await (await fetch(`${served.url}/tile/data/000`)).arrayBuffer())
    .byteLength;
  const rows: Row[] = [
    [FLOOR, '`/`', bare, ['/']],
    [FLOOR_TILE, '`/random/8192`', bare, ['/random/8192']],
    [FLOOR_DATA, `\`/random/${dataTileBytes}\``, bare, [`/random/${dataTileBytes}`]],
    [HEALTHZ, '`/healthz`', served, ['/healthz']],
    ...logRows('', served),
    ['checkpoint through Express (same handler)', '`/checkpoint/`', served, ['/checkpoint/']],
    ...(base ? logRows('base build: ', base) : []),
  ];
  out(
    `## 4. Serving from PostgreSQL (one log process, tree size ${size}, 32 connections, ${SECONDS} s per row, ${ROUNDS} rounds, medians)`,
  );
  out('');
  out(
    `Load average before this section: ${load1()}. The load generator (autocannon, one Node thread) runs in the bench process on the same 2 cores. After a 1-second warm-up of every row, rows run in turn, round after round, so drifting load from other work hits them alike; each figure is the median of the rounds.`,
  );
  out('');
  // Warm-up: every row once, briefly (JIT, caches, connections); not counted.
  for (const [, , target, paths] of rows) await getLoad(target, paths, 1);
  const runs = new Map<string, Awaited<ReturnType<typeof getLoad>>[]>();
  for (let round = 0; round < ROUNDS; round++)
    for (const [what, , target, paths] of rows) {
      const list = runs.get(what) ?? [];
      list.push(await getLoad(target, paths));
      runs.set(what, list);
    }
  out(
    '| what | path | requests/s | p99 ms | MB/s | non-2xx/errors | requests per server CPU-second |',
  );
  out('| --- | --- | --- | --- | --- | --- | --- |');
  const rps = new Map<string, number>();
  for (const [what, shown] of rows) {
    const list = runs.get(what)!;
    const r = {
      rps: median(list.map((x) => x.rps)),
      p99: median(list.map((x) => x.p99)),
      mbs: median(list.map((x) => x.bytesPerSecond)) / 1e6,
      bad: list.reduce((n, x) => n + x.bad, 0),
      perCpu: median(list.map((x) => x.perCpuSecond)),
    };
    rps.set(what, r.rps);
    out(
      `| ${what} | ${shown} | ${Math.round(r.rps)} | ${r.p99} | ${r.mbs.toFixed(1)} | ${r.bad} | ${Math.round(r.perCpu)} |`,
    );
  }
  out('');
  const ratio = (what: string, floor: string) =>
    ((rps.get(what) ?? 0) / (rps.get(floor) ?? 1)).toFixed(2);
  out(
    `Ratios within this run, to the bare node:http floor with a body of the same size and kind: checkpoint ${ratio('checkpoint', FLOOR)}, issuer ${ratio('issuer', FLOOR)}, Express \`/healthz\` ${ratio(HEALTHZ, FLOOR)} (3-byte floor); full level-0 tile ${ratio('full level-0 tile', FLOOR_TILE)}, every full tile in turn ${ratio('every full level-0 tile in turn', FLOOR_TILE)} (8 KiB floor); full data tile ${ratio('full data tile', FLOOR_DATA)} (data-tile-sized floor).`,
  );
  if (base)
    out(
      `New build / base build: checkpoint ${ratio('checkpoint', 'base build: checkpoint')}, full level-0 tile ${ratio('full level-0 tile', 'base build: full level-0 tile')}, current partial level-0 tile ${ratio('current partial level-0 tile', 'base build: current partial level-0 tile')}, full data tile ${ratio('full data tile', 'base build: full data tile')}, issuer ${ratio('issuer', 'base build: issuer')}.`,
    );
  out(
    'Requests per server CPU-second count only the log process tree (from /proc): what one core given to the log would serve, with the load generator and the other work on the machine left out. Where the time goes (CPU profile of the log process): results/ctlog-serve-profile.md.',
  );
  if (base)
    out(
      `"base build" rows: the same log and database served by the build in ${BASE} (BENCH_CTLOG_BASE), in the same rounds.`,
    );
  out('');
  await stopChild(bare.child);
  if (base) await stopChild(base.child);
  await stopChild(served.child);
}

async function main(): Promise<void> {
  if (serveOnly) return serveOnlyMain();
  const lines: string[] = [];
  const out = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  const facts = machineFacts();
  out(`# CT log benchmark (${new Date().toISOString()})`);
  out('');
  out(
    `Command: \`npm run bench:ctlog${smoke ? ' -- --smoke' : ''}\` (BENCH_CTLOG_N=${N}, BENCH_CTLOG_MAX=${MAX}).`,
  );
  out(
    `Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGb} GB, Node ${facts.node}; load average at start ${load1()}.`,
  );
  out(
    'When the load average is above the 2 cores, other work shared the machine: compare ratios within',
  );
  out('this run only. PostgreSQL 15 ran on the same machine.');
  out('');
  const server = await startPostgres();
  const work = mkdtempSync(join(tmpdir(), 'mayfly-bench-ctlog-'));
  try {
    // 1. Sequencer throughput.
    out('## 1. Sequencer throughput (entries integrated per second, one process)');
    out('');
    out(
      '| backend | entries | seconds | entries/s | CPU-s per 1,000 entries | entries per CPU-second |',
    );
    out('| --- | --- | --- | --- | --- | --- |');
    const url1 = await newDb(server, 'bench_seq');
    const pgStore = await PostgresStorage.open(url1, silentLogger);
    await enqueuePg(url1, N);
    const pgRun = await integrate(pgStore, N);
    out(
      `| PostgreSQL | ${N} | ${pgRun.seconds.toFixed(2)} | ${Math.round(pgRun.perSecond)} | ${pgRun.cpuPer1000.toFixed(3)} | ${Math.round(1000 / pgRun.cpuPer1000)} |`,
    );
    const dir = join(work, 'dir');
    mkdirSync(dir);
    const dirStore = await DirectoryStorage.open(dir);
    for (let i = 0; i < N; i++) await dirStore.enqueue([synthetic()]);
    const dirRun = await integrate(dirStore, N);
    out(
      `| directory | ${N} | ${dirRun.seconds.toFixed(2)} | ${Math.round(dirRun.perSecond)} | ${dirRun.cpuPer1000.toFixed(3)} | ${Math.round(1000 / dirRun.cpuPer1000)} |`,
    );
    out('');
    out('CPU is this Node process only (the sequencer: SCT and checkpoint signatures, hashing,');
    out("tiles, the client side of the commit); PostgreSQL's own CPU is not in it.");
    out('');

    // 2. Cost per entry as the tree grows (PostgreSQL).
    out(`## 2. Cost per entry as the tree grows (PostgreSQL, batches of ${N})`);
    out('');
    out('| tree size before the batch | entries/s | CPU-s per 1,000 entries |');
    out('| --- | --- | --- |');
    out(`| 0 | ${Math.round(pgRun.perSecond)} | ${pgRun.cpuPer1000.toFixed(3)} |`);
    let size = N;
    while (size < MAX) {
      await enqueuePg(url1, N);
      const r = await integrate(pgStore, N);
      if (size * 2 > MAX || [N * 4, N * 2].includes(size) || size % (N * 4) === 0)
        out(`| ${size} | ${Math.round(r.perSecond)} | ${r.cpuPer1000.toFixed(3)} |`);
      size += N;
    }
    out('');

    // 3. Storage bytes per entry.
    const bytes = await pgBytes(url1);
    const dirBytes = Number(execFileSync('du', ['-sb', dir]).toString().split('\t')[0]);
    out('## 3. Storage bytes per entry');
    out('');
    out(
      `PostgreSQL: ${(bytes / size).toFixed(0)} bytes per entry (${size} entries, ${(bytes / 2 ** 20).toFixed(1)} MiB in ctlog_* tables with indexes).`,
    );
    out(
      `Directory: ${(dirBytes / N).toFixed(0)} bytes per entry (${N} entries). Entries are ${leafDer.length + 32}-byte synthetic certificates with a 2-certificate chain.`,
    );
    out('');
    await pgStore.close();
    await dirStore.close();

    // 4 and 5: the log process on PostgreSQL.
    const rootsFile = join(work, 'roots.pem');
    writeFileSync(rootsFile, pem(root.der));
    const startLog = (dbUrl: string, build?: string) => startLogProcess(rootsFile, dbUrl, build);
    await serving(startLog, url1, out);

    const url2 = await newDb(server, 'bench_submit');
    const log = await startLog(url2);
    const count = smoke ? 600 : 12_000;
    const key = { privateKey: intermediate.key, publicKey: intermediate.publicKey };
    const shapes = Array.from({ length: count }, () => ({
      path: '/ct/v1/add-pre-chain',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        chain: [
          b64(makeCert({ issuer: intermediate, poison: 'critical', key }).der),
          b64(intermediate.der),
        ],
      }),
    }));
    const half = Math.floor(count / 2);
    const peak = await runLoad({
      url: log.url,
      requests: shapes.slice(0, half),
      connections: 64,
      duration: SECONDS,
      serverPid: log.child.pid!,
      okStatus: 200,
    });
    const rate = Math.max(1, Math.round(peak.certificatesPerSecond * 0.8));
    const paced = await runPaced({
      url: log.url,
      requests: shapes.slice(half),
      rate,
      seconds: SECONDS,
      serverPid: log.child.pid!,
      okStatus: 200,
    });
    out('## 5. add-pre-chain (real precertificates, sequencing interval 100 ms)');
    out('');
    out('| load | SCTs/s | p50 ms | p99 ms | failures |');
    out('| --- | --- | --- | --- | --- |');
    out(
      `| peak, closed loop, 64 connections | ${Math.round(peak.certificatesPerSecond)} | ${peak.p50} | ${peak.p99} | ${peak.failures} |`,
    );
    out(
      `| 80 % of peak (${rate}/s), open loop | ${Math.round(paced.achieved)} | ${paced.p50.toFixed(1)} | ${paced.p99.toFixed(1)} | ${paced.failures} |`,
    );
    out('');
    out('Target: p99 ≤ sequencing interval + 50 ms = 150 ms at 80 % of peak.');
    log.child.kill('SIGTERM');
  } finally {
    await stopAllPostgres();
    rmSync(work, { recursive: true, force: true });
  }
  const resultsDir = smoke
    ? mkdtempSync(join(tmpdir(), 'mayfly-bench-'))
    : join(repoRoot, 'bench/results');
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, 'Z');
  writeFileSync(join(resultsDir, `ctlog-${stamp}.md`), `${lines.join('\n')}\n`);
  writeFileSync(join(resultsDir, 'ctlog.md'), `${lines.join('\n')}\n`);
  process.stdout.write(`results: ${join(resultsDir, 'ctlog.md')}\n`);
  process.exit(0);
}

/**
 * `--serve`: section 4 alone, on a fresh log of N entries; replaces §4 of ctlog.md (the other
 * sections stay as the last full run wrote them) and keeps its own dated copy.
 */
async function serveOnlyMain(): Promise<void> {
  const lines: string[] = [];
  const out = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  const facts = machineFacts();
  const server = await startPostgres();
  const work = mkdtempSync(join(tmpdir(), 'mayfly-bench-ctlog-'));
  try {
    const url = await newDb(server, 'bench_serve');
    const store = await PostgresStorage.open(url, silentLogger);
    await enqueuePg(url, N);
    await integrate(store, N);
    await store.close();
    const rootsFile = join(work, 'roots.pem');
    writeFileSync(rootsFile, pem(root.der));
    await serving((dbUrl, build) => startLogProcess(rootsFile, dbUrl, build), url, out);
  } finally {
    await stopAllPostgres();
    rmSync(work, { recursive: true, force: true });
  }
  lines.push(
    `Section 4 measured on ${new Date().toISOString()} with \`${BASE ? `BENCH_CTLOG_BASE=${BASE} ` : ''}npm run bench:ctlog -- --serve\` (BENCH_CTLOG_N=${N}; ${facts.cpu}, ${facts.cores} cores, Node ${facts.node}; the machine was **shared** with other engineers' work). The other sections are from the full run named at the top.`,
    '',
  );
  const resultsDir = smoke
    ? mkdtempSync(join(tmpdir(), 'mayfly-bench-'))
    : join(repoRoot, 'bench/results');
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, 'Z');
  const section = lines.join('\n');
  writeFileSync(join(resultsDir, `ctlog-serve-${stamp}.md`), `${section}\n`);
  const file = join(resultsDir, 'ctlog.md');
  const existing = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const start = existing.indexOf('## 4.');
  const end = existing.indexOf('## 5.');
  const merged =
    start >= 0 && end > start
      ? `${existing.slice(0, start)}${section}\n${existing.slice(end)}`
      : `${existing}\n${section}\n`;
  writeFileSync(file, merged);
  process.stdout.write(`results: ${file}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  void stopAllPostgres().finally(() => process.exit(1));
});
