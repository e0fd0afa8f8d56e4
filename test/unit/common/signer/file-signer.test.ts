import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FULCIO_OID } from '../../../../services/ca/certificate-identity/certificate-identity';
import { ManualClock, systemClock, type Clock } from '../../../../services/common/clock';
import { CertificateAuthority } from '../../../../services/ca/issuance/certificate-authority';
import { randomSerial } from '../../../../services/ca/issuance/serial';
import {
  CaLoadError,
  loadFileSigner,
  type FileCaPaths,
} from '../../../../services/common/signer/file-signer';
import type { CaSigner } from '../../../../services/common/signer/signer';
import { makeKey } from '../../../helpers/keys';

/**
 * The file CA, loaded from chains the openssl CLI makes, the way an operator would make
 * them: a root, an intermediate with CA:TRUE, pathlen:0 and EKU codeSigning, and the
 * intermediate key as PKCS#8, plain or encrypted with -aes256.
 */

const PASSWORD = 'correct horse battery staple';
const DAY_MS = 24 * 3600 * 1000;

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[root_ext]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate_no_eku_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[not_ca_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate_custom_ski_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
extendedKeyUsage = codeSigning
subjectKeyIdentifier = 0102030405060708090a0b0c0d0e0f10
authorityKeyIdentifier = keyid:always
`;

let dir: string;
const path = (name: string): string => join(dir, name);

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
}

/** A PKCS#8 private key (openssl genpkey's default output). */
function genKey(name: string, curve = 'P-384'): string {
  openssl([
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    `ec_paramgen_curve:${curve}`,
    '-out',
    path(name),
  ]);
  return path(name);
}

function selfSigned(name: string, key: string, subject: string, section: string): string {
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    key,
    '-subj',
    subject,
    '-days',
    '3650',
    '-config',
    path('openssl.cnf'),
    '-extensions',
    section,
    '-out',
    path(name),
  ]);
  return path(name);
}

function issued(
  name: string,
  key: string,
  subject: string,
  ca: { cert: string; key: string },
  section: string,
  days = 1000,
): string {
  openssl([
    'req',
    '-new',
    '-key',
    key,
    '-subj',
    subject,
    '-config',
    path('openssl.cnf'),
    '-out',
    path(`${name}.csr`),
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    path(`${name}.csr`),
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    `0x${Buffer.from(randomSerial()).toString('hex')}`,
    '-days',
    String(days),
    '-extfile',
    path('openssl.cnf'),
    '-extensions',
    section,
    '-out',
    path(name),
  ]);
  return path(name);
}

function concat(name: string, ...files: string[]): string {
  writeFileSync(path(name), files.map((f) => readFileSync(f, 'utf8')).join(''));
  return path(name);
}

interface Fixture {
  rootKey: string;
  root: string;
  intermediateKey: string;
  encryptedKey: string;
  passwordFile: string;
  wrongPasswordFile: string;
  intermediate: string;
  chain: string;
}
let fx: Fixture;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-fileca-'));
  writeFileSync(path('openssl.cnf'), OPENSSL_CONFIG);
  const rootKey = genKey('root.key');
  const root = selfSigned('root.pem', rootKey, '/O=mayfly test/CN=test root', 'root_ext');
  const intermediateKey = genKey('intermediate.key');
  const intermediate = issued(
    'intermediate.pem',
    intermediateKey,
    '/O=mayfly test/CN=test intermediate',
    { cert: root, key: rootKey },
    'intermediate_ext',
  );
  writeFileSync(path('password.txt'), `${PASSWORD}\n`);
  writeFileSync(path('wrong-password.txt'), 'Tr0ub4dor&3\n');
  openssl([
    'pkey',
    '-in',
    intermediateKey,
    '-aes256',
    '-passout',
    `file:${path('password.txt')}`,
    '-out',
    path('intermediate.enc.key'),
  ]);
  fx = {
    rootKey,
    root,
    intermediateKey,
    encryptedKey: path('intermediate.enc.key'),
    passwordFile: path('password.txt'),
    wrongPasswordFile: path('wrong-password.txt'),
    intermediate,
    chain: concat('chain.pem', intermediate, root),
  };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loadError(paths: FileCaPaths, clock: Clock = systemClock): CaLoadError {
  try {
    loadFileSigner(paths, clock);
  } catch (err) {
    expect(err).toBeInstanceOf(CaLoadError);
    return err as CaLoadError;
  }
  throw new Error('expected loadFileSigner to refuse');
}

function derOf(pemFile: string): Buffer {
  return Buffer.from(new X509Certificate(readFileSync(pemFile)).raw);
}

async function issueLeaf(signer: CaSigner): Promise<string> {
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const ca = new CertificateAuthority(signer);
  const { der } = await ca.issue({
    publicKey: new Uint8Array(makeKey('p256').publicKey.export({ type: 'spki', format: 'der' })),
    identity: {
      san: { type: 'email', value: 'alice@example.com' },
      extensions: [
        { oid: FULCIO_OID.issuerV1, value: 'https://issuer.example.com', encoding: 'raw' },
        { oid: FULCIO_OID.issuerV2, value: 'https://issuer.example.com', encoding: 'utf8' },
      ],
    },
    serial: randomSerial(),
    notBefore,
    notAfter: new Date(notBefore.getTime() + 600_000),
  });
  const file = path(`leaf-${Buffer.from(randomSerial()).toString('hex').slice(0, 8)}.pem`);
  writeFileSync(file, new X509Certificate(der).toString());
  return file;
}

function opensslVerify(
  root: string,
  intermediate: string,
  leaf: string,
): { ok: boolean; out: string } {
  const run = spawnSync('openssl', ['verify', '-CAfile', root, '-untrusted', intermediate, leaf], {
    encoding: 'utf8',
  });
  return { ok: run.status === 0, out: `${run.stdout}${run.stderr}` };
}

describe('loadFileSigner loads a valid chain', () => {
  test('loads a plain PKCS#8 key and its chain, issuing certificate first', () => {
    const signer = loadFileSigner({ cert: fx.chain, key: fx.intermediateKey }, systemClock);
    expect(signer.chain.map((c) => Buffer.from(c))).toEqual([
      derOf(fx.intermediate),
      derOf(fx.root),
    ]);
    expect(signer.hash).toBe('sha384');
    expect(new X509Certificate(signer.chain[0]!).publicKey.equals(signer.publicKey)).toBe(true);
  });

  test('loads an -aes256 encrypted PKCS#8 key with a password file ending in a newline', () => {
    expect(readFileSync(fx.encryptedKey, 'utf8')).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    expect(readFileSync(fx.passwordFile, 'utf8').endsWith('\n')).toBe(true);
    const signer = loadFileSigner(
      { cert: fx.chain, key: fx.encryptedKey, keyPasswordFile: fx.passwordFile },
      systemClock,
    );
    expect(Buffer.from(signer.chain[0]!)).toEqual(derOf(fx.intermediate));
  });

  test('loads a password file with a CRLF line ending', () => {
    const crlf = path('password-crlf.txt');
    writeFileSync(crlf, `${PASSWORD}\r\n`);
    expect(() =>
      loadFileSigner({ cert: fx.chain, key: fx.encryptedKey, keyPasswordFile: crlf }, systemClock),
    ).not.toThrow();
  });

  test('loads a root used directly as the issuing certificate (no EKU needed without an intermediate)', () => {
    const signer = loadFileSigner({ cert: fx.root, key: fx.rootKey }, systemClock);
    expect(signer.chain).toHaveLength(1);
  });

  test('signs leaves that `openssl verify` accepts against the root and intermediate', async () => {
    const signer = loadFileSigner(
      { cert: fx.chain, key: fx.encryptedKey, keyPasswordFile: fx.passwordFile },
      systemClock,
    );
    const leaf = await issueLeaf(signer);
    const result = opensslVerify(fx.root, fx.intermediate, leaf);
    expect(result.out).toContain(': OK');
    expect(result.ok).toBe(true);
    const text = openssl(['x509', '-in', leaf, '-noout', '-text']);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA384/);
    expect(text).toMatch(/Issuer: O ?= ?mayfly test, CN ?= ?test intermediate/);
  });

  test('`openssl verify` refuses the same leaf against a root that did not sign the chain', async () => {
    const otherRootKey = genKey('other-root.key');
    const otherRoot = selfSigned(
      'other-root.pem',
      otherRootKey,
      '/O=mayfly test/CN=test root',
      'root_ext',
    );
    const signer = loadFileSigner({ cert: fx.chain, key: fx.intermediateKey }, systemClock);
    const leaf = await issueLeaf(signer);
    expect(opensslVerify(otherRoot, fx.intermediate, leaf).ok).toBe(false);
  });

  test('signs leaves whose AKI is the intermediate’s SKI even when that SKI is not SHA-1 of its key', async () => {
    // RFC 5280 lets a CA choose its key identifier; openssl (and Go) match a leaf's AKI
    // against the issuer's SKI extension, so the leaf must copy it, not recompute it.
    const key = genKey('custom-ski.key');
    const intermediate = issued(
      'custom-ski.pem',
      key,
      '/O=mayfly test/CN=custom ski intermediate',
      { cert: fx.root, key: fx.rootKey },
      'intermediate_custom_ski_ext',
    );
    expect(
      openssl(['x509', '-in', intermediate, '-noout', '-ext', 'subjectKeyIdentifier']),
    ).toContain('01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10');
    const signer = loadFileSigner(
      { cert: concat('custom-ski-chain.pem', intermediate, fx.root), key },
      systemClock,
    );
    const leaf = await issueLeaf(signer);
    expect(openssl(['x509', '-in', leaf, '-noout', '-ext', 'authorityKeyIdentifier'])).toContain(
      '01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10',
    );
    const result = opensslVerify(fx.root, intermediate, leaf);
    expect(result.out).toContain(': OK');
  });
});

describe('loadFileSigner refuses a CA that cannot issue (CaLoadError)', () => {
  test('refuses a key that does not match the issuing certificate', () => {
    const other = genKey('other.key');
    expect(loadError({ cert: fx.chain, key: other }).message).toBe('public keys are not equal');
  });

  test('refuses an intermediate without EKU codeSigning', () => {
    const key = genKey('no-eku.key');
    const cert = issued(
      'no-eku.pem',
      key,
      '/CN=no eku',
      { cert: fx.root, key: fx.rootKey },
      'intermediate_no_eku_ext',
    );
    expect(loadError({ cert: concat('no-eku-chain.pem', cert, fx.root), key }).message).toBe(
      'certificate must have extended key usage code signing set to sign code signing certificates',
    );
  });

  test('refuses an issuing certificate that is not a CA', () => {
    const key = genKey('not-ca.key');
    const cert = issued(
      'not-ca.pem',
      key,
      '/CN=not a ca',
      { cert: fx.root, key: fx.rootKey },
      'not_ca_ext',
    );
    expect(loadError({ cert: concat('not-ca-chain.pem', cert, fx.root), key }).message).toMatch(
      /certificate 1 of the chain is not a CA/,
    );
  });

  test('refuses a chain whose link does not verify (same root name, different root key)', () => {
    const impostorKey = genKey('impostor-root.key');
    const impostor = selfSigned(
      'impostor-root.pem',
      impostorKey,
      '/O=mayfly test/CN=test root',
      'root_ext',
    );
    const error = loadError({
      cert: concat('broken-chain.pem', fx.intermediate, impostor),
      key: fx.intermediateKey,
    });
    expect(error.message).toMatch(/certificate 1 of the chain is not signed by the next one/);
  });

  test('refuses a chain in the wrong order (root first)', () => {
    const error = loadError({
      cert: concat('reversed.pem', fx.root, fx.intermediate),
      key: fx.intermediateKey,
    });
    expect(error.message).toMatch(/not signed by the next one/);
  });

  test('refuses a chain that does not end in a self-signed root', () => {
    const error = loadError({ cert: fx.intermediate, key: fx.intermediateKey });
    expect(error.message).toMatch(/not signed by the next one/);
  });

  test('refuses an empty chain file', () => {
    writeFileSync(path('empty.pem'), '');
    expect(loadError({ cert: path('empty.pem'), key: fx.intermediateKey }).message).toBe(
      'certificate chain must contain at least one certificate',
    );
  });

  test('refuses a chain file holding no certificate (only a key)', () => {
    expect(loadError({ cert: fx.intermediateKey, key: fx.intermediateKey }).message).toBe(
      'certificate chain must contain at least one certificate',
    );
  });

  test('refuses a missing chain file, naming it', () => {
    const missing = path('no-such-chain.pem');
    const error = loadError({ cert: missing, key: fx.intermediateKey });
    expect(error.message).toContain(missing);
    expect(error.message).toContain('ENOENT');
  });

  test('refuses a missing key file, naming it', () => {
    const missing = path('no-such.key');
    const error = loadError({ cert: fx.chain, key: missing });
    expect(error.message).toContain(missing);
  });

  test('refuses a missing password file, naming it', () => {
    const missing = path('no-such-password.txt');
    const error = loadError({ cert: fx.chain, key: fx.encryptedKey, keyPasswordFile: missing });
    expect(error.message).toContain(missing);
  });

  test('refuses an encrypted key without a password file, saying what to set', () => {
    expect(loadError({ cert: fx.chain, key: fx.encryptedKey }).message).toMatch(
      /encrypted.*MAYFLY_CA_KEY_PASSWORD_FILE/,
    );
  });

  test('refuses a wrong password without echoing key material or passwords', () => {
    const error = loadError({
      cert: fx.chain,
      key: fx.encryptedKey,
      keyPasswordFile: fx.wrongPasswordFile,
    });
    expect(error.message).toBe('the CA key could not be decrypted with the given password');
    const keyBody = readFileSync(fx.encryptedKey, 'utf8').split('\n')[1]!;
    expect(error.message).not.toContain(keyBody.slice(0, 16));
    expect(error.message).not.toContain('Tr0ub4dor');
    expect(error.message).not.toContain(PASSWORD);
    expect(String(error.stack)).not.toContain(keyBody.slice(0, 16));
  });

  test('refuses a key file that is not a private key', () => {
    expect(loadError({ cert: fx.chain, key: fx.root }).message).toMatch(
      /not a PKCS#8 PEM private key/,
    );
  });

  test('refuses an issuing certificate that has expired', () => {
    // The intermediate is valid for 1000 days; look at the chain 1100 days from now.
    const later = new ManualClock(new Date(Date.now() + 1100 * DAY_MS));
    const error = loadError({ cert: fx.chain, key: fx.intermediateKey }, later);
    expect(error.message).toMatch(/certificate 1 of the chain is not valid now/);
  });

  test('refuses an issuing certificate that is not valid yet', () => {
    const earlier = new ManualClock(new Date(Date.now() - 2 * DAY_MS));
    const error = loadError({ cert: fx.chain, key: fx.intermediateKey }, earlier);
    expect(error.message).toMatch(/not valid now/);
  });

  test('refuses a CA key goodkey refuses (P-224), as Fulcio’s VerifyCertChain does', () => {
    const key = genKey('p224-root.key', 'P-224');
    const cert = selfSigned('p224-root.pem', key, '/CN=p224 root', 'root_ext');
    expect(loadError({ cert, key }).message).toMatch(/not allowed.*secp224r1/);
  });
});
