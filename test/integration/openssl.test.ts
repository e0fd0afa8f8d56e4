import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { makeKey, proofFor, type KeyKind } from '../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../helpers/mayfly';

/**
 * Certificates issued over the HTTP API, checked by an independent X.509 implementation:
 * the openssl CLI must parse every leaf and build a path from it to the trust bundle root.
 */

const EMAIL = 'openssl-check@example.com';
const PEM = /-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+?\n-----END CERTIFICATE-----/g;

let ca: TestCa;
let dir: string;
let rootPath: string;
let rootPem: string;

function openssl(args: string[]): { status: number | null; out: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

function write(name: string, pem: string): string {
  const file = join(dir, name);
  writeFileSync(file, pem.endsWith('\n') ? pem : `${pem}\n`);
  return file;
}

beforeAll(async () => {
  ca = await startTestCa();
  dir = mkdtempSync(join(tmpdir(), 'mayfly-openssl-'));
  // The root comes from the trust bundle, not from the signing response under test.
  const bundle = await request(ca.app.api).get('/api/v2/trustBundle');
  expect(bundle.status).toBe(200);
  const chains = (bundle.body as { chains: { certificates: string[] }[] }).chains;
  expect(chains).toHaveLength(1);
  rootPem = chains[0]!.certificates.at(-1)!.trim();
  rootPath = write('root.pem', rootPem);
});

afterAll(async () => {
  await ca.close();
  rmSync(dir, { recursive: true, force: true });
});

function checkWithOpenssl(name: string, certificates: string[]): void {
  expect(certificates).toHaveLength(3);
  const [leaf, intermediate, root] = certificates as [string, string, string];
  expect(root.trim()).toBe(rootPem);
  const leafPath = write(`${name}-leaf.pem`, leaf);
  const intermediatePath = write(`${name}-intermediate.pem`, intermediate);

  const text = openssl(['x509', '-in', leafPath, '-noout', '-text']);
  expect(text.status).toBe(0);
  expect(text.out).toContain('Version: 3 (0x2)');
  expect(text.out).toMatch(
    /X509v3 Subject Alternative Name: critical\n\s+email:openssl-check@example\.com\n/,
  );
  expect(text.out).toMatch(/X509v3 Extended Key Usage: \n\s+Code Signing\n/);
  expect(text.out).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);

  const verified = openssl([
    'verify',
    '-CAfile',
    rootPath,
    '-untrusted',
    intermediatePath,
    leafPath,
  ]);
  expect(verified.out).toBe(`${leafPath}: OK\n`);
  expect(verified.status).toBe(0);
}

describe('v2 certificates pass openssl x509 and openssl verify', () => {
  test.each<[KeyKind, RegExp]>([
    ['p256', /Public Key Algorithm: id-ecPublicKey[\s\S]*ASN1 OID: prime256v1/],
    ['p384', /Public Key Algorithm: id-ecPublicKey[\s\S]*ASN1 OID: secp384r1/],
    ['rsa2048', /Public Key Algorithm: rsaEncryption[\s\S]*Public-Key: \(2048 bit\)/],
    ['ed25519', /Public Key Algorithm: ED25519/],
  ])('issues a %s certificate that openssl parses and verifies', async (kind, keyText) => {
    const key = makeKey(kind);
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(200);
    const certificates = (
      res.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } }
    ).signedCertificateDetachedSct.chain.certificates;
    checkWithOpenssl(`v2-${kind}`, certificates);
    const leafText = openssl(['x509', '-in', join(dir, `v2-${kind}-leaf.pem`), '-noout', '-text']);
    expect(leafText.out).toMatch(keyText);
  });

  test('openssl verify fails the same leaf against a root that is not mayfly’s', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    const [leaf] = (
      res.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } }
    ).signedCertificateDetachedSct.chain.certificates;
    const other = await startTestCa();
    try {
      const otherBundle = await request(other.app.api).get('/api/v2/trustBundle');
      const otherChain = (otherBundle.body as { chains: { certificates: string[] }[] }).chains[0]!
        .certificates;
      const otherRoot = write('other-root.pem', otherChain.at(-1)!);
      const otherIntermediate = write('other-intermediate.pem', otherChain[0]!);
      const leafPath = write('foreign-leaf.pem', leaf!);
      const verified = openssl([
        'verify',
        '-CAfile',
        otherRoot,
        '-untrusted',
        otherIntermediate,
        leafPath,
      ]);
      expect(verified.status).not.toBe(0);
    } finally {
      await other.close();
    }
  });
});

describe('v1 certificates pass openssl x509 and openssl verify', () => {
  test('issues a chain over /api/v1/signingCert that openssl verifies', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v1/signingCert')
      .set('Authorization', `Bearer ${token}`)
      .send(v1Body(key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/pem-certificate-chain');
    const certificates = res.text.match(PEM) ?? [];
    checkWithOpenssl('v1-p256', certificates);
  });
});
