import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type RequestShape } from './lib/load';
import { runPaced } from './lib/paced';
import { summarizeProfile } from './lib/profile';
import { startMayfly } from './lib/servers';
import { threadSamples, type ThreadSample } from './lib/threads';

/**
 * Where the CPU of one certificate goes at a steady rate (issue #18, item 4): the compiled CA
 * as shipped (services/common/ca-runtime.ts), an open loop at --rate requests/s
 * (bench/lib/paced.ts), and over the measured window: every thread's user and system time
 * and context switches (/proc/<pid>/task/*), optionally the system calls of every thread
 * (`--strace`: strace -c -f attached for the window; it slows the process, so its CPU
 * figures are not the others') and the main thread's profile (`--cpu-prof`: node
 * --cpu-prof, self time by area and by function over the window).
 *
 *   node dist/bench/cpu-200.js [--rate 200] [--seconds 8] [--warmup 4] [--strace] [--cpu-prof]
 *                              [--perf] [--closed] [--env 'NAME=VALUE ...'] [--out FILE]
 *                              [--node '--trace-deopt']   (node flags; the server's output
 *                                                         during the window goes to a file)
 *                              [--alloc]   (JavaScript heap allocated per certificate, by
 *                                          function: V8's sampling heap profiler)
 *
 * `--closed` measures at saturation instead (closed loop, 16 connections), for the same
 * breakdown; `--perf` samples every thread with perf record (by thread and symbol).
 */

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

interface HeapNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children: readonly HeapNode[];
}

