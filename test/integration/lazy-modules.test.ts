import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  signingBody,
  startMayflyProcess,
  trustBundle,
  waitFor,
  type MayflyProcess,
} from '../helpers/mayfly-process';

/**
 * What the compiled service loads (issue #18, memory): the packages a deployment does not use
 * stay unloaded. A preload (NODE_OPTIONS=--require) writes the packages in the process's
 * module cache to a file on SIGUSR2; the service runs with gRPC off, the ephemeral CA, no
 * Redis. Issuing certificates, the probes on both ports and a scrape must not load Express,
 * gRPC, PKCS#11 or Redis; the first request to an Express route loads Express and works.
 */

let issuer: DevIssuer;
let dir: string;

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer({ host: '127.0.0.1' });
  dir = mkdtempSync(join(tmpdir(), 'mayfly-lazy-'));
  writeFileSync(
    join(dir, 'preload.js'),
    `process.on('SIGUSR2', () => {
  const names = new Set();
  for (const id of Object.keys(require.cache)) {
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(id);
    if (m) names.add(m[1]);
  }
  const fs = require('node:fs');
  fs.writeFileSync(process.env.LAZY_MODULES_OUT + '.tmp', JSON.stringify([...names]));
  fs.renameSync(process.env.LAZY_MODULES_OUT + '.tmp', process.env.LAZY_MODULES_OUT);
});
`,
  );
}, 120_000);

afterAll(async () => {
  await issuer?.close();
});

/** The packages in the process's module cache, as the preload writes them on SIGUSR2. */
async function loadedPackages(proc: MayflyProcess): Promise<string[]> {
  const path = join(dir, 'modules.json');
  rmSync(path, { force: true });
  proc.child.kill('SIGUSR2');
  return waitFor(
    () => (existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as string[]) : undefined),
    'the module list',
  );
}

test('signing, probes and scrapes load no Express, gRPC, PKCS#11 or Redis; an Express route loads Express', async () => {
  let proc: MayflyProcess | undefined;
  try {
    proc = await startMayflyProcess({
      MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer, dir),
      MAYFLY_RATELIMITS: 'off',
      MAYFLY_GRPC_PORT: 'off',
      NODE_OPTIONS: `--require ${join(dir, 'preload.js')}`,
      LAZY_MODULES_OUT: join(dir, 'modules.json'),
    });
    const p = proc;
    for (let i = 0; i < 3; i++) {
      const outcome = await postSigningRequest(
        p.url,
        await signingBody(issuer, `lazy-${i}@example.com`),
      );
      expect(outcome.status).toBe(200);
    }
    for (const url of [p.url, `http://127.0.0.1:${p.metricsPort}`]) {
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    }
    expect((await fetch(`http://127.0.0.1:${p.metricsPort}/nothing-here`)).status).toBe(404);
    const scrape = await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`);
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain('mayfly_certificates_issued_total');
    const before = await loadedPackages(p);
    // Loaded and in use: the proof that the list is real.
    expect(before).toEqual(expect.arrayContaining(['jose', 'pkijs', 'pino', 'prom-client']));
    for (const unused of ['express', '@grpc/grpc-js', '@grpc/reflection', 'pkcs11js', 'ioredis'])
      expect({ unused, loaded: before.includes(unused) }).toEqual({ unused, loaded: false });

    // The first request that needs Express loads it, and gets its answer.
    const [chain] = await trustBundle(p.url);
    expect(chain!.length).toBeGreaterThan(0);
    expect(await loadedPackages(p)).toContain('express');
  } finally {
    proc?.child.kill('SIGKILL');
  }
}, 120_000);
