/**
 * The compiled TSA as an operator runs it (`node dist/services/tsa/main.js`): bad settings and
 * a chain outside the TSA profile stop the start with exit status 2 and a clear message; a
 * good file key serves and drains on SIGTERM (exit 0).
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../services/common/clock';
import { certificatePem } from '../../../services/common/encoding';
import { KeySigner } from '../../../services/common/signer/signer';
import { createEphemeralTsaChain } from '../../../services/tsa/certificates';
import { ensureBuilt, repoRoot } from '../../helpers/mayfly-process';
import { freePort } from '../../helpers/redis';
import { until } from '../../helpers/wait';

jest.setTimeout(60_000);

let dir: string;
beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'mayfly-tsa-process-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/services/tsa/main.js')], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', MAYFLY_TSA_LOG_LEVEL: 'silent', ...env },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exit = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  return { child, exit, output: () => output };
}

async function files() {
  const rootKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const leafKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const signer = await createEphemeralTsaChain(
    new KeySigner(rootKey),
    new KeySigner(leafKey),
    systemClock,
  );
  const chain = join(dir, 'chain.pem');
  const key = join(dir, 'key.pem');
  const rootAsTsa = join(dir, 'root-as-tsa.pem');
  const rootKeyFile = join(dir, 'root-key.pem');
  writeFileSync(chain, signer.chain.map((d) => certificatePem(d)).join(''));
  writeFileSync(key, leafKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(
    rootAsTsa,
    [signer.chain[1]!, signer.chain[1]!].map((d) => certificatePem(d)).join(''),
  );
  writeFileSync(rootKeyFile, rootKey.export({ type: 'pkcs8', format: 'pem' }));
  return { chain, key, rootAsTsa, rootKeyFile };
}

test('bad settings: exit 2, every problem named', async () => {
  const run = start({
    MAYFLY_TSA_SIGNER: 'hsm',
    MAYFLY_TSA_PORT: 'x',
    MAYFLY_TSA_POLICY_OID: 'policy',
  });
  expect(await run.exit).toBe(2);
  expect(run.output()).toMatch(/MAYFLY_TSA_SIGNER must be ephemeral or file/);
  expect(run.output()).toMatch(/MAYFLY_TSA_PORT must be an integer/);
  expect(run.output()).toMatch(/MAYFLY_TSA_POLICY_OID is not an OID/);
});

test('a CA certificate as the TSA certificate: the TSA refuses to start (exit 2)', async () => {
  const f = await files();
  const run = start({
    MAYFLY_TSA_SIGNER: 'file',
    MAYFLY_TSA_CERT: f.rootAsTsa,
    MAYFLY_TSA_KEY: f.rootKeyFile,
  });
  expect(await run.exit).toBe(2);
  expect(run.output()).toMatch(
    /the TSA signer could not be loaded: the TSA certificate must not be a CA/,
  );
});

test('a good file key: serves, then drains and exits 0 on SIGTERM', async () => {
  const f = await files();
  const [port, metrics] = [await freePort(), await freePort()];
  const run = start({
    MAYFLY_TSA_SIGNER: 'file',
    MAYFLY_TSA_CERT: f.chain,
    MAYFLY_TSA_KEY: f.key,
    MAYFLY_TSA_HOST: '127.0.0.1',
    MAYFLY_TSA_PORT: String(port),
    MAYFLY_TSA_METRICS_HOST: '127.0.0.1',
    MAYFLY_TSA_METRICS_PORT: String(metrics),
  });
  try {
    await until(() => run.output().includes('mayfly TSA listening'), 'the TSA to listen');
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/timestamp/certchain`);
    expect(await res.text()).toBe(readFileSync(f.chain, 'utf8'));
    const scrape = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    expect(scrape).toMatch(/^mayfly_tsa_certificate_not_after_seconds \d+/m);
    expect(scrape).toMatch(/^mayfly_tsa_clock_in_bound 1$/m);
  } finally {
    run.child.kill('SIGTERM');
  }
  expect(await run.exit).toBe(0);
});
