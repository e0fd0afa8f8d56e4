import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';

/**
 * The compiled service as an operator runs it: `node dist/services/ca/main.js`. These
 * tests check start-up on embedded defaults, fail-fast configuration errors and the
 * SIGTERM drain.
 */

const root = resolve(__dirname, '../..');
const main = join(root, 'dist/services/ca/main.js');

beforeAll(() => {
  if (!existsSync(main))
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}, 120_000);

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(env: Record<string, string>, args: string[] = []): Run {
  let out = '';
  let err = '';
  const child = spawn(process.execPath, [main, ...args], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_LOG_LEVEL: 'warn',
      // One process unless the test asks for a cluster (the default is one per core).
      MAYFLY_WORKERS: '1',
      // Never Fulcio's 8081: tests run side by side.
      MAYFLY_GRPC_HOST: '127.0.0.1',
      MAYFLY_GRPC_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitFor(
  check: () => RegExpMatchArray | null,
  what: string,
  ms = 15_000,
): Promise<RegExpMatchArray> {
  const until = Date.now() + ms;
  for (;;) {
    const match = check();
    if (match) return match;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('starts on embedded defaults with MAYFLY_PORT=0, prints the port, serves, and drains on SIGTERM', async () => {
  const proc = run({
    MAYFLY_PORT: '0',
    MAYFLY_METRICS_PORT: '0',
    MAYFLY_HOST: '127.0.0.1',
    MAYFLY_METRICS_HOST: '127.0.0.1',
  });
  try {
    const [, port, metricsPort] = await waitFor(
      () =>
        proc.stdout().match(/listening on http:\/\/127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)/),
      'the listening line',
    );
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await health.json()).toEqual({ status: 'SERVING' });
    const bundle = (await (await fetch(`http://127.0.0.1:${port}/api/v2/trustBundle`)).json()) as {
      chains: unknown[];
    };
    expect(bundle.chains).toHaveLength(1);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toContain('mayfly_build_info');
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 30_000);

test('refuses to start with one clear line per bad setting', async () => {
  const proc = run({ MAYFLY_PORT: 'eighty', MAYFLY_LOG_LEVEL: 'loud', MAYFLY_CA: 'hsm' });
  expect(await proc.exited).toBe(2);
  const err = proc.stderr();
  expect(err).toContain('MAYFLY_PORT: expected a whole number');
  expect(err).toMatch(/logLevel \(MAYFLY_LOG_LEVEL\)/);
  expect(err).toMatch(/ca\.type \(MAYFLY_CA\)/);
});

test('refuses to start when the file CA key does not match its certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-proc-'));
  const key = join(dir, 'key.pem');
  const other = join(dir, 'other.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'ecparam',
    '-name',
    'prime256v1',
    '-genkey',
    '-noout',
    '-out',
    join(dir, 'k.pem'),
  ]);
  execFileSync('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', join(dir, 'k.pem'), '-out', key]);
  execFileSync('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    '/O=test/CN=test root',
    '-days',
    '30',
    '-out',
    cert,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(other, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const proc = run({
    MAYFLY_CA: 'file',
    MAYFLY_CA_CERT: cert,
    MAYFLY_CA_KEY: other,
    MAYFLY_PORT: '0',
  });
  expect(await proc.exited).toBe(2);
  expect(proc.stderr()).toContain('the CA could not be loaded: public keys are not equal');
  expect(proc.stderr()).not.toContain('PRIVATE KEY');
});
