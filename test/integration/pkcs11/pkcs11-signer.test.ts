import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, verify } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp, listen } from '../../../services/ca/app';
import { loadServerConfig } from '../../../services/ca/config/loader';
import { createLogger, silentLogger } from '../../../services/common/logger';
import { Pkcs11Pool, ecdsaRawToDer } from '../../../services/common/signer/pkcs11/pkcs11-signer';
import { startDevIssuer, type DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import { toPem } from '../../helpers/keys';
import { identityConfigFor, postSigningRequest, signingBody } from '../../helpers/mayfly-process';
import { SoftHsm, makeChain, type CaKeyKind } from '../../helpers/softhsm';

/**
 * The pkcs11 CA against SoftHSM2 (a real PKCS#11 module): certificates issued through the
 * whole app with the key in the token for each key type, checked by openssl; the chain/key
 * match at start; the key found by the certificate's key identifier; a wrong PIN; the
 * bounded queue.
 */

const PIN = '4321';
let hsm: SoftHsm;
let issuer: DevIssuer;
let identityConfig: string;
let tokens = 0;

beforeAll(async () => {
  hsm = new SoftHsm();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
});

afterAll(async () => {
  await issuer?.close();
  hsm?.close();
});

function newToken(): string {
  const label = `signer-${process.pid}-${Date.now().toString(36)}-${++tokens}`;
  hsm.initToken(label, PIN);
  return label;
}

function files(chainPem: string): { chain: string; pin: string } {
  const dir = mkdtempSync(join(hsm.dir, 'ca-'));
  writeFileSync(join(dir, 'chain.pem'), chainPem);
  writeFileSync(join(dir, 'pin'), `${PIN}\n`, { mode: 0o600 });
  return { chain: join(dir, 'chain.pem'), pin: join(dir, 'pin') };
}

function pkcs11Env(token: string, chain: string, pin: string, extra: Record<string, string> = {}) {
  return {
    MAYFLY_LOG_LEVEL: 'silent',
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_CA: 'pkcs11',
    MAYFLY_CA_CERT: chain,
    MAYFLY_CA_PKCS11_MODULE: hsm.module,
    MAYFLY_CA_PKCS11_TOKEN_LABEL: token,
    MAYFLY_CA_PKCS11_PIN_FILE: pin,
    MAYFLY_CA_RELOAD_INTERVAL_MS: '0',
    ...extra,
  };
}

/** openssl verify of the leaf against the chain (root trusted, intermediate untrusted). */
function opensslVerifies(leaf: X509Certificate, chain: readonly X509Certificate[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-verify-'));
  writeFileSync(join(dir, 'leaf.pem'), leaf.toString());
  writeFileSync(join(dir, 'root.pem'), chain[chain.length - 1]!.toString());
  writeFileSync(
    join(dir, 'untrusted.pem'),
    chain
      .slice(0, -1)
      .map((c) => c.toString())
      .join(''),
  );
  return execFileSync(
    'openssl',
    [
      'verify',
      '-CAfile',
      join(dir, 'root.pem'),
      '-untrusted',
      join(dir, 'untrusted.pem'),
      join(dir, 'leaf.pem'),
    ],
    { encoding: 'utf8' },
  );
}

const cases: { name: string; kind: CaKeyKind; padding?: 'pss'; algorithm: RegExp }[] = [
  { name: 'ECDSA P-256', kind: 'p256', algorithm: /ecdsa-with-SHA256/ },
  { name: 'ECDSA P-384', kind: 'p384', algorithm: /ecdsa-with-SHA384/ },
  { name: 'RSA PKCS#1 v1.5', kind: 'rsa2048', algorithm: /sha256WithRSAEncryption/ },
  {
    name: 'RSA PSS',
    kind: 'rsa2048',
    padding: 'pss',
    algorithm: /rsassaPss[\s\S]*Salt Length: (0x)?20/,
  },
];

test.each(cases)(
  'issues through the token: $name',
  async ({ kind, padding, algorithm }) => {
    const token = newToken();
    const ca = await makeChain(kind);
    hsm.importKey(token, PIN, ca.key, 'issuing', '0a');
    const { chain, pin } = files(ca.chainPem);
    const config = loadServerConfig({
      env: pkcs11Env(token, chain, pin, {
        MAYFLY_CA_PKCS11_KEY_LABEL: 'issuing',
        ...(padding ? { MAYFLY_CA_PKCS11_RSA_PADDING: padding } : {}),
      }),
    });
    const app = await createApp(
      config,
      process.env.MAYFLY_TEST_LOGS ? createLogger('debug') : silentLogger,
      {
        discoveryRetryMs: 0,
        auditLogger: silentLogger,
      },
    );
    const { server, port } = await listen(app.api, '127.0.0.1', 0);
    try {
      const outcome = await postSigningRequest(
        `http://127.0.0.1:${port}`,
        await signingBody(issuer, 'hsm@example.com'),
      );
      expect(outcome.status).toBe(200);
      const [leaf, ...rest] = outcome.certificates!;
      expect(rest.map((c) => c.raw.toString('base64'))).toEqual(
        ca.chain.map((d) => Buffer.from(d).toString('base64')),
      );
      expect(opensslVerifies(leaf!, rest)).toMatch(/: OK/);
      const text = execFileSync('openssl', ['x509', '-noout', '-text'], {
        input: leaf!.toString(),
        encoding: 'utf8',
      });
      expect(text).toMatch(algorithm);
      expect(app.isReady()).toBe(true);
    } finally {
      server.close();
      await app.close();
    }
  },
  60_000,
);

test('the key is found by the certificate key identifier when no label is set', async () => {
  const token = newToken();
  const ca = await makeChain('p256');
  const ski = new X509Certificate(ca.chain[0]!).toString();
  const text = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectKeyIdentifier'], {
    input: ski,
    encoding: 'utf8',
  });
  const id = /([0-9A-F]{2}(:[0-9A-F]{2})+)/.exec(text)![1]!.replace(/:/g, '').toLowerCase();
  hsm.importKey(token, PIN, ca.key, 'any-label', id);
  // A second key with another id must not be picked.
  hsm.importKey(token, PIN, (await makeChain('p256')).key, 'other', '99');
  const pool = new Pkcs11Pool({
    module: hsm.module,
    tokenLabel: token,
    pin: PIN,
    sessions: 2,
    maxQueue: 8,
  });
  try {
    const signer = pool.signerFor(ca.chain);
    const tbs = Buffer.from('to be signed');
    const signature = await signer.sign(tbs);
    expect(verify('sha256', tbs, new X509Certificate(ca.chain[0]!).publicKey, signature)).toBe(
      true,
    );
  } finally {
    await pool.close();
  }
});

