import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join, resolve } from 'node:path';
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadClients } from '../services/common/grpc/protos';
import { startDevIssuer } from '../services/dev-issuer/dev-issuer';
import { identityConfigFor, LOOPBACK_CA_ENV } from '../test/helpers/mayfly-process';
import { generousLimitsFile, makeFixtures, scratchDir, type Fixture } from './lib/fixtures';
import { load1, machineFacts, processTree, treeCpuSeconds } from './lib/proc';

/**
 * `npm run bench:grpc`: server CPU per certificate over gRPC (CreateSigningCertificate)
 * against the HTTP fast path (POST /api/v2/signingCert), in one run, one server process
 * (the compiled service, both listeners), the same fixtures. Phases alternate
 * (HTTP, gRPC, HTTP, gRPC, ...) so drift on a shared machine hits both; server CPU is read
 * from /proc for the server's process tree around each phase. The target (issue #16): gRPC
 * within 1.2x the HTTP fast path. Writes bench/results/grpc-<date>.md and grpc-latest.md.
 * `--smoke`: a few requests per phase into a scratch folder.
 */

const repoRoot = resolve(__dirname, '..', '..');
const mainJs = join(repoRoot, 'dist/services/ca/main.js');
const smoke = process.argv.includes('--smoke');
const PER_PHASE = smoke ? 20 : 1000;
const ROUNDS = smoke ? 1 : 5;
const CONCURRENCY = 8;
const WARMUP = smoke ? 10 : 200;

interface Server {
  pid: number;
  port: number;
  grpcPort: number;
  stop(): Promise<void>;
}

async function startServer(env: Record<string, string>): Promise<Server> {
  const child = spawn(process.execPath, [mainJs], {
    env: {
      PATH: process.env.PATH ?? '',
      ...LOOPBACK_CA_ENV,
      // One process, as measured so far (the default is one per usable core).
      MAYFLY_WORKERS: '1',
      MAYFLY_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 30_000;
  let match: RegExpMatchArray | null = null;
  while (
    !(match = out.match(
      /listening on http:\/\/127\.0\.0\.1:(\d+)[\s\S]*gRPC listening on [^\s]+:(\d+)/,
    ))
  ) {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`mayfly did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    port: Number(match[1]),
    grpcPort: Number(match[2]),
    stop: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

/** Runs `count` calls of `one`, `CONCURRENCY` at a time; every answer must be a certificate. */
async function closedLoop(count: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

function httpSigner(port: number, fixtures: readonly Fixture[]) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  return (i: number) =>
    new Promise<void>((resolveCall, reject) => {
      const body = fixtures[i % fixtures.length]!.v2Body;
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/api/v2/signingCert',
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () =>
            res.statusCode === 200 && text.includes('BEGIN CERTIFICATE')
              ? resolveCall()
              : reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`)),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}

function grpcSigner(port: number, fixtures: readonly Fixture[]) {
  const client: Client = new (loadClients().CA)(`127.0.0.1:${port}`, credentials.createInsecure());
  const call = (
    client as unknown as Record<string, (...args: unknown[]) => void>
  ).CreateSigningCertificate!.bind(client);
  const sign = (i: number) =>
    new Promise<void>((resolveCall, reject) => {
      const f = fixtures[i % fixtures.length]!;
      call(
        {
          credentials: { oidcIdentityToken: f.token },
          publicKeyRequest: {
            publicKey: { algorithm: 'ECDSA', content: f.pem },
            proofOfPossession: f.proof,
          },
        },
        (
          err: ServiceError | null,
          value: { signedCertificateDetachedSct?: { chain?: { certificates?: string[] } } },
        ) =>
          !err && value.signedCertificateDetachedSct?.chain?.certificates?.length
            ? resolveCall()
            : reject(err ?? new Error('no certificate')),
      );
    });
  return { sign, close: () => client.close() };
}

async function main(): Promise<void> {
  const dir = scratchDir();
  const issuer = await startDevIssuer();
  const fixtures = await makeFixtures(issuer, smoke ? 20 : 400);
  const server = await startServer({
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
    MAYFLY_RATELIMITS: generousLimitsFile(dir),
    MAYFLY_AUDIT_LOG_FILE: join(dir, 'audit.log'),
  });
  const http = httpSigner(server.port, fixtures);
  const grpc = grpcSigner(server.grpcPort, fixtures);
  const pids = processTree(server.pid);
  const cpu = () => treeCpuSeconds(pids);
  const rows: { round: number; http: number; grpc: number }[] = [];
  try {
    await closedLoop(WARMUP, http);
    await closedLoop(WARMUP, grpc.sign);
    for (let round = 1; round <= ROUNDS; round++) {
      const measure = async (one: (i: number) => Promise<void>) => {
        const before = cpu();
        await closedLoop(PER_PHASE, one);
        return ((cpu() - before) / PER_PHASE) * 1e6;
      };
      // Alternate which goes first, so neither always follows the other.
      const first = round % 2 === 1;
      const a = await measure(first ? http : grpc.sign);
      const b = await measure(first ? grpc.sign : http);
      rows.push({ round, http: first ? a : b, grpc: first ? b : a });
    }
  } finally {
    grpc.close();
    await server.stop();
    await issuer.close();
  }
  const total = (k: 'http' | 'grpc') => rows.reduce((s, r) => s + r[k], 0) / rows.length;
  const ratios = rows.map((r) => r.grpc / r.http).sort((x, y) => x - y);
  const median = ratios[Math.floor(ratios.length / 2)]!;
  const overall = total('grpc') / total('http');
  const facts = machineFacts();
  const stamp = new Date()
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const report = [
    `# gRPC vs HTTP fast path: server CPU per certificate (${stamp})`,
    '',
    'Command: `npm run bench:grpc` (bench/grpc.ts). One compiled mayfly process serving both',
    `listeners; ${ROUNDS} rounds of ${PER_PHASE} certificates per transport, ${CONCURRENCY} in flight,`,
    'phases alternating; server CPU (user + system, whole process) from /proc around each phase.',
    'HTTP: POST /api/v2/signingCert over keep-alive HTTP/1.1 (the node:http fast path);',
    'gRPC: dev.sigstore.fulcio.v2.CA/CreateSigningCertificate over one HTTP/2 channel (grpc-js).',
    `Machine: ${JSON.stringify(facts)}; load average at the end ${load1().toFixed(2)}.`,
    "**The machine was shared with other engineers' builds and tests**: absolute figures are",
    'noisy; the ratio within one round is the figure to read.',
    '',
    '| round | HTTP µs CPU/cert | gRPC µs CPU/cert | gRPC / HTTP |',
    '| ----- | ---------------- | ---------------- | ----------- |',
    ...rows.map(
      (r) =>
        `| ${r.round} | ${r.http.toFixed(0)} | ${r.grpc.toFixed(0)} | ${(r.grpc / r.http).toFixed(3)} |`,
    ),
    '',
    `Mean over rounds: HTTP ${total('http').toFixed(0)} µs, gRPC ${total('grpc').toFixed(0)} µs; ratio of means ${overall.toFixed(3)}, median round ratio ${median.toFixed(3)}.`,
    `Target (issue #16): gRPC within 1.2x the HTTP fast path — ${median <= 1.2 ? 'met' : 'NOT met'}.`,
    '',
  ].join('\n');
  process.stdout.write(report);
  const out = smoke ? dir : join(repoRoot, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `grpc-${stamp}.md`), report);
  writeFileSync(join(out, 'grpc-latest.md'), report);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:grpc failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
