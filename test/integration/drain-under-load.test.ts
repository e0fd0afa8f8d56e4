import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Pool, errors as undiciErrors } from 'undici';
import { ensureNginx } from '../../bench/lib/soak/nginx';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  ensureBuilt,
  identityConfigFor,
  startMayflyProcess,
  waitFor,
  type MayflyProcess,
} from '../helpers/mayfly-process';
import { buildGo } from '../helpers/go-refs';
import { until } from '../helpers/wait';

/**
 * Issue 15: a rollout cuts no request. Clients we did not write keep POSTing signing
 * requests on keep-alive connections while the compiled service drains: undici (Node's HTTP
 * client) with a pool of kept-alive connections, Go's net/http (test/go/drain-client, the
 * client cosign and sigstore-go use) and nginx with upstream keepalive in front. Every
 * request is counted: answered, refused at connect (the listener has closed, or the
 * connection was reset before it was made: nothing was sent; fine), or cut —
 * the connection closed under a request with no answer, which none of these clients retries
 * for a POST. Cut must be zero, and the server must have issued exactly the certificates the
 * clients received.
 *
 * The signal comes as on Kubernetes: after the preStop pause, so with no shutdown delay of
 * the process's own, while the clients still hold connections to it. Each client does its
 * own work between two requests (hash the artifact, make a key); the one that sends the
 * signal does so right after an answer, so that its connection is idle, from the server's
 * side, when the drain starts. Against the old drain (Node's server.close(), which closes
 * idle connections at once and then every 100 ms) both tests failed in each of seven runs of
 * this file: Go's client had 1 to 4 requests cut in every one of the fourteen drains, undici
 * 1 to 5 in eight of them.
 *
 * Also checked: once the server has started draining, every answer carries
 * `Connection: close` (a client receives at most one kept-alive answer after that instant:
 * the one that was being written), and the drain ends by itself within the grace period
 * (nothing was closed by force).
 *
 * Not tested here: a shutdown delay with clients that reconnect to the same address. The
 * answers' `Connection: close` then makes every request open a new connection, and the one
 * that completes its handshake in the kernel's accept queue as the listener closes is reset
 * by the kernel, before the process ever sees it; on Kubernetes those connections go to
 * other pods by then (README, "Graceful shutdown").
 */

const CLIENTS_PER_KIND = 6;

let issuer: DevIssuer;
let identityConfig: string;
/** One identity per client loop (a token is valid for minutes: reused by its loop). */
let credentials: { email: string; token: string }[];
let goClient: string;
let nginx: string;

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
  credentials = await Promise.all(
    Array.from({ length: 3 * CLIENTS_PER_KIND }, async (_, i) => {
      const email = `drain-load-${i}@example.com`;
      return { email, token: await issuer.mintEmail(email) };
    }),
  );
  // scripts/go-refs.sh builds it with Debian's Go (standard library only).
  goClient = buildGo('test/go/drain-client');
  nginx = ensureNginx((line) => process.stderr.write(`${line}\n`));
}, 600_000);

afterAll(async () => {
  await issuer?.close();
});

interface Tally {
  answered: number;
  notOk: number;
  refused: number;
  cuts: string[];
  /** Per client loop: when (ms) each answer without Connection: close arrived. */
  keptAlive: number[][];
}

const newTally = (): Tally => ({ answered: 0, notOk: 0, refused: 0, cuts: [], keptAlive: [] });

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Client loops on one undici Pool (keep-alive, one request at a time per connection). A
 * loop ends when its connection is refused (the listener is gone) or `stop()` says so.
 */
/**
 * What a signing client does between two requests: it hashes the artifact it is about to
 * sign (4 MiB here), makes a fresh key pair and its proof of possession. Meanwhile its
 * kept-alive connection sits idle, and a Node client does not see that connection being
 * closed until this work is done.
 */
const ARTIFACT = randomBytes(4 << 20);

