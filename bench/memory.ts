import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor } from '../test/helpers/mayfly-process';
import { makeFixtures, scratchDir, v2Requests } from './lib/fixtures';
import { runLoad, type RequestShape } from './lib/load';
import { machineFacts } from './lib/proc';
import { startMayfly } from './lib/servers';
import { makeSoakCa } from './lib/soak/ca';
import { CA_ENV, CA_NODE_ARGS } from '../services/common/ca-runtime';

/**
 * Where the CA's memory goes (issue #18, item 3). Three modes, all on the compiled service
 * (`npx tsc -p tsconfig.bench.json` first):
 *
 *   node dist/bench/memory.js modules
 *       RSS and V8 heap after `require` of each top-level import of services/ca/main.ts, one
 *       after the other in one fresh process (what main pays, in its order), then each npm
 *       package alone in a fresh process (what that package costs on its own).
 *   node dist/bench/memory.js server [--seconds 20] [--connections 32] [--node-arg X]...
 *       one server (file CA, rate limits off, gRPC on port 0, info and audit logs to files,
 *       as in `npm run bench -- --versus`): RSS, RssAnon, RssFile, VmHWM and the V8 heap
 *       spaces at idle and every second under a closed-loop load.
 *   node dist/bench/memory.js long [--certificates 200000] [--every 10000] [--out FILE]
 *       RSS and V8 heap after every `--every` certificates of one long closed-loop run
 *       (is RSS flat?), as a markdown table.
 *
 * `server` and `long` run the service as `npm start` and the image do, with the CA's node flags
 * and memory settings (services/common/ca-runtime.ts); `--bare` runs it without them (plain
 * `node dist/services/ca/main.js`). `--env NAME=VALUE` and `--node-arg X` (repeatable) add to
 * the server's environment and node flags.
 */

const repoRoot = resolve(__dirname, '../..');

interface Status {
  readonly rss: number;
  readonly hwm: number;
  readonly anon: number;
  readonly file: number;
}

function status(pid: number | 'self'): Status {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) / 1024 : 0;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
}

const mb = (n: number | undefined, digits = 1) => (n === undefined ? '–' : n.toFixed(digits));

// ------------------------------------------------------------------ modules

/**
 * The child of `modules`, run with `node -e` so that nothing of this file is loaded in it:
 * requires each argument in turn and prints one JSON line after each (after a full GC).
 */
const LOAD_CHILD = `
const { readFileSync } = require('node:fs');
const line = (name, modules) => {
  gc();
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (f) => Number(new RegExp('^' + f + ':\\\\s+(\\\\d+) kB', 'm').exec(text)[1]) / 1024;
  const heap = process.memoryUsage();
  console.log(JSON.stringify({ name, rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'),
    file: kb('RssFile'), heapUsed: heap.heapUsed / 2 ** 20, heapTotal: heap.heapTotal / 2 ** 20,
    modules }));
};
line('node', 0);
for (const path of process.argv.slice(1)) {
  const before = Object.keys(require.cache).length;
  require(path);
  line(path, Object.keys(require.cache).length - before);
}
`;

interface Loaded extends Status {
  readonly name: string;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly modules: number;
}

function loadInChild(paths: readonly string[]): Loaded[] {
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', LOAD_CHILD, ...paths], {
    encoding: 'utf8',
    cwd: repoRoot,
  });
  if (r.status !== 0) throw new Error(`module probe failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Loaded);
}

/** The top-level imports of main.ts, in its order (relative to dist/services/ca). */
function mainImports(): string[] {
  const source = readFileSync(join(repoRoot, 'services/ca/main.ts'), 'utf8');
  const out: string[] = [];
  for (const match of source.matchAll(/^import\s+(type\s+)?[^'"]*from\s+'([^']+)';/gms)) {
    if (match[1]) continue; // type-only
    const spec = match[2]!;
    out.push(spec.startsWith('.') ? join(repoRoot, 'dist/services/ca', spec) : spec);
  }
  return out;
}

const PACKAGES = [
  'express',
  'body-parser',
  'pino',
  'zod',
  'yaml',
  'prom-client',
  'jose',
  'pkijs',
  'asn1js',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  '@grpc/reflection',
  'ioredis',
  'pkcs11js',
  'pg',
];

function modulesReport(): string {
  const lines: string[] = [];
  const chain = loadInChild(mainImports());
  lines.push(
    '### main.ts, import by import (one process, in main.ts order, after a full GC each)',
    '',
    '| after loading | modules | RSS MB | Δ RSS | RssAnon MB | RssFile MB | VmHWM MB | V8 heap used MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  let prev = chain[0]!.rss;
  for (const row of chain) {
    const name = row.name.startsWith(repoRoot) ? row.name.slice(repoRoot.length + 1) : row.name;
    lines.push(
      `| ${name} | ${row.modules} | ${mb(row.rss)} | ${row.rss - prev >= 0 ? '+' : ''}${mb(row.rss - prev)} | ${mb(row.anon)} | ${mb(row.file)} | ${mb(row.hwm)} | ${mb(row.heapUsed)} |`,
    );
    prev = row.rss;
  }
  lines.push(
    '',
    '### Each package alone (a fresh process each)',
    '',
    "Deltas over a process that has loaded one small file of ours first (services/common/clock.js): the first `require` of anything pages in some 2 MB of node's own code, which is nobody's in particular.",
    '',
    '| package | modules | Δ RSS MB | Δ RssAnon MB | Δ V8 heap used MB |',
    '| --- | ---: | ---: | ---: | ---: |',
  );
  const tiny = join(repoRoot, 'dist/services/common/clock');
  for (const name of PACKAGES) {
    const [, base, loaded] = loadInChild([tiny, name]);
    lines.push(
      `| ${name} | ${loaded!.modules} | +${mb(loaded!.rss - base!.rss)} | +${mb(loaded!.anon - base!.anon)} | +${mb(loaded!.heapUsed - base!.heapUsed)} |`,
    );
  }
  return lines.join('\n');
}

// ------------------------------------------------------------------ server

interface Server {
  readonly pid: number;
  readonly url: string;
  readonly metricsUrl: string;
  stop(): Promise<void>;
}

/** The compiled CA as plain node with `nodeArgs` (the caller picks the flags under test). */
async function startServer(
  dir: string,
  env: Record<string, string>,
  nodeArgs: readonly string[],
): Promise<Server> {
  const server = await startMayfly(
    `server-${Date.now()}`,
    dir,
    { MAYFLY_RATELIMITS: 'off', ...env },
    nodeArgs,
    { asShipped: false },
  );
  return { ...server, metricsUrl: `http://127.0.0.1:${server.metricsPort}/metrics` };
}

