import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { systemClock } from '../services/common/clock';
import { createEphemeralChain } from '../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../services/common/signer/signer';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor, LOOPBACK_CA_ENV } from '../test/helpers/mayfly-process';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type LoadResult } from './lib/load';
import { load1, machineFacts } from './lib/proc';

/**
 * `npm run bench:pkcs11`: issuance with the CA key in SoftHSM2 (the pkcs11 signer) versus
 * the same key in a file (the file CA), one run, one machine, everything on loopback.
 *
 * Both servers are the compiled service (`dist/services/ca/main.js`), one process each,
 * side by side, with the same chain and the same P-256 key. Each is warmed up, then
 * measured in interleaved closed-loop rounds (autocannon). Server CPU is read from /proc for
 * the server's process (SoftHSM runs inside it, on libuv's threads). The event-loop delay
 * is the service's own `mayfly_nodejs_eventloop_lag_p99_seconds` (prom-client's
 * monitorEventLoopDelay, reset at each scrape), scraped right before and right after each
 * measured run, so the figure covers that run at peak.
 *
 * Results: bench/results/pkcs11-<date>.md and bench/results/pkcs11.md (the latest).
 * `--smoke` runs every step for a moment and writes to a scratch folder instead.
 */

const repoRoot = resolve(__dirname, '..', '..');
const mainJs = join(repoRoot, 'dist/services/ca/main.js');
const smoke = process.argv.includes('--smoke');
const SECONDS = smoke ? 1 : Number(process.env.BENCH_SECONDS ?? 6);
const WARMUP_SECONDS = smoke ? 1 : 3;
const ROUNDS = smoke ? 1 : 3;
const CONNECTIONS = 16;
const IDENTITIES = smoke ? 20 : 400;
const SESSIONS = 4;

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

interface Server {
  readonly name: string;
  readonly child: ChildProcess;
  readonly url: string;
  readonly metricsUrl: string;
}

async function startMayfly(
  name: string,
  dir: string,
  env: Record<string, string>,
): Promise<Server> {
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'w');
  const child = spawn(process.execPath, [mainJs], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      ...LOOPBACK_CA_ENV,
      // One process, as measured so far (the default is one per usable core).
      MAYFLY_WORKERS: '1',
      MAYFLY_LOG_LEVEL: 'warn',
      MAYFLY_RATELIMITS: 'off',
      ...env,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const text = readFileSync(logFile, 'utf8');
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)/.exec(text);
    if (m)
      return {
        name,
        child,
        url: `http://127.0.0.1:${m[1]}`,
        metricsUrl: `http://127.0.0.1:${m[2]}/metrics`,
      };
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

/** The event-loop delay p99 since the previous scrape, in ms. */
async function loopLagP99(server: Server): Promise<number> {
  const text = await (await fetch(server.metricsUrl)).text();
  const m = /^mayfly_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';
}

function version(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? '';
}

