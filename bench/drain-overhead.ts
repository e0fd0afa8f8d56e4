import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { drainable } from '../services/ca/lifecycle';

/**
 * What the drain's connection bookkeeping (services/ca/lifecycle.ts, `drainable`) costs a
 * server while nobody drains: a map entry per connection, a lookup and a field write per
 * request. Measured on the cheapest possible server (a trivial handler), so the ratio is an
 * upper bound: a signing request costs the CA some hundred times more CPU.
 *
 * Each round starts a server process `plain` and one `tracked` (in turn), sends the same
 * number of keep-alive requests from 16 connections, and asks the server for its CPU time
 * (user + system) per request. Rounds alternate the order; the figures are compared within
 * the run only.
 *
 *   npx tsc -p tsconfig.bench.json && node dist/bench/drain-overhead.js [requests] [rounds]
 */

const role = process.env.DRAIN_OVERHEAD_SERVER;

if (role) {
  // The server: answers "ok", and its CPU time since listening on GET /cpu.
  let since = process.cpuUsage();
  let served = 0;
  const server = createServer((req, res) => {
    if (req.url === '/cpu') {
      const used = process.cpuUsage(since);
      res.end(JSON.stringify({ served, cpuUs: used.user + used.system }));
      return;
    }
    if (req.url === '/reset') {
      since = process.cpuUsage();
      served = 0;
      res.end('reset');
      return;
    }
    served++;
    res.end('ok');
  });
  if (role === 'tracked') drainable(server);
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    process.stdout.write(`listening ${port}\n`);
  });
} else {
  void main();
}

async function measure(mode: 'plain' | 'tracked', requests: number): Promise<number> {
  const child = spawn(process.execPath, [__filename], {
    env: { ...process.env, DRAIN_OVERHEAD_SERVER: mode },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((res) =>
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening (\d+)/.exec(d.toString());
      if (m) res(Number(m[1]));
    }),
  );
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 16 });
  const get = async (path: string) => (await pool.request({ method: 'GET', path })).body.text();
  // Warm-up, then the measured requests.
  await Promise.all(Array.from({ length: 2000 }, () => get('/')));
  await get('/reset');
  let left = requests;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (left-- > 0) await get('/');
    }),
  );
  const { served, cpuUs } = JSON.parse(await get('/cpu')) as { served: number; cpuUs: number };
  await pool.close();
  child.kill();
  return cpuUs / served;
}

async function main(): Promise<void> {
  const requests = Number(process.argv[2] ?? 50_000);
  const rounds = Number(process.argv[3] ?? 5);
  const rows: string[] = [];
  const ratios: number[] = [];
  const diffs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const order =
      round % 2 === 0 ? (['plain', 'tracked'] as const) : (['tracked', 'plain'] as const);
    const got: Record<string, number> = {};
    for (const mode of order) got[mode] = await measure(mode, requests);
    const ratio = got.tracked! / got.plain!;
    ratios.push(ratio);
    diffs.push(got.tracked! - got.plain!);
    rows.push(
      `| ${round + 1} | ${order.join(' then ')} | ${got.plain!.toFixed(1)} | ${got.tracked!.toFixed(1)} | ${ratio.toFixed(3)} |`,
    );
    process.stderr.write(`${rows[rows.length - 1]}\n`);
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const medianDiff = [...diffs].sort((a, b) => a - b)[Math.floor(diffs.length / 2)]!;
  const stamp = new Date().toISOString();
  const report = [
    `# Drain bookkeeping overhead — ${stamp}`,
    '',
    `Command: \`npx tsc -p tsconfig.bench.json && node dist/bench/drain-overhead.js ${requests} ${rounds}\``,
    '',
    `Machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores, node ${process.version}. **Shared**: other engineers' builds and tests ran at the same time, so single figures are noisy; compare the ratios within this run.`,
    '',
    `Server CPU time (user + system) per request, µs, for ${requests} keep-alive requests from 16 connections to a trivial node:http server, without (\`plain\`) and with the drain's connection tracking (\`tracked\`):`,
    '',
    '| round | order | plain | tracked | tracked / plain |',
    '|---:|---|---:|---:|---:|',
    ...rows,
    '',
    `Median ratio: **${median.toFixed(3)}**; median difference **${medianDiff.toFixed(2)} µs** per request. A signing request costs the CA about 630 µs of CPU (bench/results/latest.md), so that is what the difference compares with.`,
    '',
  ].join('\n');
  const dir = resolve(__dirname, '..', '..', 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'drain-overhead.md'), report);
  process.stdout.write(report);
  process.exit(0);
}