test('a token key that does not match the CA certificate fails the start', async () => {
  const token = newToken();
  const ca = await makeChain('p256');
  const other = await makeChain('p256');
  hsm.importKey(token, PIN, other.key, 'issuing', '0b');
  const { chain, pin } = files(ca.chainPem);
  const config = loadServerConfig({
    env: pkcs11Env(token, chain, pin, { MAYFLY_CA_PKCS11_KEY_LABEL: 'issuing' }),
  });
  await expect(createApp(config, silentLogger, { auditLogger: silentLogger })).rejects.toThrow(
    /does not match the CA certificate: public keys are not equal/,
  );
});

test('a wrong PIN, a missing token and a missing key are clear start errors', async () => {
  const token = newToken();
  const ca = await makeChain('p384');
  hsm.importKey(token, PIN, ca.key, 'issuing', '0c');
  const open = (options: Partial<{ tokenLabel: string; pin: string }>) =>
    new Pkcs11Pool({
      module: hsm.module,
      tokenLabel: token,
      pin: PIN,
      sessions: 1,
      maxQueue: 1,
      ...options,
    });
  expect(() => open({ pin: '0000' })).toThrow('the token refused the PIN');
  expect(() => open({ tokenLabel: 'no-such-token' })).toThrow(/no token labelled "no-such-token"/);
  const pool = open({});
  try {
    expect(() => pool.signerFor(ca.chain, 'nope')).toThrow(/no private key with label "nope"/);
  } finally {
    await pool.close();
  }
});

test('signatures beyond the sessions and the queue are refused at once, the rest succeed', async () => {
  const token = newToken();
  const ca = await makeChain('rsa2048');
  hsm.importKey(token, PIN, ca.key, 'issuing', '0d');
  const pool = new Pkcs11Pool({
    module: hsm.module,
    tokenLabel: token,
    pin: PIN,
    sessions: 1,
    maxQueue: 2,
  });
  try {
    const signer = pool.signerFor(ca.chain, 'issuing');
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => signer.sign(Buffer.from(`tbs ${i}`))),
    );
    const refused = results.filter((r) => r.status === 'rejected');
    // One signs, two wait, seven are refused without waiting.
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    expect(refused).toHaveLength(7);
    for (const r of refused)
      expect((r as PromiseRejectedResult).reason.message).toBe('the PKCS#11 signing queue is full');
    expect(pool.stats()).toMatchObject({ idle: 1, inFlight: 0, queued: 0 });
  } finally {
    await pool.close();
  }
});

test('ECDSA r||s becomes DER the way OpenSSL writes it', () => {
  // Leading zero bytes are dropped and a high bit gets a zero byte, as INTEGER needs.
  const r = Buffer.alloc(32, 0);
  r[2] = 0x85;
  r[31] = 1;
  const s = Buffer.alloc(32, 0xff);
  const der = Buffer.from(ecdsaRawToDer(Buffer.concat([r, s])));
  const parsed = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], {
    input: der,
    encoding: 'utf8',
  });
  expect(parsed).toMatch(/INTEGER\s+:85[0-9A-F]*01\b/);
  expect(parsed).toMatch(/INTEGER\s+:F{64}/);
  expect(der.subarray(0, 4).toString('hex')).toBe(`30${(der.length - 2).toString(16)}021f`);
  expect(createHash('sha256').update(toPem('X', der)).digest()).toHaveLength(32);
});