/** V8 heap figures from the server's own /metrics (prom-client's default collectors). */
async function heapOf(server: Server): Promise<Record<string, number>> {
  const text = await (await fetch(server.metricsUrl)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(
    /^mayfly_nodejs_heap_(space_size_used|space_size_total|size_used|size_total)_bytes(?:\{space="(\w+)"\})? (\S+)$/gm,
  )) {
    out[m[2] ? `${m[1]}:${m[2]}` : m[1]!] = Number(m[3]) / 2 ** 20;
  }
  const ext = /^mayfly_nodejs_external_memory_bytes (\S+)$/m.exec(text);
  if (ext) out.external = Number(ext[1]) / 2 ** 20;
  return out;
}

interface Setup {
  readonly dir: string;
  readonly env: Record<string, string>;
  readonly requests: RequestShape[];
  close(): Promise<void>;
}

async function setup(extraEnv: Record<string, string>, fixtures = 2000): Promise<Setup> {
  const dir = scratchDir();
  const issuer = await startDevIssuer({ host: '127.0.0.1' });
  const ca = await makeSoakCa(dir);
  const made = await makeFixtures(issuer, fixtures);
  return {
    dir,
    env: {
      MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
      MAYFLY_CA: 'file',
      MAYFLY_CA_CERT: ca.chainFile,
      MAYFLY_CA_KEY: ca.keyFile,
      ...extraEnv,
    },
    requests: v2Requests(made),
    close: () => issuer.close(),
  };
}

async function serverReport(
  s: Setup,
  nodeArgs: readonly string[],
  seconds: number,
  connections: number,
): Promise<string> {
  const server = await startServer(s.dir, s.env, nodeArgs);
  const lines: string[] = [];
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const row = async (label: string, certificates: string) => {
      const st = status(server.pid);
      const heap = await heapOf(server);
      lines.push(
        `| ${label} | ${certificates} | ${mb(st.rss)} | ${mb(st.anon)} | ${mb(st.file)} | ${mb(st.hwm)} | ${mb(heap.size_used)} / ${mb(heap.size_total)} | ${mb(heap['space_size_total:new'])} | ${mb(heap['space_size_total:old'])} | ${mb(heap['space_size_total:code'])} | ${mb(heap.external)} |`,
      );
    };
    lines.push(
      `Server: node ${[...nodeArgs, 'dist/services/ca/main.js'].join(' ')}; extra env: ${
        Object.entries(s.env)
          .filter(([k]) => !/IDENTITY_CONFIG|CA_CERT|CA_KEY/.test(k))
          .map(([k, v]) => `${k}=${v}`)
          .join(' ') || 'none'
      }; ${connections} connections, closed loop.`,
      '',
      '| when | certificates | RSS MB | RssAnon | RssFile | VmHWM | V8 heap used / total | new space | old space | code space | external |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    await row('idle, 2 s after start', '0');
    let total = 0;
    for (let second = 1; second <= seconds; second++) {
      const result = await runLoad({
        url: server.url,
        requests: s.requests,
        connections,
        duration: 1,
        serverPid: server.pid,
        okStatus: 200,
      });
      total += result.certificates;
      if (second === 1 || second % 5 === 0 || second === seconds)
        await row(`under load, ${second} s`, total.toLocaleString('en-US'));
    }
    await new Promise((r) => setTimeout(r, 3000));
    await row('idle again, 3 s after the load', total.toLocaleString('en-US'));
  } finally {
    await server.stop();
  }
  return lines.join('\n');
}