function freshBody({ email, token }: { email: string; token: string }): string {
  createHash('sha256').update(ARTIFACT).digest();
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return JSON.stringify({
    credentials: { oidcIdentityToken: token },
    publicKeyRequest: {
      publicKey: {
        algorithm: 'ECDSA',
        content: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      },
      proofOfPossession: sign('sha256', Buffer.from(email), privateKey).toString('base64'),
    },
  });
}

/** Something one client loop does, once, right after an answer (then it goes on). */
interface Trigger {
  set(action: () => void): void;
  /** Runs the action if one is set and has not run; whether it ran. */
  fire(): boolean;
}

function trigger(): Trigger {
  let action: (() => void) | undefined;
  return {
    set: (a) => (action = a),
    fire: () => {
      if (!action) return false;
      const run = action;
      action = undefined;
      run();
      return true;
    },
  };
}

function undiciLoad(
  origin: string,
  prefix: string,
  identities: readonly { email: string; token: string }[],
  stopped: () => boolean,
  signalFrom?: Trigger,
): { tally: Tally; done: Promise<void>; close(): Promise<void> } {
  const loops = identities.length;
  const pool = new Pool(origin, { connections: loops, pipelining: 1 });
  const tally = newTally();
  const done = Promise.all(
    Array.from({ length: loops }, async (_, loop) => {
      const kept: number[] = [];
      tally.keptAlive.push(kept);
      for (let n = 0; !stopped(); n++) {
        const id = `${prefix}-${loop}-${n}`;
        try {
          const res = await pool.request({
            method: 'POST',
            path: '/api/v2/signingCert',
            headers: { 'content-type': 'application/json', 'x-request-id': id },
            body: freshBody(identities[loop]!),
          });
          await res.body.text();
          tally.answered++;
          if (res.statusCode !== 200) tally.notOk++;
          if (res.headers.connection !== 'close') kept.push(Date.now());
          if (res.statusCode === 502 && prefix === 'nginx') return;
          if (signalFrom?.fire()) {
            // Twenty artifacts this time: more than the server needs to act on the signal.
            for (let i = 0; i < 20; i++) createHash('sha256').update(ARTIFACT).digest();
          }
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // Refused, or reset while connecting: nothing of the request was sent.
          if (code === 'ECONNREFUSED' || (err as NodeJS.ErrnoException).syscall === 'connect') {
            tally.refused++;
            return;
          }
          tally.cuts.push(
            `${id}: ${err instanceof undiciErrors.UndiciError ? err.name : ''} ${code ?? ''} ${(err as Error).message}`,
          );
        }
      }
    }),
  ).then(() => undefined);
  return { tally, done, close: () => pool.close() };
}

interface GoSummary {
  answered: number;
  byStatus: Record<string, number>;
  lastKeptAlive: Record<string, number[]>;
  refused: number;
  cuts: { id: string; reused: boolean; error: string }[];
  reused: number;
}

function goLoad(
  url: string,
  dir: string,
  identities: readonly { email: string; token: string }[],
): { started: Promise<void>; done: Promise<GoSummary> } {
  const identitiesFile = join(dir, 'identities.json');
  writeFileSync(identitiesFile, JSON.stringify(identities));
  const child = spawn(
    goClient,
    ['-url', `${url}/api/v2/signingCert`, '-identities', identitiesFile, '-limit', '50s'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  let onStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('answered\n')) onStarted();
  });
  const done = new Promise<GoSummary>((resolve, reject) =>
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !last.startsWith('{')) reject(new Error(`drain-client: ${code} ${out}`));
      else resolve(JSON.parse(last) as GoSummary);
    }),
  );
  return { started, done };
}

