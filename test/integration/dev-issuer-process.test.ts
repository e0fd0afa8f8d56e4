import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ensureBuilt, repoRoot, startMayflyProcess, waitFor } from '../helpers/mayfly-process';

/**
 * The development issuer is its own process (`npm run dev-issuer`), never part of the CA:
 * it writes an identity config naming itself, the CA is started on that config, and a token
 * from its /token endpoint gets a certificate. The CA's own build holds no way to mint.
 */

const devIssuerJs = join(repoRoot, 'dist/services/dev-issuer/main.js');

beforeAll(() => {
  ensureBuilt();
  if (!existsSync(devIssuerJs)) throw new Error(`${devIssuerJs} was not built`);
}, 120_000);

test('npm run dev-issuer serves tokens a CA started on its identity config accepts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-dev-issuer-'));
  const identity = join(dir, 'identity.json');
  let out = '';
  let err = '';
  const child = spawn(
    process.execPath,
    [devIssuerJs, '--host', '127.0.0.1', '--port', '0', '--identity-config', identity],
    { cwd: repoRoot, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  let ca: Awaited<ReturnType<typeof startMayflyProcess>> | undefined;
  try {
    const url = (
      await waitFor(() => /issuer on (http:\/\/127\.0\.0\.1:\d+)/.exec(out), `its URL (${err})`)
    )[1]!;
    expect(out).toContain('ANYBODY WHO CAN REACH IT CAN MINT IDENTITIES');
    const written = JSON.parse(readFileSync(identity, 'utf8')) as Record<string, unknown>;
    expect(written).toEqual({
      'oidc-issuers': { [url]: { 'issuer-url': url, 'client-id': 'sigstore', type: 'email' } },
    });

    ca = await startMayflyProcess({ MAYFLY_IDENTITY_CONFIG: identity, MAYFLY_RATELIMITS: 'off' });
    const email = 'dev@example.com';
    const tokenResponse = await fetch(`${url}/token?email=${encodeURIComponent(email)}`);
    expect(tokenResponse.status).toBe(200);
    const token = await tokenResponse.text();
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const res = await fetch(`${ca.url}/api/v2/signingCert`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        credentials: { oidcIdentityToken: token },
        publicKeyRequest: {
          publicKey: { content: publicKey.export({ type: 'spki', format: 'pem' }) },
          proofOfPossession: sign('sha256', Buffer.from(email), privateKey).toString('base64'),
        },
      }),
    });
    const body = (await res.json()) as {
      signedCertificateDetachedSct: { chain: { certificates: string[] } };
    };
    expect(res.status).toBe(200);
    const leaf = new X509Certificate(body.signedCertificateDetachedSct.chain.certificates[0]!);
    expect(leaf.subjectAltName).toBe(`email:${email}`);
  } finally {
    ca?.child.kill('SIGKILL');
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
}, 60_000);

test('no module the CA process loads is the development issuer', () => {
  // Every compiled module reachable from the CA's entry point, by its relative requires.
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g))
      visit(join(dirname(file), m[1]!.endsWith('.js') ? m[1]! : `${m[1]!}.js`));
  };
  visit(join(repoRoot, 'dist/services/ca/main.js'));
  expect(seen.size).toBeGreaterThan(50);
  expect([...seen].filter((f) => f.includes('dev-issuer'))).toEqual([]);
  expect([...seen].some((f) => f.endsWith('issuance/certificate-authority.js'))).toBe(true);
});
