import { constants, generateKeyPairSync, sign, verify } from 'node:crypto';
import { CaError } from '../../../../services/ca/common/errors';
import { verifyProof } from '../../../../services/ca/pop/proof';
import { parsePublicKey } from '../../../../services/ca/pop/public-key';
import { makeKey, proofFor, type KeyKind, type TestKey } from '../../../helpers/keys';

const NAME = 'alice@example.com';

function refusal(run: () => unknown): CaError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    return err as CaError;
  }
  throw new Error('expected verifyProof to refuse the proof');
}

function expectInvalidSignature(key: TestKey, proof: Uint8Array, name = NAME): void {
  const error = refusal(() => verifyProof(parsePublicKey(key.pem), proof, name));
  expect(error.code).toBe('invalid_signature');
  expect(error.clientMessage).toBe('The signature supplied in the request could not be verified');
}

describe('verifyProof accepts a proof made the way sigstore clients make it', () => {
  test.each<[KeyKind, string]>([
    ['p256', 'sha256'],
    ['p384', 'sha384'],
    ['p521', 'sha512'],
    ['rsa2048', 'sha256'],
    ['rsa3072', 'sha256'],
    ['rsa4096', 'sha256'],
    ['ed25519', 'none'],
  ])('accepts a %s proof and reports the %s hash for the allow-list', (kind, hash) => {
    const key = makeKey(kind);
    expect(verifyProof(parsePublicKey(key.pem), proofFor(key, NAME), NAME)).toBe(hash);
  });

  test('accepts a P-384 ECDSA proof over SHA-384 of the name, DER encoded', () => {
    const key = makeKey('p384');
    const proof = sign('sha384', Buffer.from(NAME), { key: key.privateKey, dsaEncoding: 'der' });
    expect(proof[0]).toBe(0x30);
    expect(verifyProof(parsePublicKey(key.pem), proof, NAME)).toBe('sha384');
  });

  test('accepts a P-521 ECDSA proof over SHA-512 of the name', () => {
    const key = makeKey('p521');
    const proof = sign('sha512', Buffer.from(NAME), { key: key.privateKey, dsaEncoding: 'der' });
    expect(verifyProof(parsePublicKey(key.pem), proof, NAME)).toBe('sha512');
  });

  test('accepts an RSA PKCS#1 v1.5 SHA-256 proof', () => {
    const key = makeKey('rsa2048');
    const proof = sign('sha256', Buffer.from(NAME), {
      key: key.privateKey,
      padding: constants.RSA_PKCS1_PADDING,
    });
    expect(proof).toHaveLength(256);
    expect(verifyProof(parsePublicKey(key.pem), proof, NAME)).toBe('sha256');
  });

  test('accepts a pure Ed25519 proof over the raw name bytes', () => {
    const key = makeKey('ed25519');
    const proof = sign(null, Buffer.from(NAME), key.privateKey);
    expect(proof).toHaveLength(64);
    expect(verifyProof(parsePublicKey(key.pem), proof, NAME)).toBe('none');
  });

  test('signs the UTF-8 bytes of a non-ASCII name', () => {
    const key = makeKey('p256');
    const name = 'zoë@exämple.com';
    expect(verifyProof(parsePublicKey(key.pem), proofFor(key, name), name)).toBe('sha256');
    expectInvalidSignature(key, proofFor(key, name), 'zoe@example.com');
  });
});

describe('verifyProof refuses a proof that does not prove possession (invalid_signature)', () => {
  const kinds: KeyKind[] = ['p256', 'p384', 'p521', 'rsa2048', 'ed25519'];

  test.each(kinds)('refuses a %s proof over another name', (kind) => {
    const key = makeKey(kind);
    expectInvalidSignature(key, proofFor(key, 'mallory@example.com'));
  });

  test('refuses a proof over the name with a trailing newline', () => {
    const key = makeKey('p256');
    expectInvalidSignature(key, proofFor(key, `${NAME}\n`));
  });

  test.each(kinds)('refuses a %s proof made by another key of the same kind', (kind) => {
    const key = makeKey(kind);
    // The helper caches RSA keys per size, so a second RSA-2048 key is generated here.
    const other: TestKey =
      kind === 'rsa2048'
        ? { kind, ...generateKeyPairSync('rsa', { modulusLength: 2048 }), pem: '' }
        : makeKey(kind);
    expect(other.publicKey.equals(key.publicKey)).toBe(false);
    expectInvalidSignature(key, proofFor(other, NAME));
  });

  test('refuses a P-521 proof made with SHA-256 (Fulcio TestAPIWithInvalidPublicKey)', () => {
    const key = makeKey('p521');
    const proof = proofFor(key, NAME, 'sha256');
    // The proof is a genuine signature, only over the wrong digest.
    expect(
      verify('sha256', Buffer.from(NAME), { key: key.publicKey, dsaEncoding: 'der' }, proof),
    ).toBe(true);
    expectInvalidSignature(key, proof);
  });

  test('refuses a P-384 proof made with SHA-256 (the pre-v1.7 Fulcio hash)', () => {
    const key = makeKey('p384');
    expectInvalidSignature(key, proofFor(key, NAME, 'sha256'));
  });

  test('refuses a P-256 proof made with SHA-512', () => {
    const key = makeKey('p256');
    expectInvalidSignature(key, proofFor(key, NAME, 'sha512'));
  });

  test('refuses an RSA proof made with SHA-512', () => {
    const key = makeKey('rsa2048');
    expectInvalidSignature(key, proofFor(key, NAME, 'sha512'));
  });

  test('refuses an RSA-PSS proof', () => {
    const key = makeKey('rsa2048');
    const proof = sign('sha256', Buffer.from(NAME), {
      key: key.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
    });
    expectInvalidSignature(key, proof);
  });

  test.each<KeyKind>(['p256', 'p384', 'p521'])(
    'refuses a raw IEEE P1363 (r||s) %s signature',
    (kind) => {
      const key = makeKey(kind);
      const hash = { p256: 'sha256', p384: 'sha384', p521: 'sha512' }[kind as 'p256'];
      const raw = sign(hash, Buffer.from(NAME), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
      // The same signature is good in DER form: only the encoding is wrong.
      expect(
        verify(hash, Buffer.from(NAME), { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, raw),
      ).toBe(true);
      expectInvalidSignature(key, raw);
    },
  );

  test.each(kinds)('refuses an empty %s proof', (kind) => {
    expectInvalidSignature(makeKey(kind), new Uint8Array(0));
  });

  test('refuses a proof with a flipped bit', () => {
    const key = makeKey('ed25519');
    const proof = proofFor(key, NAME);
    proof[10] = proof[10]! ^ 0x01;
    expectInvalidSignature(key, proof);
  });

  test('refuses a DER ECDSA proof with trailing bytes', () => {
    const key = makeKey('p256');
    const proof = Buffer.concat([proofFor(key, NAME), Buffer.from([0x00])]);
    expectInvalidSignature(key, proof);
  });
});
