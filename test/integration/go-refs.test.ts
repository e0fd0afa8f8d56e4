/**
 * The Go reference implementations built by scripts/go-refs.sh are real and run: Debian's Go
 * toolchain, the GOPATH of Debian's Go sources, our own Go programs built against it (checked
 * differentially against an independent TypeScript computation), and the reference tools.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildGo, goPath, goTool } from '../helpers/go-refs';
import { freePort } from '../helpers/redis';
import { until } from '../helpers/wait';

// Servers started here; killed in afterAll, and on exit if a test is interrupted.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts `bin args` in `cwd`, stdout+stderr kept for error messages. */
function start(bin: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(bin, args, { cwd, env: { ...process.env, ...env } });
  children.add(child);
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  child.once('exit', () => children.delete(child));
  return { child, output: () => output };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function get(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url);
    return { status: res.status, body: await res.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

const run = (bin: string, args: string[], cwd?: string): string =>
  execFileSync(bin, args, { encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'pipe'] });

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 6962 section 2.1 Merkle Tree Hash, written from the RFC (no shared code with Go). */
function merkleTreeHash(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  const [first] = leaves;
  if (leaves.length === 1 && first) return sha256(Buffer.from([0x00]), first);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(
    Buffer.from([0x01]),
    merkleTreeHash(leaves.slice(0, k)),
    merkleTreeHash(leaves.slice(k)),
  );
}

describe('Go reference implementations (scripts/go-refs.sh)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'go-refs-test-'));
  });
  afterAll(async () => {
    await Promise.all([...children].map(stop));
    rmSync(dir, { recursive: true, force: true });
  });

  it("goTool('go') is Debian's Go toolchain and runs", () => {
    const go = goTool('go');
    const out = execFileSync(go, ['version'], { encoding: 'utf8' });
    expect(out).toMatch(/^go version go1\.\d+/);
    // A second call is answered from the cache with the same path.
    expect(goTool('go')).toBe(go);
  });

  it('the GOPATH holds the Go sources of the reference implementations', () => {
    const src = join(goPath(), 'src');
    for (const pkg of [
      'github.com/sigstore/fulcio/pkg/api',
      'github.com/sigstore/sigstore/pkg/cryptoutils',
      'github.com/sigstore/sigstore-go/pkg/verify',
      'github.com/google/certificate-transparency-go/x509',
      'golang.org/x/mod/sumdb/tlog',
      'golang.org/x/mod/sumdb/note',
      'google.golang.org/grpc',
    ]) {
      expect([pkg, existsSync(join(src, pkg))]).toEqual([pkg, true]);
    }
  });

  it('golang.org/x/mod/sumdb/tlog computes the same Merkle roots as RFC 6962 in TypeScript', () => {
    const bin = buildGo('test/go/hello-tlog');
    // 19 leaves of varied length (one empty) cover balanced and unbalanced tree shapes.
    const leaves = Array.from({ length: 19 }, (_, i) => randomBytes(i === 3 ? 0 : 1 + i * 7));
    const out = execFileSync(
      bin,
      leaves.map((l) => l.toString('hex')),
      { encoding: 'utf8' },
    );
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(leaves.length);
    lines.forEach((line, i) => {
      const expected = merkleTreeHash(leaves.slice(0, i + 1)).toString('hex');
      expect(line).toBe(`${i + 1} ${expected}`);
    });
    // A published vector (Certificate Transparency's Merkle test data): MTH of the one-byte leaf 0x00.
    const one = execFileSync(bin, ['00'], { encoding: 'utf8' }).trim();
    expect(one).toBe('1 96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7');
  });

  it("sigstore's cryptoutils.ValidatePubKey accepts ECDSA and RSA keys, as upstream does", () => {
    // Debian trixie's package accepts Ed25519 only; go-refs.sh restores ECDSA and RSA.
    const out = run(buildGo('test/go/validate-pubkey'), []);
    expect(out.trim().split('\n')).toEqual([
      'ecdsa-p256 ok',
      'ecdsa-p384 ok',
      'ecdsa-p224 rejected',
      'rsa-2048 ok',
      'rsa-1024 rejected',
      'ed25519 ok',
    ]);
  });

  it('the reference command-line tools run', () => {
    expect(run(goTool('ctclient'), ['--help'])).toContain('Certificate Transparency');
    expect(run(goTool('timestamp-cli'), ['--help'])).toContain('Timestamp command line interface');
    // The version Debian packaged, stamped in at build time.
    expect(run(goTool('fulcio'), ['version'])).toMatch(/GitVersion:\s+v\d+\.\d+\.\d+/);
    expect(run(goTool('fulcio'), ['serve', '--help'])).toContain('--grpc-port');
  });

  it('the built Fulcio serves its trust bundle on loopback', async () => {
    const [http, grpc, metrics] = [await freePort(), await freePort(), await freePort()];
    // An issuer nobody listens on: Fulcio only contacts issuers when a token arrives.
    const issuer = `http://127.0.0.1:${await freePort()}`;
    const config = join(dir, 'fulcio-config.json');
    writeFileSync(
      config,
      JSON.stringify({
        OIDCIssuers: { [issuer]: { IssuerURL: issuer, ClientID: 'sigstore', Type: 'email' } },
      }),
    );
    const fulcio = start(
      goTool('fulcio'),
      [
        'serve',
        '--ca=ephemeralca',
        `--config-path=${config}`,
        '--ct-log-url=', // no CT log: certificates without SCTs
        '--host=127.0.0.1',
        `--port=${http}`,
        '--grpc-host=127.0.0.1',
        `--grpc-port=${grpc}`,
        `--metrics-port=${metrics}`, // bound to --host (a build-time change, see go-refs.sh)
        `--legacy-unix-domain-socket=${join(dir, 'fulcio-legacy.sock')}`,
      ],
      dir,
    );
    let res = { status: 0, body: '' };
    await until(async () => {
      if (fulcio.child.exitCode !== null) throw new Error(`fulcio exited:\n${fulcio.output()}`);
      res = await get(`http://127.0.0.1:${http}/api/v2/trustBundle`);
      return res.status !== 0;
    }, 'fulcio to answer');
    expect(res.status).toBe(200);
    const bundle = JSON.parse(res.body) as { chains: { certificates: string[] }[] };
    const [root] = bundle.chains[0]?.certificates ?? [];
    expect(root).toBeDefined();
    const cert = new X509Certificate(root ?? '');
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true); // the ephemeral CA's self-signed root
    const prom = await get(`http://127.0.0.1:${metrics}/metrics`);
    expect(prom.status).toBe(200);
    await stop(fulcio.child);
  });

  it('timestamp-cli gets a timestamp from the built timestamp-server that openssl verifies', async () => {
    const [port, metrics] = [await freePort(), await freePort()];
    const tsa = start(
      goTool('timestamp-server'),
      [
        'serve',
        '--host=127.0.0.1',
        `--port=${port}`,
        '--timestamp-signer=memory',
        '--disable-ntp-monitoring', // it would query public NTP servers
      ],
      dir,
      { MAYFLY_TSA_METRICS_ADDR: `127.0.0.1:${metrics}` }, // a build-time change, see go-refs.sh
    );
    const url = `http://127.0.0.1:${port}`;
    let chain = { status: 0, body: '' };
    await until(async () => {
      if (tsa.child.exitCode !== null) throw new Error(`timestamp-server exited:\n${tsa.output()}`);
      chain = await get(`${url}/api/v1/timestamp/certchain`);
      return chain.status !== 0;
    }, 'timestamp-server to answer');
    expect(chain.status).toBe(200);
    const pems =
      chain.body.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? [];
    expect(pems.length).toBeGreaterThanOrEqual(2);
    writeFileSync(join(dir, 'chain.pem'), pems.join(''));
    writeFileSync(join(dir, 'root.pem'), pems[pems.length - 1] ?? '');
    writeFileSync(join(dir, 'untrusted.pem'), pems.slice(0, -1).join(''));
    writeFileSync(join(dir, 'artifact.txt'), randomBytes(64).toString('hex'));

    run(
      goTool('timestamp-cli'),
      [
        `--timestamp_server=${url}`,
        'timestamp',
        '--artifact=artifact.txt',
        '--hash=sha256',
        '--out=response.tsr',
      ],
      dir,
    );
    expect(readFileSync(join(dir, 'response.tsr')).length).toBeGreaterThan(0);
    // An independent verifier: openssl checks the token's signature, chain and message imprint.
    const verify = (data: string): string =>
      run(
        'openssl',
        [
          'ts',
          '-verify',
          '-data',
          data,
          '-in',
          'response.tsr',
          '-CAfile',
          'root.pem',
          '-untrusted',
          'untrusted.pem',
        ],
        dir,
      );
    const verified = verify('artifact.txt');
    expect(verified).toContain('Verification: OK');
    // ... and a different artifact does not verify.
    writeFileSync(join(dir, 'other.txt'), 'not the timestamped data');
    expect(() => verify('other.txt')).toThrow();
    await stop(tsa.child);
  });
});