async function longReport(
  s: Setup,
  nodeArgs: readonly string[],
  certificates: number,
  every: number,
  connections: number,
): Promise<string> {
  const server = await startServer(s.dir, s.env, nodeArgs);
  const lines: string[] = [];
  const started = new Date();
  const load = [loadavg()[0]!];
  let failures = 0;
  let cpu = 0;
  try {
    const rows: { after: number; st: Status; heap: Record<string, number> }[] = [];
    for (let done = 0; done < certificates;) {
      const result = await runLoad({
        url: server.url,
        requests: s.requests,
        connections,
        amount: every,
        serverPid: server.pid,
        okStatus: 200,
      });
      done += result.certificates;
      failures += result.failures;
      cpu += result.serverCpuSeconds;
      rows.push({ after: done, st: status(server.pid), heap: await heapOf(server) });
      process.stderr.write(`memory: ${done} certificates, RSS ${mb(rows.at(-1)!.st.rss)} MB\n`);
      if (result.certificates === 0) throw new Error('no certificates: the server fails');
    }
    load.push(loadavg()[0]!);
    const first = rows[0]!;
    const last = rows.at(-1)!;
    const maxRss = Math.max(...rows.map((r) => r.st.rss));
    const half = rows.slice(Math.floor(rows.length / 2));
    lines.push(
      `- Server: \`${[
        ...Object.entries(s.env)
          .filter(([k]) => !/IDENTITY_CONFIG|CA_CERT|CA_KEY/.test(k))
          .map(([k, v]) => `${k}=${v}`),
        'node',
        ...nodeArgs,
        'dist/services/ca/main.js',
      ].join(' ')}\` (file CA, rate limits off, gRPC on, info and audit logs to files).`,
      `- Started ${started.toISOString()}; ${last.after.toLocaleString('en-US')} certificates, ${failures} failures, ${connections} keep-alive connections, closed loop; ${mb((cpu * 1000) / last.after, 3)} server CPU ms per certificate.`,
      `- Load average (1 min) ${load.map((l) => l.toFixed(1)).join(' → ')}: the machine was shared with other engineers' work.`,
      `- RSS after the first ${every.toLocaleString('en-US')}: ${mb(first.st.rss)} MB; at the end: ${mb(last.st.rss)} MB; highest sample ${mb(maxRss)} MB; VmHWM (peak) ${mb(last.st.hwm)} MB; second half of the run: ${mb(Math.min(...half.map((r) => r.st.rss)))}–${mb(Math.max(...half.map((r) => r.st.rss)))} MB.`,
      '',
      '| certificates | RSS MB | RssAnon MB | VmHWM MB | V8 heap used MB | V8 heap total MB |',
      '| ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map(
        (r) =>
          `| ${r.after.toLocaleString('en-US')} | ${mb(r.st.rss)} | ${mb(r.st.anon)} | ${mb(r.st.hwm)} | ${mb(r.heap.size_used)} | ${mb(r.heap.size_total)} |`,
      ),
    );
  } finally {
    await server.stop();
  }
  return lines.join('\n');
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: {
      seconds: { type: 'string', default: '20' },
      connections: { type: 'string', default: '32' },
      certificates: { type: 'string', default: '200000' },
      every: { type: 'string', default: '10000' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      env: { type: 'string', multiple: true, default: [] },
      bare: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  const mode = positionals[0] ?? 'server';
  const env = {
    ...(values.bare ? {} : CA_ENV),
    ...Object.fromEntries(
      values.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  };
  const nodeArgs = [...(values.bare ? [] : CA_NODE_ARGS), ...values['node-arg']];
  const facts = machineFacts();
  const header = [
    `Command: \`node dist/bench/memory.js ${process.argv.slice(2).join(' ')}\` (after \`npx tsc -p tsconfig.bench.json\`), ${new Date().toISOString()}.`,
    `Machine: ${facts.cores} × ${facts.cpu}, node ${facts.node}; load average (1 min) ${loadavg()[0]!.toFixed(1)} at the start (shared with other engineers' work: memory figures are steady, CPU figures are not).`,
    '',
  ];
  let body: string;
  if (mode === 'modules') body = modulesReport();
  else {
    const s = await setup(env);
    try {
      body =
        mode === 'long'
          ? await longReport(
              s,
              nodeArgs,
              Number(values.certificates),
              Number(values.every),
              Number(values.connections),
            )
          : await serverReport(s, nodeArgs, Number(values.seconds), Number(values.connections));
    } finally {
      await s.close();
    }
  }
  const text = [...header, body, ''].join('\n');
  if (values.out) writeFileSync(values.out, text);
  process.stdout.write(text);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`memory: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
