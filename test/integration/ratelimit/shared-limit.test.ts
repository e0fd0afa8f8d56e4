import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { startDevIssuer, type DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import { makeKey, proofFor } from '../../helpers/keys';
import { v2Body } from '../../helpers/mayfly';
import { LOOPBACK_CA_ENV } from '../../helpers/mayfly-process';
import { PATIENT_REDIS, ROOMY, writeLimits } from '../../helpers/ratelimit';
import { startRedis, stopAllRedis, type RedisProcess } from '../../helpers/redis';

/**
 * Two mayfly processes (the compiled service, as deployed) share one Redis. Concurrent
 * requests for one identity, split between them, must together get the identity's burst:
 * the limit is shared across replicas, not per replica, to within one request.
 */

const root = resolve(__dirname, '../../..');
const main = join(root, 'dist/services/ca/main.js');
const BURST = 20;

/** The newest modification time under a folder, for "is dist/ older than the sources?". */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

interface Replica {
  readonly child: ChildProcess;
  readonly url: Promise<string>;
  readonly output: () => string;
}

function startReplica(env: Record<string, string>): Replica {
  let out = '';
  const child = spawn(process.execPath, [main], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      ...LOOPBACK_CA_ENV,
      MAYFLY_LOG_LEVEL: 'info',
      // One process unless the test asks for a cluster (the default is one per core).
      MAYFLY_WORKERS: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1];
      // Ready to measure once it listens and its Redis client is connected.
      if (port && out.includes('"msg":"redis connected"')) {
        clearTimeout(timer);
        resolveUrl(`http://127.0.0.1:${port}`);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`replica exited (${code}):\n${out}`)));
  });
  url.catch(() => undefined);
  return { child, url, output: () => out };
}

let redis: RedisProcess;
let issuer: DevIssuer;
const replicas: Replica[] = [];

beforeAll(async () => {
  // CI builds before the tests; locally, rebuild a stale dist/. tsc still writes JavaScript
  // when somebody's work in progress has type errors, so only a missing build is fatal.
  if (!existsSync(main) || statSync(main).mtimeMs < newest(join(root, 'services')))
    spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  if (!existsSync(main)) throw new Error(`no build at ${main}`);
  redis = await startRedis();
  issuer = await startDevIssuer();
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-shared-'));
  const identityConfig = join(dir, 'identity.yaml');
  writeFileSync(
    identityConfig,
    YAML.stringify({
      'oidc-issuers': {
        [issuer.url]: { 'issuer-url': issuer.url, 'client-id': 'sigstore', type: 'email' },
      },
    }),
  );
  const env = {
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_REDIS_URL: redis.url,
    ...PATIENT_REDIS,
    MAYFLY_RATELIMITS: writeLimits({
      defaults: {
        'per-client-ip': ROOMY,
        'per-identity': { burst: BURST, count: 1, period: '1h' },
        'per-issuer': ROOMY,
      },
    }),
  };
  replicas.push(startReplica(env), startReplica(env));
  await Promise.all(replicas.map((r) => r.url));
}, 180_000);

afterAll(async () => {
  for (const r of replicas) r.child.kill('SIGKILL');
  await issuer?.close();
  await stopAllRedis();
});

test('two replicas sharing Redis hold one identity to its burst, within one request', async () => {
  const [a, b] = (await Promise.all(replicas.map((r) => r.url))) as [string, string];
  const email = 'shared@example.com';
  const token = await issuer.mintEmail(email);
  const key = makeKey('p256');
  const body = JSON.stringify(v2Body(token, key.pem, proofFor(key, email)));
  // Warm both replicas first (OIDC discovery and JWKS), so neither is still fetching keys
  // while the other spends the whole burst.
  for (const url of [a, b]) {
    const warm = await issuer.mintEmail('warm-up@example.com');
    const res = await fetch(`${url}/api/v2/signingCert`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(v2Body(warm, key.pem, proofFor(key, 'warm-up@example.com'))),
    });
    expect(res.status).toBe(200);
  }
  // Each replica gets 1.5 bursts: on its own it would issue a whole burst, together they
  // must issue one.
  const requests = 3 * BURST;
  const statuses = await Promise.all(
    Array.from({ length: requests }, (_, i) =>
      fetch(`${i % 2 === 0 ? a : b}/api/v2/signingCert`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }).then((res) => res.status),
    ),
  );
  const ok = statuses.filter((s) => s === 200).length;
  expect(Math.abs(ok - BURST)).toBeLessThanOrEqual(1);
  expect(statuses.filter((s) => s !== 200).every((s) => s === 429)).toBe(true);
  // Every certificate is accounted for in the replicas' logs (they arrive through pipes, a
  // moment after the responses).
  const issuedBy = () =>
    replicas.map((r) => (r.output().match(/signing certificate issued/g) ?? []).length);
  const deadline = Date.now() + 10_000;
  while (issuedBy().reduce((x, y) => x + y) < ok + 2 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  expect(issuedBy().reduce((x, y) => x + y)).toBe(ok + 2);
}, 60_000);