/** nginx in front, keeping up to 16 idle connections to mayfly, retrying no POST. */
async function startNginx(dir: string, upstreamPort: number) {
  const port = await freePort();
  for (const name of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(dir, 'tmp', name), { recursive: true });
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : '';
  const errorLog = join(dir, 'error.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${user}worker_processes 1;
daemon off;
master_process on;
pid ${join(dir, 'nginx.pid')};
error_log ${errorLog} info;
events { worker_connections 1024; }
http {
  client_body_temp_path ${join(dir, 'tmp/body')};
  proxy_temp_path ${join(dir, 'tmp/proxy')};
  fastcgi_temp_path ${join(dir, 'tmp/fastcgi')};
  uwsgi_temp_path ${join(dir, 'tmp/uwsgi')};
  scgi_temp_path ${join(dir, 'tmp/scgi')};
  access_log off;
  upstream mayfly {
    # max_fails=0: every request goes to mayfly, none is refused by nginx on its own.
    server 127.0.0.1:${upstreamPort} max_fails=0;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://mayfly;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # The default: a POST that was sent is not sent again (no non_idempotent).
      proxy_next_upstream error timeout;
    }
  }
}
`,
  );
  const args = ['-p', dir, '-c', conf, '-e', errorLog];
  const test = spawnSync(nginx, ['-t', ...args], { encoding: 'utf8' });
  if (test.status !== 0) throw new Error(`nginx -t failed:\n${test.stderr}`);
  const child = spawn(nginx, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await until(() => accepts(port), 'nginx to listen');
  return {
    url: `http://127.0.0.1:${port}`,
    /** Why nginx answered 502: its error log's reasons, with counts. */
    upstreamErrors(): Map<string, number> {
      const counts = new Map<string, number>();
      for (const line of readFileSync(errorLog, 'utf8').split('\n')) {
        const match = /\[error\] \d+#\d+: \*\d+ (.+?) while .*upstream/.exec(line);
        if (match) counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + 1);
      }
      return counts;
    },
    async stop() {
      child.kill('SIGQUIT');
      await exited;
    },
  };
}

/** How many of `times` are later than `since`, per client loop: at most one each. */
const keptAliveAfter = (keptAlive: readonly (readonly number[])[], since: number) =>
  keptAlive.map((times) => times.filter((t) => t > since).length);

async function drainUnderLoad(env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-drain-'));
  const proc: MayflyProcess = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_LOG_LEVEL: 'info',
    MAYFLY_SHUTDOWN_DELAY_MS: '0',
    MAYFLY_SHUTDOWN_GRACE_MS: '20000',
    ...env,
  });
  const front = await startNginx(dir, proc.port);
  try {
    let serverGone = false;
    const [forUndici, forNginx, forGo] = [0, 1, 2].map((k) =>
      credentials.slice(k * CLIENTS_PER_KIND, (k + 1) * CLIENTS_PER_KIND),
    );
    const signalFrom = trigger();
    const direct = undiciLoad(proc.url, 'undici', forUndici!, () => serverGone, signalFrom);
    const viaNginx = undiciLoad(front.url, 'nginx', forNginx!, () => serverGone);
    const go = goLoad(proc.url, dir, forGo!);
    await go.started;
    await waitFor(
      () => direct.tally.answered >= 20 && viaNginx.tally.answered >= 20,
      'the load to run',
      30_000,
    );

    // The signal is sent by a client loop that has just read its answer: its connection is
    // idle (from the server's side) while it prepares its next request, which takes longer
    // than the server needs to act on the signal.
    signalFrom.set(() => proc.child.kill('SIGTERM'));
    const code = await proc.exited;
    serverGone = true;
    const goSummary = await go.done;
    await Promise.all([direct.done, viaNginx.done]);
    await Promise.all([direct.close(), viaNginx.close()]);

    const logs = proc.logs();
    // In a cluster each worker drains: the last one to start is when all answers close.
    const drainStart = Math.max(
      ...logs
        .filter((l) => l.msg === 'draining: not ready')
        .map((l) => (typeof l.time === 'number' ? l.time : Date.parse(String(l.time)))),
    );
    const issued = logs.filter((l) => l.msg === 'signing certificate issued').length;
    const nginxErrors = front.upstreamErrors();
    // "connect() failed (111: Connection refused)" and the like: nothing was sent.
    const nginxRefused = [...nginxErrors]
      .filter(([reason]) => reason.startsWith('connect() failed'))
      .reduce((n, [, c]) => n + c, 0);
    const nginxCut = [...nginxErrors].filter(([reason]) => !reason.startsWith('connect() failed'));
    return {
      code,
      // One line per serving process (the cluster primary's own says whether all were clean).
      stopped: logs.filter((l) => l.msg === 'stopped' && 'forced' in l),
      drainStart,
      issued,
      undici: direct.tally,
      nginx: { ...viaNginx.tally, refused: nginxRefused, upstreamCut: nginxCut },
      go: goSummary,
    };
  } finally {
    proc.child.kill('SIGKILL');
    await front.stop();
  }
}

