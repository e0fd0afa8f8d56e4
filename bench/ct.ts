/**
 * CT on vs CT off (issue #17 targets: throughput with CT ≥ 60% of without; p99 ≤ the log's
 * sequencing interval + 30 ms at 80% of peak). The CA proper (precert, add-pre-chain over
 * HTTP, SCT verification, final certificate, both lints) against mayfly's CT log on the
 * directory backend, both in this one process; closed loop, fixed concurrency, the two modes
 * alternated so that both see the same machine. Ratios within one run only.
 *
 *   npm run bench:ct [-- --seconds 5 --concurrency 64 --interval 100 --log-process]
 *
 * `--log-process`: the log runs as its own process (dist/services/ctlog/main.js), so the CPU
 * per certificate is the CA's alone: what CT costs the CA itself, HTTP client included
 * (results/ct-ca-latest.md).
 */
import { encodePem } from '../services/common/encoding';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FULCIO_OID } from '../services/ca/certificate-identity/certificate-identity';
import { createEphemeralChain } from '../services/ca/issuance/ephemeral-chain';
import { CertificateAuthority } from '../services/ca/issuance/certificate-authority';
import { CtLogs } from '../services/ca/issuance/ct-logs';
import { randomSerial } from '../services/ca/issuance/serial';
import { systemClock } from '../services/common/clock';
import { silentLogger } from '../services/common/logger';
import { generateEphemeralKey } from '../services/common/signer/signer';
import { startCtlog } from '../services/ctlog/app';
import { loadCtlogConfig } from '../services/ctlog/config';
import { spawnServer, stopper, waitForLine } from './lib/servers';