async function main(): Promise<void> {
  const dir = scratchDir();
  const servers: Server[] = [];
  try {
    // A private SoftHSM2 and one CA, its key both in a file and in the token.
    const tokens = join(dir, 'tokens');
    mkdirSync(tokens);
    const conf = join(dir, 'softhsm2.conf');
    writeFileSync(
      conf,
      `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
    );
    const hsmEnv = { ...process.env, SOFTHSM2_CONF: conf };
    const util = (args: string[]) => {
      const r = spawnSync('softhsm2-util', args, { env: hsmEnv, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`softhsm2-util ${args[0]}: ${r.stderr}`);
    };
    const intermediate = generateEphemeralKey();
    const signer = await createEphemeralChain(generateEphemeralKey(), intermediate, systemClock);
    const transfer = intermediate.exportForWorkers(signer.chain);
    const pem = (der: Uint8Array) =>
      `-----BEGIN CERTIFICATE-----\n${Buffer.from(der)
        .toString('base64')
        .replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
    writeFileSync(join(dir, 'chain.pem'), signer.chain.map(pem).join(''));
    writeFileSync(join(dir, 'key.pem'), transfer.key, { mode: 0o600 });
    writeFileSync(join(dir, 'pin'), '1234\n', { mode: 0o600 });
    util(['--init-token', '--free', '--label', 'bench', '--pin', '1234', '--so-pin', '5678']);
    util([
      '--import',
      join(dir, 'key.pem'),
      '--token',
      'bench',
      '--label',
      'issuing',
      '--id',
      '01',
      '--pin',
      '1234',
    ]);
    const module = [
      '/usr/lib/softhsm/libsofthsm2.so',
      '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
    ].find((p) => {
      try {
        readFileSync(p);
        return true;
      } catch {
        return false;
      }
    })!;

    const issuer = await startDevIssuer();
    const fixtures = await makeFixtures(issuer, IDENTITIES);
    const requests = v2Requests(fixtures);
    const common = {
      MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
      MAYFLY_CA_CERT: join(dir, 'chain.pem'),
      MAYFLY_CA_RELOAD_INTERVAL_MS: '0',
    };
    const file = await startMayfly('file', dir, {
      ...common,
      MAYFLY_CA: 'file',
      MAYFLY_CA_KEY: join(dir, 'key.pem'),
    });
    servers.push(file);
    const hsm = await startMayfly('pkcs11', dir, {
      ...common,
      SOFTHSM2_CONF: conf,
      MAYFLY_CA: 'pkcs11',
      MAYFLY_CA_PKCS11_MODULE: module,
      MAYFLY_CA_PKCS11_TOKEN_LABEL: 'bench',
      MAYFLY_CA_PKCS11_KEY_LABEL: 'issuing',
      MAYFLY_CA_PKCS11_PIN_FILE: join(dir, 'pin'),
      MAYFLY_CA_PKCS11_SESSIONS: String(SESSIONS),
    });
    servers.push(hsm);
    log(`bench:pkcs11 ${smoke ? 'smoke' : 'full'} run; scratch ${dir}`);

    const runs = new Map<string, { result: LoadResult; lagP99: number }[]>([
      ['file', []],
      ['pkcs11', []],
    ]);
    const load = (server: Server, duration: number) =>
      runLoad({
        url: server.url,
        requests,
        connections: CONNECTIONS,
        serverPid: server.child.pid!,
        okStatus: 200,
        duration,
      });
    for (const server of servers) await load(server, WARMUP_SECONDS);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const server of order) {
        await loopLagP99(server); // resets the histogram
        const result = await load(server, SECONDS);
        const lagP99 = await loopLagP99(server);
        runs.get(server.name)!.push({ result, lagP99 });
        log(
          `round ${round + 1} ${server.name}: ${fmt(result.certificatesPerSecond)} certificates/s, ${fmt(result.cpuSecondsPer1000, 2)} CPU-s/1000, p99 ${result.p99} ms, loop lag p99 ${fmt(lagP99, 1)} ms, ${result.failures} failures`,
        );
      }
    }
    // Open loop at a fixed rate both CAs sustain: the event-loop delay of signing through
    // PKCS#11 itself, rather than of a saturated two-core machine.
    const all = [...runs.values()].flat().map((r) => r.result.certificatesPerSecond);
    const pacedRate = Math.max(20, Math.round(0.5 * Math.min(...all)));
    const paced = new Map<string, { result: LoadResult; lagP99: number }>();
    for (const server of servers) {
      await loopLagP99(server);
      const result = await runLoad({
        url: server.url,
        requests,
        connections: CONNECTIONS,
        serverPid: server.child.pid!,
        okStatus: 200,
        duration: SECONDS,
        rate: pacedRate,
      });
      const lagP99 = await loopLagP99(server);
      paced.set(server.name, { result, lagP99 });
      log(
        `paced ${pacedRate}/s ${server.name}: ${fmt(result.cpuSecondsPer1000, 2)} CPU-s/1000, p99 ${result.p99} ms, loop lag p99 ${fmt(lagP99, 1)} ms, ${result.failures} failures`,
      );
    }
    for (const server of servers) await stop(server);
    servers.length = 0;
    await issuer.close();

    const median = (values: number[]) =>
      [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
    const summary = (name: string) => {
      const r = runs.get(name)!;
      return {
        name,
        rate: median(r.map((x) => x.result.certificatesPerSecond)),
        cpu: median(r.map((x) => x.result.cpuSecondsPer1000)),
        p99: median(r.map((x) => x.result.p99)),
        lag: Math.max(...r.map((x) => x.lagP99)),
        failures: r.reduce((n, x) => n + x.result.failures, 0),
        rounds: r.map((x) => fmt(x.result.certificatesPerSecond)).join(', '),
        // All rounds together: every certificate over all measured time and CPU.
        totalRate:
          r.reduce((n, x) => n + x.result.certificates, 0) /
          r.reduce((n, x) => n + x.result.seconds, 0),
        totalCpu:
          (1000 * r.reduce((n, x) => n + x.result.serverCpuSeconds, 0)) /
          r.reduce((n, x) => n + x.result.certificates, 0),
      };
    };
    const f = summary('file');
    const h = summary('pkcs11');
    const facts = machineFacts();
    const commit = version('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
    const date = new Date().toISOString();
    const rateRatio = h.rate / f.rate;
    const cpuRatio = h.cpu / f.cpu;
    const lines = [
      `# Issuance with the CA key in SoftHSM2 (pkcs11) versus a file${smoke ? ' (smoke run: numbers are not meaningful)' : ''}`,
      '',
      `Run ${date} with \`npm run bench:pkcs11\` at ${commit}; 1-minute load average ${load1()} at the end.`,
      '',
      `- Machine: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGb} GB, Linux ${facts.kernel}. **Shared**: other engineers' builds and tests ran at the same time, so absolute figures are low and noisy; compare the two CAs within this file only.`,
      `- Node ${facts.node} (OpenSSL ${facts.openssl}); ${version('softhsm2-util', ['--version'])} (SoftHSM2); pkcs11js ${(JSON.parse(readFileSync(join(repoRoot, 'node_modules/pkcs11js/package.json'), 'utf8')) as { version: string }).version}.`,
      `- Two mayfly processes side by side, one CA chain and one P-256 intermediate key: in a PKCS#8 file (MAYFLY_CA=file), and imported into a SoftHSM2 token (MAYFLY_CA=pkcs11, ${SESSIONS} sessions, C_SignAsync on libuv's pool of ${process.env.UV_THREADPOOL_SIZE ?? 4} threads). Rate limits off.`,
      `- autocannon, ${CONNECTIONS} connections, closed loop, POST /api/v2/signingCert; ${WARMUP_SECONDS} s warm-up each, then ${ROUNDS} interleaved rounds of ${SECONDS} s (file-pkcs11, pkcs11-file, ...). Medians of the rounds; server CPU is the server process (SoftHSM's work included). Loop lag: the worst round's p99.`,
      '',
      '| CA | certificates/s (median) | all rounds | server CPU-s per 1,000 certs (median) | all rounds | p99 ms | event-loop delay p99 ms | failures | rounds (certificates/s) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|',
      ...[f, h].map(
        (s) =>
          `| ${s.name} | ${fmt(s.rate)} | ${fmt(s.totalRate)} | ${fmt(s.cpu, 2)} | ${fmt(s.totalCpu, 2)} | ${s.p99} | ${fmt(s.lag, 1)} | ${s.failures} | ${s.rounds} |`,
      ),
      '',
      `pkcs11 / file, medians: **${fmt(rateRatio * 100, 1)} %** of the certificates per second (target ≥ 80 %), **${fmt(cpuRatio, 2)} ×** the CPU per certificate (target ≤ 1.3 ×). All rounds together: ${fmt((h.totalRate / f.totalRate) * 100, 1)} % and ${fmt(h.totalCpu / f.totalCpu, 2)} ×.`,
      '',
      `Event-loop delay at saturation is mostly the machine's, not the signer's: the file CA, which signs on the event loop, shows ${fmt(f.lag, 1)} ms and the pkcs11 CA ${fmt(h.lag, 1)} ms (worst round). At a fixed ${pacedRate} requests/s (open loop, below both CAs' capacity, ${SECONDS} s each):`,
      '',
      '| CA | certificates/s | server CPU-s per 1,000 certs | p99 ms | event-loop delay p99 ms | failures |',
      '|---|---:|---:|---:|---:|---:|',
      ...[...paced].map(
        ([name, { result: r, lagP99 }]) =>
          `| ${name} | ${fmt(r.certificatesPerSecond)} | ${fmt(r.cpuSecondsPer1000, 2)} | ${r.p99} | ${fmt(lagP99, 1)} | ${r.failures} |`,
      ),
      '',
    ];
    const outDir = smoke ? dir : join(repoRoot, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, `pkcs11-${date.slice(0, 10)}.md`), lines.join('\n'));
    writeFileSync(join(outDir, 'pkcs11.md'), lines.join('\n'));
    log(lines.join('\n'));
  } finally {
    for (const server of servers) server.child.kill('SIGKILL');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
