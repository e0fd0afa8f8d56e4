import { execFileSync } from 'node:child_process';
import { constants, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CaError } from '../../../../services/ca/common/errors';
import { verifyCsr } from '../../../../services/ca/pop/csr';
import { makeCsr, makeKey, toPem, weakKeys, type TestKey } from '../../../helpers/keys';

const RSA_PSS_OID = '1.2.840.113549.1.1.10';
const SHA256_OID = '2.16.840.1.101.3.4.2.1';
const MGF1_OID = '1.2.840.113549.1.1.8';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-csr-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refusal(pem: string): CaError {
  try {
    verifyCsr(pem);
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    return err as CaError;
  }
  throw new Error('expected verifyCsr to refuse the CSR');
}

function derOf(pem: string): Buffer {
  const body = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

/** An `openssl req -new` CSR for the key, with any extra arguments. */
function opensslCsr(key: TestKey, args: string[]): string {
  const keyPath = join(dir, `key-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(keyPath, key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return execFileSync('openssl', ['req', '-new', '-key', keyPath, ...args], {
    encoding: 'utf8',
  });
}

/** A CSR signed with RSASSA-PSS (SHA-256, MGF1-SHA-256, the given salt), built with pkijs. */
function pssCsr(key: TestKey, saltLength: number, corrupt = false): string {
  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject.typesAndValues.push(
    new pkijs.AttributeTypeAndValue({
      type: '2.5.4.3',
      value: new asn1js.Utf8String({ value: 'pss' }),
    }),
  );
  csr.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(
    key.publicKey.export({ type: 'spki', format: 'der' }),
  );
  csr.attributes = [];
  const sha256 = new pkijs.AlgorithmIdentifier({
    algorithmId: SHA256_OID,
    algorithmParams: new asn1js.Null(),
  });
  const params = new pkijs.RSASSAPSSParams({
    hashAlgorithm: sha256,
    maskGenAlgorithm: new pkijs.AlgorithmIdentifier({
      algorithmId: MGF1_OID,
      algorithmParams: sha256.toSchema(),
    }),
    saltLength,
  });
  csr.signatureAlgorithm = new pkijs.AlgorithmIdentifier({
    algorithmId: RSA_PSS_OID,
    algorithmParams: params.toSchema(),
  });
  const tbs = new Uint8Array(
    (csr as unknown as { encodeTBS(): asn1js.Sequence }).encodeTBS().toBER(false),
  );
  const signature = sign('sha256', tbs, {
    key: key.privateKey,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength,
  });
  if (corrupt) signature[signature.length - 1] = signature[signature.length - 1]! ^ 0xff;
  const outer = new asn1js.Sequence({
    value: [
      asn1js.fromBER(tbs).result,
      csr.signatureAlgorithm.toSchema(),
      new asn1js.BitString({ valueHex: signature }),
    ],
  });
  return toPem('CERTIFICATE REQUEST', new Uint8Array(outer.toBER(false)));
}

describe('verifyCsr accepts a well-formed, self-signed PEM CSR', () => {
  test.each([
    ['p256', { kind: 'ecdsa', curve: 'P-256' }, 'sha256'],
    ['p384', { kind: 'ecdsa', curve: 'P-384' }, 'sha384'],
    ['rsa2048', { kind: 'rsa', bits: 2048 }, 'sha256'],
    ['ed25519', { kind: 'ed25519' }, 'none'],
  ] as const)('accepts a %s CSR and returns its key and hash', (kind, algorithm, hash) => {
    const key = makeKey(kind);
    const verified = verifyCsr(makeCsr(key));
    expect(verified.key.algorithm).toEqual(algorithm);
    expect(verified.hash).toBe(hash);
    expect(Buffer.from(verified.key.spki)).toEqual(
      key.publicKey.export({ type: 'spki', format: 'der' }),
    );
  });

  test('reports the CSR’s own hash, so the allow-list can refuse P-256 with SHA-384', () => {
    const verified = verifyCsr(makeCsr(makeKey('p256'), { hash: 'sha384' }));
    expect(verified.hash).toBe('sha384');
  });

  test('accepts CSRs made by the openssl CLI (ECDSA and RSA PKCS#1 v1.5)', () => {
    expect(verifyCsr(opensslCsr(makeKey('p256'), ['-subj', '/CN=x'])).hash).toBe('sha256');
    expect(verifyCsr(opensslCsr(makeKey('rsa2048'), ['-subj', '/CN=x'])).hash).toBe('sha256');
  });

  test('ignores the subject and any requested SANs and extensions', () => {
    const key = makeKey('p256');
    const pem = opensslCsr(key, [
      '-subj',
      '/CN=root@evil.example/O=Evil Corp',
      '-addext',
      'subjectAltName=email:root@evil.example,URI:https://evil.example',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    const verified = verifyCsr(pem);
    expect(Buffer.from(verified.key.spki)).toEqual(
      key.publicKey.export({ type: 'spki', format: 'der' }),
    );
    expect(Object.keys(verified).sort()).toEqual(['hash', 'key']);
    const other = verifyCsr(makeCsr(key, { subjectCn: 'https://another.example/x' }));
    expect(Buffer.from(other.key.spki)).toEqual(Buffer.from(verified.key.spki));
  });

  test('accepts the legacy PEM type NEW CERTIFICATE REQUEST', () => {
    const key = makeKey('p256');
    const legacy = toPem('NEW CERTIFICATE REQUEST', derOf(makeCsr(key)));
    expect(verifyCsr(legacy).key.algorithm).toEqual({ kind: 'ecdsa', curve: 'P-256' });
  });
});

describe('verifyCsr refuses what is not a parsable PEM CSR (invalid_csr)', () => {
  test.each([
    ['the bytes "invalid" (Fulcio TestAPIWithInvalidCSR)', 'invalid'],
    ['an empty string', ''],
    [
      'a PEM armour with no body',
      '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n',
    ],
  ])('refuses %s', (_what, pem) => {
    const error = refusal(pem);
    expect(error.code).toBe('invalid_csr');
    expect(error.clientMessage).toBe('The certificate signing request could not be parsed');
  });

  test('refuses a DER-only CSR (Fulcio requires PEM)', () => {
    const der = derOf(makeCsr(makeKey('p256')));
    expect(refusal(der.toString('latin1')).code).toBe('invalid_csr');
    expect(refusal(der.toString('base64')).code).toBe('invalid_csr');
  });

  test('refuses a PEM block of another type', () => {
    const der = derOf(makeCsr(makeKey('p256')));
    expect(refusal(toPem('CERTIFICATE', der)).code).toBe('invalid_csr');
    expect(refusal(makeKey('p256').pem).code).toBe('invalid_csr');
  });

  test('refuses a CSR whose DER is truncated', () => {
    const der = derOf(makeCsr(makeKey('p256')));
    expect(refusal(toPem('CERTIFICATE REQUEST', der.subarray(0, der.length - 10))).code).toBe(
      'invalid_csr',
    );
  });

  test('refuses a CSR whose DER has trailing bytes', () => {
    const der = derOf(makeCsr(makeKey('p256')));
    const padded = Buffer.concat([der, Buffer.from([0x00, 0x00])]);
    expect(refusal(toPem('CERTIFICATE REQUEST', padded)).code).toBe('invalid_csr');
  });

  test('refuses a CSR without its attributes field (mandatory in RFC 2986, as in Go)', () => {
    for (const kind of ['p256', 'rsa2048', 'ed25519'] as const) {
      const key = makeKey(kind);
      // The same request with the (empty) field is accepted: only its absence is refused.
      expect(() => verifyCsr(makeCsr(key))).not.toThrow();
      const error = refusal(makeCsr(key, { withoutAttributes: true }));
      expect([kind, error.code, error.detail]).toEqual([
        kind,
        'invalid_csr',
        'CSR has no attributes field',
      ]);
    }
  });

  test('refuses well-formed DER that is not a CertificationRequest', () => {
    const spki = makeKey('p256').publicKey.export({ type: 'spki', format: 'der' });
    expect(refusal(toPem('CERTIFICATE REQUEST', spki)).code).toBe('invalid_csr');
  });
});

describe('verifyCsr refuses a CSR whose self-signature does not verify (invalid_signature)', () => {
  test.each(['p256', 'rsa2048', 'ed25519'] as const)(
    'refuses a %s CSR with a corrupted signature (Fulcio TestAPIWithInvalidCSRSignature)',
    (kind) => {
      const error = refusal(makeCsr(makeKey(kind), { corrupt: true }));
      expect(error.code).toBe('invalid_signature');
      expect(error.clientMessage).toBe(
        'The signature supplied in the request could not be verified',
      );
    },
  );

  test('refuses a CSR whose last DER byte is corrupted', () => {
    const der = derOf(makeCsr(makeKey('p256')));
    der[der.length - 1] = der[der.length - 1]! ^ 0x01;
    expect(refusal(toPem('CERTIFICATE REQUEST', der)).code).toBe('invalid_signature');
  });

  test.each(['p256', 'rsa2048'] as const)('refuses a SHA-1 signed %s CSR', (kind) => {
    expect(refusal(makeCsr(makeKey(kind), { hash: 'sha1' })).code).toBe('invalid_signature');
  });

  test('refuses a CSR signed by another key than the one it carries', () => {
    const key = makeKey('p256');
    const other = makeKey('p256');
    const swapped = makeCsr({ ...key, privateKey: other.privateKey });
    expect(refusal(swapped).code).toBe('invalid_signature');
  });

  test('refuses an RSA-PSS CSR whose signature does not verify', () => {
    expect(refusal(pssCsr(makeKey('rsa2048'), 32, true)).code).toBe('invalid_signature');
  });

  test('refuses an RSA-PSS CSR whose salt is not the hash length, as Go’s x509 does', () => {
    // openssl's default PSS salt is the maximum (222 bytes for RSA-2048/SHA-256); Go maps
    // such parameters to UnknownSignatureAlgorithm and CheckSignature fails.
    const error = refusal(
      opensslCsr(makeKey('rsa2048'), [
        '-subj',
        '/CN=x',
        '-sha256',
        '-sigopt',
        'rsa_padding_mode:pss',
      ]),
    );
    expect(error.code).toBe('invalid_signature');
  });
});

describe('verifyCsr refuses insecure keys before checking the signature', () => {
  test('refuses an RSA-1024 CSR as insecure', () => {
    const error = refusal(makeCsr(weakKeys.rsa1024()));
    expect(error.code).toBe('insecure_public_key');
    expect(error.clientMessage).toBe('The public key supplied in the request is insecure');
  });

  test('refuses a P-224 CSR as insecure', () => {
    expect(refusal(makeCsr(weakKeys.p224())).code).toBe('insecure_public_key');
  });

  test('refuses an RSA-1024 CSR as insecure even when its signature is corrupted too', () => {
    expect(refusal(makeCsr(weakKeys.rsa1024(), { corrupt: true })).code).toBe(
      'insecure_public_key',
    );
  });
});

describe('verifyCsr refuses RSA-PSS CSRs that verify (unsupported_signature_algorithm)', () => {
  const expected = 'unrecognized signature algorithm: SHA256-RSAPSS';

  test('refuses a pkijs-built RSA-PSS SHA-256 CSR with Fulcio’s passthrough message', () => {
    const error = refusal(pssCsr(makeKey('rsa2048'), 32));
    expect(error.code).toBe('unsupported_signature_algorithm');
    expect(error.clientMessage).toBe(expected);
  });

  test('refuses an openssl-made RSA-PSS SHA-256 CSR (salt = digest) the same way', () => {
    const pem = opensslCsr(makeKey('rsa2048'), [
      '-subj',
      '/CN=x',
      '-sha256',
      '-sigopt',
      'rsa_padding_mode:pss',
      '-sigopt',
      'rsa_pss_saltlen:digest',
    ]);
    const error = refusal(pem);
    expect(error.code).toBe('unsupported_signature_algorithm');
    expect(error.clientMessage).toBe(expected);
  });

  test('refuses an RSA-PSS CSR for a key of a size goodkey refuses as insecure first', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weak: TestKey = { kind: 'rsa1024', privateKey, publicKey, pem: '' };
    expect(refusal(pssCsr(weak, 32)).code).toBe('insecure_public_key');
  });
});