function expectNoCut(result: Awaited<ReturnType<typeof drainUnderLoad>>) {
  const { undici, nginx: viaNginx, go } = result;
  // Nothing cut, whichever client.
  expect({
    undici: undici.cuts,
    go: go.cuts,
    nginxUpstream: viaNginx.upstreamCut,
    nginxClient: viaNginx.cuts,
  }).toEqual({ undici: [], go: [], nginxUpstream: [], nginxClient: [] });
  // Every answer from mayfly was a certificate; nginx's only 502s are refused connects.
  expect(undici.notOk).toBe(0);
  expect(Object.keys(go.byStatus)).toEqual(['200']);
  expect(viaNginx.notOk).toBe(viaNginx.refused);
  // The load was real: keep-alive connections were reused, and the listener did close.
  expect(go.reused).toBeGreaterThan(0);
  expect(undici.refused + go.refused + viaNginx.refused).toBeGreaterThan(0);
  // Nothing the server issued was lost on the way out.
  const received = undici.answered + go.byStatus['200']! + viaNginx.answered - viaNginx.notOk;
  expect(result.issued).toBe(received);
  // From the drain's start on, answers carry Connection: close.
  const since = result.drainStart;
  expect(Number.isFinite(since)).toBe(true);
  for (const kept of [
    keptAliveAfter(undici.keptAlive, since),
    keptAliveAfter(Object.values(go.lastKeptAlive), since),
  ])
    for (const n of kept) expect(n).toBeLessThanOrEqual(1);
  // It ended by itself, within the grace period, and exited 0.
  expect(result.stopped.length).toBeGreaterThan(0);
  for (const line of result.stopped) expect(line).toMatchObject({ forced: false });
  expect(result.code).toBe(0);
}

test('SIGTERM under keep-alive load from undici, Go net/http and nginx cuts no request', async () => {
  const result = await drainUnderLoad({});
  process.stderr.write(`drain (one process): ${JSON.stringify(summaryOf(result))}\n`);
  expectNoCut(result);
}, 90_000);

test('a cluster (MAYFLY_WORKERS=2) drains its workers the same way', async () => {
  const result = await drainUnderLoad({ MAYFLY_WORKERS: '2' });
  process.stderr.write(`drain (two workers): ${JSON.stringify(summaryOf(result))}\n`);
  expectNoCut(result);
}, 90_000);

function summaryOf(result: Awaited<ReturnType<typeof drainUnderLoad>>) {
  return {
    issued: result.issued,
    undici: {
      answered: result.undici.answered,
      refused: result.undici.refused,
      cut: result.undici.cuts.length,
    },
    go: {
      answered: result.go.answered,
      refused: result.go.refused,
      cut: result.go.cuts.length,
      reused: result.go.reused,
    },
    nginx: {
      answered: result.nginx.answered - result.nginx.notOk,
      refused: result.nginx.refused,
      cut: result.nginx.upstreamCut.reduce((n, [, c]) => n + c, 0) + result.nginx.cuts.length,
    },
  };
}