/** The sampling heap profile: bytes allocated per certificate, by function (self and inclusive). */
function allocationReport(text: string, certificates: number): string[] {
  const profile = JSON.parse(text) as {
    head?: HeapNode;
    samples?: { size: number; nodeId: number }[];
    error?: string;
  };
  if (!profile.head || !profile.samples) return [`allocation profile failed: ${profile.error}`, ''];
  const parent = new Map<number, HeapNode | undefined>();
  const byId = new Map<number, HeapNode>();
  const walk = (node: HeapNode, up: HeapNode | undefined) => {
    byId.set(node.id, node);
    parent.set(node.id, up);
    for (const child of node.children) walk(child, node);
  };
  walk(profile.head, undefined);
  const name = (n: HeapNode) =>
    `${n.callFrame.functionName || '(anonymous)'} | ${n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  for (const sample of profile.samples) {
    total += sample.size;
    let node = byId.get(sample.nodeId);
    if (!node) continue;
    self.set(name(node), (self.get(name(node)) ?? 0) + sample.size);
    const seen = new Set<string>();
    for (; node; node = parent.get(node.id)) {
      const key = name(node);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + sample.size);
    }
  }
  const kb = (bytes: number) => fmt(bytes / certificates / 1024, 1);
  const top = (m: Map<string, number>, count: number) =>
    [...m]
      .filter(([k]) => !k.startsWith('(root)') && !k.startsWith('(anonymous) | :'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([k, v]) => `| ${k} | ${kb(v)} |`);
  return [
    `JavaScript heap allocated per certificate (V8's sampling heap profiler over the window, objects the GC collected included): **${kb(total)} KB**.`,
    '',
    '| allocated by (self) | where | KB / cert |',
    '| --- | --- | ---: |',
    ...top(self, 20),
    '',
    '| allocated under (inclusive) | where | KB / cert |',
    '| --- | --- | ---: |',
    ...top(inclusive, 25),
    '',
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rate: { type: 'string', default: '200' },
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '4' },
      strace: { type: 'boolean', default: false },
      perf: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      env: { type: 'string', default: '' },
      closed: { type: 'boolean', default: false },
      node: { type: 'string', default: '' },
      alloc: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
    strict: true,
  });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const dir = scratchDir();
  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const fixtures = await makeFixtures(issuer, 2000);
  const requests: RequestShape[] = v2Requests(fixtures);
  const extraEnv = Object.fromEntries(
    values.env
      .split(/\s+/)
      .filter(Boolean)
      .map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
  );
  const profDir = join(dir, 'cpuprofile');
  // --alloc: V8's sampling heap profiler in the server, started and stopped by SIGUSR2 at the
  // window's ends, keeping the objects the scavenger collected (what a request allocates and
  // drops), written as JSON when it stops.
  const allocFile = join(dir, 'alloc.json');
  const preload = join(dir, 'alloc-preload.js');
  writeFileSync(
    preload,
    `const inspector = require('node:inspector');
const fs = require('node:fs');
const session = new inspector.Session();
session.connect();
let on = false;
process.on('SIGUSR2', () => {
  if (!on) {
    on = true;
    session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  } else {
    session.post('HeapProfiler.stopSampling', (err, r) => {
      fs.writeFileSync(${JSON.stringify(allocFile)}, err ? JSON.stringify({ error: String(err) }) : JSON.stringify(r.profile));
    });
  }
});
`,
  );
  mkdirSync(profDir, { recursive: true });
  const server = await startMayfly(
    'mayfly',
    dir,
    {
      MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
      MAYFLY_RATELIMITS: 'off',
      ...extraEnv,
    },
    [
      ...(values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
      ...values.node.split(/\s+/).filter(Boolean),
      ...(values.alloc ? ['--require', preload] : []),
    ],
  );
  const load = [loadavg()[0]!];
  // Warmed at saturation as bench/lib/versus.ts does (V8 compiles the hot code; a fresh
  // process at 200/s spends seconds more in its compiler threads), then a second at the pace.
  await runLoad({
    url: server.url,
    requests,
    connections: 16,
    duration: Number(values.warmup),
    serverPid: server.pid,
    okStatus: 200,
  });
  await runPaced({
    url: server.url,
    requests,
    rate,
    seconds: 1,
    serverPid: server.pid,
    okStatus: 200,
  });
  const strace = values.strace
    ? spawn('strace', ['-c', '-f', '-o', join(dir, 'strace.txt'), '-p', String(server.pid)], {
        stdio: 'ignore',
      })
    : undefined;
  const perf = values.perf
    ? spawn(
        'perf',
        ['record', '-F', '997', '-o', join(dir, 'perf.data'), '-p', String(server.pid)],
        {
          stdio: 'ignore',
        },
      )
    : undefined;
  if (strace || perf) await new Promise((r) => setTimeout(r, 500));
  if (values.alloc) process.kill(server.pid, 'SIGUSR2');
  const before = threadSamples(server.pid);
  const logBytesBefore = statSync(join(dir, 'mayfly.log')).size;
  const from = Number(process.hrtime.bigint() / 1000n); // the monotonic clock V8's samples use
  const result = values.closed
    ? await runLoad({
        url: server.url,
        requests,
        connections: 16,
        duration: seconds,
        serverPid: server.pid,
        okStatus: 200,
      }).then((r) => ({ ...r, achieved: r.certificatesPerSecond }))
    : await runPaced({
        url: server.url,
        requests,
        rate,
        seconds,
        serverPid: server.pid,
        okStatus: 200,
      });
  const to = Number(process.hrtime.bigint() / 1000n);
  const after = threadSamples(server.pid);
  if (strace) {
    strace.kill('SIGINT');
    await new Promise((r) => strace.once('exit', r));
  }
  if (values.alloc) {
    process.kill(server.pid, 'SIGUSR2');
    for (let i = 0; i < 100 && !existsSync(allocFile); i++)
      await new Promise((r) => setTimeout(r, 100));
  }
  if (perf) {
    perf.kill('SIGINT');
    await new Promise((r) => perf.once('exit', r));
  }
  load.push(loadavg()[0]!);
  await server.stop();
  await issuer.close();

  const n = result.certificates;
  // The server's own output during the window (e.g. --node='--trace-deopt'), for a look.
  writeFileSync(
    join(dir, 'window.log'),
    readFileSync(join(dir, 'mayfly.log')).subarray(logBytesBefore),
  );
  process.stderr.write(`server output during the window: ${join(dir, 'window.log')}\n`);
  const earlier = new Map(before.map((s) => [s.tid, s]));
  const zero = (s: ThreadSample): ThreadSample => ({
    ...s,
    user: 0,
    system: 0,
    voluntarySwitches: 0,
    involuntarySwitches: 0,
  });
  const rows = after
    .map((s) => {
      const b = earlier.get(s.tid) ?? zero(s);
      return {
        tid: s.tid,
        role: s.tid === server.pid ? 'main' : `thread ${s.tid - server.pid}`,
        user: s.user - b.user,
        system: s.system - b.system,
        vol: s.voluntarySwitches - b.voluntarySwitches,
        invol: s.involuntarySwitches - b.involuntarySwitches,
      };
    })
    .filter((r) => r.user + r.system + r.vol + r.invol > 0);
  const total = rows.reduce((a, r) => a + r.user + r.system, 0);
  const lines = [
    `# CPU per certificate ${values.closed ? 'at saturation (closed loop, 16 connections)' : `at ${fmt(rate)} requests/s`}`,
    '',
    `- Command: \`node dist/bench/cpu-200.js ${process.argv.slice(2).join(' ')}\` (after \`npx tsc -p tsconfig.bench.json\`), ${new Date().toISOString()}; load average ${load.map((l) => l.toFixed(1)).join(' → ')} (shared machine).`,
    `- ${fmt(n)} certificates in ${seconds} s (${fmt(result.achieved)}/s), p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.failures} failures; ${fmt((total * 1e6) / n)} µs CPU per certificate over all threads${values.strace ? ' (strace attached: slower than without)' : ''}.`,
    '',
    '| thread (tid − pid) | user µs / cert | system µs / cert | voluntary switches / cert | involuntary / cert |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.role} | ${fmt((r.user * 1e6) / n)} | ${fmt((r.system * 1e6) / n)} | ${fmt(r.vol / n, 2)} | ${fmt(r.invol / n, 2)} |`,
    ),
    '',
  ];
  if (strace) {
    lines.push('strace -c -f over the window (calls per certificate):', '', '```');
    const text = readFileSync(join(dir, 'strace.txt'), 'utf8');
    for (const line of text.split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
      lines.push(m ? `${line}    ${fmt(Number(m[1]) / n, 2)}/cert` : line);
    }
    lines.push('```', '');
  }
  if (perf) {
    const report = spawnSync(
      'perf',
      [
        'report',
        '-i',
        join(dir, 'perf.data'),
        '--stdio',
        '--sort',
        'tid,dso,sym',
        '--percent-limit',
        '0.7',
      ],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    );
    lines.push(
      'perf record -F 997 over the window (samples of every thread, by thread, library and symbol):',
      '',
      '```',
      ...report.stdout.split('\n').filter((l) => l && !l.startsWith('#')),
      '```',
      '',
    );
  }
  if (values.alloc && existsSync(allocFile))
    lines.push(...allocationReport(readFileSync(allocFile, 'utf8'), n));
  if (values['cpu-prof']) {
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      const text = readFileSync(join(profDir, file), 'utf8');
      const summary = summarizeProfile(text, n, { from, to });
      lines.push(
        `Main thread profile (${join(profDir, file)}): ${fmt(summary.totalMs)} ms sampled, ${fmt((summary.totalMs * 1000) / n)} µs per certificate.`,
        '',
        '| area | µs / cert |',
        '| --- | ---: |',
        ...summary.areas.map((a) => `| ${a.name} | ${fmt((a.ms * 1000) / n, 1)} |`),
        '',
        '| function | where | µs / cert |',
        '| --- | --- | ---: |',
        ...summary.functions
          .slice(0, 25)
          .map((f) => `| ${f.name} | ${f.where} | ${fmt((f.ms * 1000) / n, 1)} |`),
        '',
      );
    }
  }
  const report = lines.join('\n');
  process.stdout.write(report);
  if (values.out) writeFileSync(resolve(values.out), report);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `cpu-200: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
