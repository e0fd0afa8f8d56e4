import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, repoRoot } from '../../helpers/mayfly-process';
import { SoftHsm } from '../../helpers/softhsm';

/**
 * `mayfly ca create | rotate | promote` as operators run them (the compiled bin), with the
 * keys in a SoftHSM2 token or in files: the certificates are checked by openssl (profile,
 * chain), the keys by pkcs11-tool (OpenSC: generated in the token, sensitive, not
 * extractable), and a second run changes nothing.
 */

const PIN = '1357';
let hsm: SoftHsm;

beforeAll(() => {
  ensureBuilt();
  hsm = new SoftHsm();
}, 120_000);

afterAll(() => hsm?.close());

function mayfly(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'dist/services/cli/main.js'), ...args], {
    env: { PATH: process.env.PATH ?? '', ...hsm.env },
    encoding: 'utf8',
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function token(): { label: string; args: string[] } {
  const label = `ceremony-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  hsm.initToken(label, PIN);
  const pinFile = join(mkdtempSync(join(hsm.dir, 'pin-')), 'pin');
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 });
  return {
    label,
    args: ['--module', hsm.module, '--token-label', label, '--pin-file', pinFile],
  };
}

const openssl = (args: string[], input?: string) =>
  execFileSync('openssl', args, { encoding: 'utf8', ...(input ? { input } : {}) });

function certs(path: string): X509Certificate[] {
  const text = readFileSync(path, 'utf8');
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (b) => new X509Certificate(b),
  );
}

test('create in a token: Fulcio chain profile, keys only in the token, idempotent, no overwrite', () => {
  const { label, args } = token();
  const out = mkdtempSync(join(hsm.dir, 'ca-'));
  const first = mayfly([
    'ca',
    'create',
    '--out',
    out,
    ...args,
    '--root-key-type',
    'ecdsa-p384',
    '--key-type',
    'ecdsa-p256',
    '--validity-days',
    '100',
  ]);
  expect(first.stderr).toBe('');
  expect(first.status).toBe(0);
  expect(first.stdout).toMatch(/store offline/);
  expect(readdirSync(out).sort()).toEqual(['chain.pem', 'root.pem', 'trusted-root-fragment.json']);

  const [intermediate, root] = certs(join(out, 'chain.pem'));
  expect(openssl(['verify', '-CAfile', join(out, 'root.pem'), join(out, 'chain.pem')])).toMatch(
    /: OK/,
  );
  const text = openssl(['x509', '-noout', '-text'], intermediate!.toString());
  expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
  expect(text).toMatch(/Extended Key Usage:\s+Code Signing/);
  expect(text).not.toMatch(/Name Constraints/);
  expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA384/);
  const rootText = openssl(['x509', '-noout', '-text'], root!.toString());
  expect(rootText).toMatch(/CA:TRUE, pathlen:1/);
  expect(rootText).not.toMatch(/Extended Key Usage/);
  const days = (Date.parse(intermediate!.validTo) - Date.parse(intermediate!.validFrom)) / 86400e3;
  expect(days).toBe(100);

  // OpenSC's view of the token: both private keys are there, sensitive and never
  // extractable, with CKA_ID = the certificate's subject key identifier.
  const objects = execFileSync(
    'pkcs11-tool',
    ['--module', hsm.module, '--token-label', label, '--login', '--pin', PIN, '--list-objects'],
    { encoding: 'utf8', env: { ...process.env, ...hsm.env } },
  );
  const privateKeys = objects.split(/\n(?=\S)/).filter((o) => o.startsWith('Private Key Object'));
  expect(privateKeys).toHaveLength(2);
  for (const k of privateKeys) {
    expect(k).toMatch(/Access:\s+.*sensitive/);
    expect(k).toMatch(/never extractable/);
  }
  const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(text)![1]!.replace(/:/g, '');
  expect(objects.toUpperCase()).toContain(`ID:         ${ski}`);

  // The same ceremony again: nothing changes.
  const before = readFileSync(join(out, 'chain.pem'), 'utf8');
  const again = mayfly(['ca', 'create', '--out', out, ...args]);
  expect(again.status).toBe(0);
  expect(again.stdout).toMatch(/nothing to do/);
  expect(readFileSync(join(out, 'chain.pem'), 'utf8')).toBe(before);

  // Elsewhere with the same labels: refused, nothing written.
  const other = mkdtempSync(join(hsm.dir, 'ca-'));
  const refused = mayfly(['ca', 'create', '--out', other, ...args]);
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/already exists in token .*refusing to overwrite it/);
  expect(readdirSync(other)).toEqual([]);
});

test('rotate stages a new intermediate under the same root; promote swaps in order', () => {
  const { args } = token();
  const out = mkdtempSync(join(hsm.dir, 'ca-'));
  expect(mayfly(['ca', 'create', '--out', out, ...args]).status).toBe(0);
  const [oldIntermediate, root] = certs(join(out, 'chain.pem'));

  expect(mayfly(['ca', 'rotate', '--out', out, ...args]).status).toBe(2); // no --key-label
  const rotated = mayfly(['ca', 'rotate', '--out', out, ...args, '--key-label', 'inter-2']);
  expect(rotated.stderr).toBe('');
  expect(rotated.status).toBe(0);
  const [next, nextRoot] = certs(join(out, 'next-chain.pem'));
  expect(nextRoot!.raw.equals(root!.raw)).toBe(true);
  expect(next!.publicKey.export({ format: 'der', type: 'spki' })).not.toEqual(
    oldIntermediate!.publicKey.export({ format: 'der', type: 'spki' }),
  );
  expect(
    openssl(['verify', '-CAfile', join(out, 'root.pem'), join(out, 'next-chain.pem')]),
  ).toMatch(/: OK/);
  const fragment = JSON.parse(readFileSync(join(out, 'trusted-root-fragment.json'), 'utf8')) as {
    certificateAuthorities: { certChain: { certificates: { rawBytes: string }[] } }[];
  };
  expect(fragment.certificateAuthorities.map((c) => c.certChain.certificates[0]!.rawBytes)).toEqual(
    [oldIntermediate!.raw.toString('base64'), next!.raw.toString('base64')],
  );
  // Idempotent, and a second rotation waits for the promotion.
  expect(mayfly(['ca', 'rotate', '--out', out, ...args, '--key-label', 'inter-2']).stdout).toMatch(
    /already staged/,
  );
  const second = mayfly(['ca', 'rotate', '--out', out, ...args, '--key-label', 'inter-3']);
  expect(second.status).toBe(1);
  expect(second.stderr).toMatch(/promote it first/);

  expect(mayfly(['ca', 'promote', '--out', out]).status).toBe(0);
  expect(certs(join(out, 'chain.pem'))[0]!.raw.equals(next!.raw)).toBe(true);
  expect(certs(join(out, 'previous-chain.pem'))[0]!.raw.equals(oldIntermediate!.raw)).toBe(true);
  expect(readFileSync(join(out, 'next-chain.pem'), 'utf8')).toBe('');
  expect(mayfly(['ca', 'promote', '--out', out]).status).toBe(1);
});

test('file keys for development: the key file matches the chain; the root key is named for offline storage', () => {
  const out = mkdtempSync(join(hsm.dir, 'ca-'));
  const r = mayfly(['ca', 'create', '--out', out, '--file-keys', '--key-type', 'rsa-2048']);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(
    `the root key ${join(out, 'mayfly-root.key.pem')}: move it off this machine`,
  );
  expect(existsSync(join(out, 'mayfly-intermediate-1.key.pem'))).toBe(true);
  const [intermediate] = certs(join(out, 'chain.pem'));
  expect(intermediate!.publicKey.asymmetricKeyType).toBe('rsa');
  expect(
    openssl(['pkey', '-in', join(out, 'mayfly-intermediate-1.key.pem'), '-pubout']).trim(),
  ).toBe(intermediate!.publicKey.export({ type: 'spki', format: 'pem' }).toString().trim());
  const again = mayfly(['ca', 'create', '--out', out, '--file-keys', '--root-key-label', 'r2']);
  expect(again.status).toBe(1);
  expect(again.stderr).toMatch(/refusing to overwrite/);
});

test('usage errors exit 2 with a message', () => {
  expect(mayfly(['ca', 'create']).status).toBe(2);
  expect(mayfly(['ca', 'frobnicate', '--out', '/tmp/x']).status).toBe(2);
  const noToken = mayfly(['ca', 'create', '--out', mkdtempSync(join(hsm.dir, 'ca-'))]);
  expect(noToken.status).toBe(2);
  expect(noToken.stderr).toMatch(/--file-keys/);
  expect(mayfly(['nope']).status).toBe(2);
});
