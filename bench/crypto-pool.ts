import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

/**
 * The ECDSA work of a certificate (two P-256 verifications: token and proof; one P-256
 * signature: the certificate) on the main thread (crypto.verify/sign without a callback, as
 * the CA does today) against libuv's thread pool (with a callback: OpenSSL runs on a pool
 * thread, the main thread only hands over and collects), in one process. Rounds alternate;
 * CPU is the process's own (process.cpuUsage: every thread), so the figure per operation
 * includes the hand-over. The question (issue #18, item 2): would one process with its crypto
 * on the pool use the cores at less CPU per certificate than a cluster of processes?
 *
 *   node dist/bench/crypto-pool.js [--rounds 5] [--ops 6000] [--inflight 64]
 */

interface Key {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: 'string', default: '5' },
      ops: { type: 'string', default: '6000' },
      inflight: { type: 'string', default: '64' },
    },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const ops = Number(values.ops);
  const inflight = Number(values.inflight);
  const keys: Key[] = Array.from({ length: 64 }, () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  );
  const message = Buffer.alloc(300, 7);
  const signatures = keys.map((k) =>
    sign('sha256', message, { key: k.privateKey, dsaEncoding: 'der' }),
  );

  // One "certificate": verify, verify, sign.
  const syncCert = (i: number) => {
    const k = i % keys.length;
    if (!verify('sha256', message, { key: keys[k]!.publicKey, dsaEncoding: 'der' }, signatures[k]!))
      throw new Error('bad signature');
    if (!verify('sha256', message, { key: keys[k]!.publicKey, dsaEncoding: 'der' }, signatures[k]!))
      throw new Error('bad signature');
    sign('sha256', message, { key: keys[(k + 1) % keys.length]!.privateKey, dsaEncoding: 'der' });
  };
  const verifyAsync = (k: number) =>
    new Promise<void>((resolve, reject) =>
      verify(
        'sha256',
        message,
        { key: keys[k]!.publicKey, dsaEncoding: 'der' },
        signatures[k]!,
        (err, ok) => (err || !ok ? reject(err ?? new Error('bad signature')) : resolve()),
      ),
    );
  const signAsync = (k: number) =>
    new Promise<void>((resolve, reject) =>
      sign('sha256', message, { key: keys[k]!.privateKey, dsaEncoding: 'der' }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  const asyncCert = async (i: number) => {
    const k = i % keys.length;
    await verifyAsync(k);
    await verifyAsync(k);
    await signAsync((k + 1) % keys.length);
  };

  const runSync = async () => {
    // Yield every `inflight` certificates, as a server does between requests.
    for (let i = 0; i < ops; i++) {
      syncCert(i);
      if (i % inflight === 0) await new Promise((r) => setImmediate(r));
    }
  };
  const runAsync = async () => {
    let next = 0;
    const lane = async () => {
      while (next < ops) await asyncCert(next++);
    };
    await Promise.all(Array.from({ length: inflight }, lane));
  };

  const sides: [string, () => Promise<void>][] = [
    ['main thread (sync)', runSync],
    [
      `thread pool (callback, ${inflight} in flight, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4'})`,
      runAsync,
    ],
  ];
  const results = new Map<string, { cpuUs: number[]; rate: number[] }>(
    sides.map(([n]) => [n, { cpuUs: [], rate: [] }]),
  );
  await runSync();
  await runAsync();
  const load = [loadavg()[0]!];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const [name, run] of order) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await run();
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const r = results.get(name)!;
      r.cpuUs.push((cpu.user + cpu.system) / ops);
      r.rate.push(ops / seconds);
    }
    load.push(loadavg()[0]!);
  }
  const lines = [
    `# ECDSA on the main thread vs on libuv's pool, one process — ${new Date().toISOString()}`,
    '',
    `Command: \`node dist/bench/crypto-pool.js ${process.argv.slice(2).join(' ')}\`. ${cpus().length} × ${cpus()[0]?.model ?? '?'}, node ${process.version}; shared machine (load average ${load.map((l) => l.toFixed(1)).join(' → ')}). One "certificate" = two P-256 verifications and one P-256 signature (DER), ${ops} per round, ${rounds} rounds alternating; medians.`,
    '',
    '| side | CPU µs per certificate (all threads) | certificates/s |',
    '|---|---:|---:|',
    ...sides.map(([name]) => {
      const r = results.get(name)!;
      return `| ${name} | ${median(r.cpuUs).toFixed(0)} | ${median(r.rate).toFixed(0)} |`;
    }),
    '',
  ];
  const [a, b] = sides.map(([n]) => median(results.get(n)!.cpuUs));
  lines.push(
    `Pool / main thread, CPU per certificate: **${((b! / a! - 1) * 100).toFixed(1)} %**.`,
    '',
  );
  process.stdout.write(lines.join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(
    `crypto-pool: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
