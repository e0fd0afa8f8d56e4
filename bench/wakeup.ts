/**
 * What the same work costs when a process sleeps between requests. At 200 requests/s a CA
 * is idle most of the time and wakes for each request; at saturation it never sleeps. On
 * this machine (a VM) the CPU per certificate at 200/s is about twice the figure at
 * saturation, for Fulcio as for mayfly (bench/results/versus-latest.md), and a CA that waits
 * on a CT log between the two halves of every issuance lives in the same regime. This bench
 * takes the server out of the picture: one fixed piece of work (a P-256 ECDSA verification
 * with node:crypto, or a SHA-256 of 1 KiB) timed with the process's CPU clock, back to
 * back, and then with the process sleeping (a timer) between batches.
 *
 *   node dist/bench/wakeup.js [--rounds 3] [--ops 3000] [--out FILE]
 */
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { middleMedian } from './lib/load';
import { load1, machineFacts } from './lib/proc';

const repoRoot = resolve(__dirname, '..', '..');

interface Work {
  readonly name: string;
  readonly run: () => void;
}

/** CPU µs of this thread per operation: `batch` operations, then `gapMs` asleep, until `ops`. */
function measure(work: Work, ops: number, gapMs: number, batch: number): Promise<number> {
  return new Promise((done) => {
    let spent = 0;
    let count = 0;
    const step = () => {
      const before = process.cpuUsage();
      for (let i = 0; i < batch; i++) work.run();
      const used = process.cpuUsage(before);
      spent += used.user + used.system;
      count += batch;
      if (count >= ops) done(spent / count);
      else if (gapMs > 0) setTimeout(step, gapMs);
      else setImmediate(step);
    };
    step();
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      ops: { type: 'string', default: '3000' },
      out: { type: 'string' },
    },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const ops = Number(values.ops);
  const started = new Date();
  const loadBefore = load1();
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.alloc(500, 7);
  const signature = sign('sha256', data, privateKey);
  const kib = Buffer.alloc(1024, 3);
  const works: Work[] = [
    {
      name: 'P-256 ECDSA verification (node:crypto, a KeyObject)',
      run: () => {
        if (!verify('sha256', data, publicKey, signature)) throw new Error('does not verify');
      },
    },
    { name: 'SHA-256 of 1 KiB', run: () => createHash('sha256').update(kib).digest() },
  ];
  const modes = [
    { name: 'back to back', gapMs: 0, batch: 1 },
    { name: 'one, then 1 ms asleep', gapMs: 1, batch: 1 },
    { name: 'one, then 5 ms asleep (200/s)', gapMs: 5, batch: 1 },
    { name: '10 together, then 5 ms asleep', gapMs: 5, batch: 10 },
  ];
  const results = new Map<string, number[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const work of works) {
      for (const mode of modes) {
        // Fewer operations with a gap: a 5 ms sleep per operation is slow to add up.
        const n = mode.gapMs > 0 && mode.batch === 1 ? Math.min(ops, 600) : ops;
        const us = await measure(work, n, mode.gapMs, mode.batch);
        const key = `${work.name}|${mode.name}`;
        results.set(key, [...(results.get(key) ?? []), us]);
        process.stderr.write(
          `wakeup: round ${round}, ${work.name}, ${mode.name}: ${us.toFixed(1)} µs\n`,
        );
      }
    }
  }
  const facts = machineFacts();
  const lines = [
    `# The same work, awake and after a sleep — ${started.toISOString()}`,
    '',
    `Command: \`node dist/bench/wakeup.js --rounds ${rounds} --ops ${ops}\` (after \`npx tsc -p tsconfig.bench.json\`).`,
    '',
    `Machine: ${facts.cpu}, ${facts.cores} cores, node ${facts.node}; load average ${loadBefore} before, ${load1()} after.`,
    '',
    "CPU µs per operation, from the process's CPU clock (process.cpuUsage) around the operations only (the timer and the sleep are not counted); each cell gives every round, then the median and its ratio to back to back.",
    '',
    '| work | mode | µs per operation, each round | median | ÷ back to back |',
    '|---|---|---|---:|---:|',
  ];
  for (const work of works) {
    const base = middleMedian(results.get(`${work.name}|${modes[0]!.name}`)!);
    for (const mode of modes) {
      const xs = results.get(`${work.name}|${mode.name}`)!;
      lines.push(
        `| ${work.name} | ${mode.name} | ${xs.map((x) => x.toFixed(1)).join(' / ')} | ${middleMedian(xs).toFixed(1)} | ${(middleMedian(xs) / base).toFixed(2)} × |`,
      );
    }
  }
  lines.push('');
  const out = resolve(values.out ?? join(repoRoot, 'bench/results/wakeup.md'));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, lines.join('\n'));
  process.stderr.write(`wakeup: wrote ${out}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