const ctlogJs = resolve(__dirname, '../services/ctlog/main.js');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '64' },
      interval: { type: 'string', default: '100' },
      rounds: { type: 'string', default: '3' },
      'log-process': { type: 'boolean', default: false },
    },
  });
  const logProcess = values['log-process'];
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const interval = Number(values.interval);
  const rounds = Number(values.rounds);
  const loadAtStart = loadavg()[0]!;
  const work = mkdtempSync(join(tmpdir(), 'mayfly-bench-ct-'));
  const signer = await createEphemeralChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    systemClock,
  );
  writeFileSync(join(work, 'roots.pem'), encodePem('CERTIFICATE', signer.chain.at(-1)!));
  const logEnv = {
    MAYFLY_CTLOG_HOST: '127.0.0.1',
    MAYFLY_CTLOG_PORT: '0',
    MAYFLY_CTLOG_ROOTS: join(work, 'roots.pem'),
    MAYFLY_CTLOG_DIR: join(work, 'log'),
    MAYFLY_CTLOG_SEQUENCE_INTERVAL_MS: String(interval),
  };
  let log: { url: string; spki: Buffer; close(): Promise<void> };
  if (logProcess) {
    const out = join(work, 'ctlog.log');
    const child = spawnServer(ctlogJs, [], { ...logEnv, MAYFLY_LOG_LEVEL: 'info' }, out);
    const m = await waitForLine(out, /"port":(\d+)[^\n]*"msg":"ctlog listening"/, child, 'ctlog');
    const url = `http://127.0.0.1:${m[1]}`;
    const meta = (await (await fetch(`${url}/log.json`)).json()) as { key: string };
    log = { url, spki: Buffer.from(meta.key, 'base64'), close: stopper(child) };
  } else {
    const app = await startCtlog(loadCtlogConfig(logEnv), silentLogger, systemClock);
    log = { url: app.url, spki: app.key.spki, close: () => app.close() };
  }
  writeFileSync(join(work, 'log.pub'), encodePem('PUBLIC KEY', log.spki));
  const off = new CertificateAuthority(signer);
  const on = new CertificateAuthority(signer, {
    ct: new CtLogs({
      logs: [{ url: log.url, publicKeyFile: join(work, 'log.pub') }],
      minScts: 1,
      timeoutMs: 10_000,
    }),
  });
  const keys = Array.from({ length: 256 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
      type: 'spki',
      format: 'der',
    }),
  );
  const identity = {
    san: { type: 'email' as const, value: 'bench@example.com' },
    extensions: [
      {
        oid: FULCIO_OID.issuerV2,
        value: 'https://issuer.example.com',
        encoding: 'utf8' as const,
      },
      { oid: FULCIO_OID.issuerV1, value: 'https://issuer.example.com', encoding: 'raw' as const },
    ],
  };
  let n = 0;
  const run = async (ca: CertificateAuthority, ms: number) => {
    const latencies: number[] = [];
    let errors = 0;
    const end = Date.now() + ms;
    const started = Date.now();
    const cpu0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) {
          const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
          const t0 = process.hrtime.bigint();
          try {
            await ca.issue({
              publicKey: keys[n++ % keys.length]!,
              identity,
              serial: randomSerial(),
              notBefore,
              notAfter: new Date(notBefore.getTime() + 600_000),
            });
            latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          } catch {
            errors++;
          }
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    latencies.sort((a, b) => a - b);
    return {
      rate: latencies.length / elapsed,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      errors,
      count: latencies.length,
      cpuMs: (cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length),
    };
  };
  await run(off, 1000); // warm-up
  await run(on, 1000);
  const rows: string[] = [];
  const rates = { off: [] as number[], on: [] as number[] };
  const cpus = { off: [] as number[], on: [] as number[] };
  for (let round = 1; round <= rounds; round++) {
    for (const [name, ca] of [
      ['off', off],
      ['on', on],
    ] as const) {
      const r = await run(ca, seconds * 1000);
      rates[name].push(r.rate);
      cpus[name].push(r.cpuMs);
      rows.push(
        `| ${round} | CT ${name} | ${r.count} | ${r.rate.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.cpuMs.toFixed(3)} | ${r.errors} |`,
      );
    }
  }
  await log.close();
  rmSync(work, { recursive: true, force: true });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratio = mean(rates.on) / mean(rates.off);
  const cpuRatio = mean(cpus.off) / mean(cpus.on);
  const command = `npm run bench:ct -- --seconds ${seconds} --concurrency ${concurrency} --interval ${interval} --rounds ${rounds}${logProcess ? ' --log-process' : ''}`;
  const report = [
    `# CT on vs off (issue #17) — ${new Date().toISOString()}`,
    '',
    `Command: \`${command}\``,
    '',
    `The CA proper (\`CertificateAuthority.issue\`, no HTTP front, no OIDC) and mayfly's CT log`,
    `(directory backend, sequencing interval ${interval} ms) ${logProcess ? 'in two processes (the CPU column is the CA’s alone)' : 'in one Node process'}, closed loop with`,
    `${concurrency} requests in flight, ${seconds} s per run, modes alternated. The machine (2 cores)`,
    `had a load average of ${loadAtStart.toFixed(1)} at the start (${loadavg()[0]!.toFixed(1)} at the end): compare the ratios, not`,
    'the absolute figures.',
    '',
    '| round | mode | certificates | per second | p50 ms | p99 ms | CPU ms per certificate | errors |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Throughput with CT / without: **${(ratio * 100).toFixed(0)}%** (target ≥ 60%).`,
    logProcess
      ? `The CA's CPU per certificate without CT / with CT: **${(cpuRatio * 100).toFixed(0)}%** (user + system CPU of the CA's process; the log's is not counted).`
      : `CPU per certificate without CT / with CT: **${(cpuRatio * 100).toFixed(0)}%** (the throughput ratio the process would reach when CPU-bound: both the CA and the log run in it; user + system CPU).`,
    '',
  ].join('\n');
  process.stdout.write(report);
  const out = resolve(__dirname, '../../bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, logProcess ? 'ct-ca-latest.md' : 'ct-latest.md'), report);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
