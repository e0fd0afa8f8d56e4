import { CaError } from '../../../../services/ca/common/errors';
import { SIGNING_ALGORITHMS } from '../../../../services/ca/config/schema';
import {
  AlgorithmPolicy,
  algorithmName,
  proofHash,
  type Hash,
} from '../../../../services/ca/pop/algorithms';
import type { KeyAlgorithm } from '../../../../services/ca/pop/public-key';

const P256: KeyAlgorithm = { kind: 'ecdsa', curve: 'P-256' };
const P384: KeyAlgorithm = { kind: 'ecdsa', curve: 'P-384' };
const P521: KeyAlgorithm = { kind: 'ecdsa', curve: 'P-521' };
const RSA2048: KeyAlgorithm = { kind: 'rsa', bits: 2048 };
const RSA3072: KeyAlgorithm = { kind: 'rsa', bits: 3072 };
const RSA4096: KeyAlgorithm = { kind: 'rsa', bits: 4096 };
const ED25519: KeyAlgorithm = { kind: 'ed25519' };

function refusal(policy: AlgorithmPolicy, algorithm: KeyAlgorithm, hash: Hash): CaError {
  try {
    policy.assertPermitted(algorithm, hash);
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    return err as CaError;
  }
  throw new Error(`expected ${algorithmName(algorithm, hash)} to be refused`);
}

function expectRefusedWith(
  policy: AlgorithmPolicy,
  algorithm: KeyAlgorithm,
  hash: Hash,
  message: string,
): void {
  const error = refusal(policy, algorithm, hash);
  expect(error.code).toBe('algorithm_not_permitted');
  expect(error.clientMessage).toBe(message);
  expect(error.mapping.httpStatus).toBe(400);
  expect(error.mapping.grpcCode).toBe(3);
}

describe('the default allow-list (Fulcio’s --client-signing-algorithms default)', () => {
  const defaults = new AlgorithmPolicy([...SIGNING_ALGORITHMS]);

  test('is exactly Fulcio’s seven defaults', () => {
    expect([...SIGNING_ALGORITHMS].sort()).toEqual(
      [
        'ecdsa-sha2-256-nistp256',
        'ecdsa-sha2-384-nistp384',
        'ecdsa-sha2-512-nistp521',
        'rsa-sign-pkcs1-2048-sha256',
        'rsa-sign-pkcs1-3072-sha256',
        'rsa-sign-pkcs1-4096-sha256',
        'ed25519',
      ].sort(),
    );
  });

  test.each<[string, KeyAlgorithm]>([
    ['P-256', P256],
    ['P-384', P384],
    ['P-521', P521],
    ['RSA-2048', RSA2048],
    ['RSA-3072', RSA3072],
    ['RSA-4096', RSA4096],
    ['Ed25519', ED25519],
  ])('permits a %s key with its proof-of-possession hash', (_name, algorithm) => {
    expect(() => defaults.assertPermitted(algorithm, proofHash(algorithm))).not.toThrow();
  });

  test('refuses a P-256 CSR signed with SHA-384 (only the curve’s own hash is a default)', () => {
    expectRefusedWith(
      defaults,
      P256,
      'sha384',
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384',
    );
  });

  test('refuses a P-384 key with SHA-256 (ecdsa-sha2-256-nistp384 is not a default)', () => {
    expectRefusedWith(
      defaults,
      P384,
      'sha256',
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-256',
    );
  });

  test('refuses RSA with SHA-512', () => {
    expectRefusedWith(
      defaults,
      RSA2048,
      'sha512',
      'signing algorithm not permitted: *rsa.PublicKey, SHA-512',
    );
  });

  test('refuses pre-hashed Ed25519 (ed25519-ph is not a default)', () => {
    expectRefusedWith(
      defaults,
      ED25519,
      'sha512',
      'signing algorithm not permitted: ed25519.PublicKey, SHA-512',
    );
  });
});

describe('a policy that allows only P-256 with SHA-256 (Fulcio’s test registry, minus RSA)', () => {
  const p256Only = new AlgorithmPolicy(['ecdsa-sha2-256-nistp256']);

  test('permits P-256 with SHA-256', () => {
    expect(() => p256Only.assertPermitted(P256, 'sha256')).not.toThrow();
  });

  test('refuses P-521 with SHA-512 with Fulcio’s exact message', () => {
    expectRefusedWith(
      p256Only,
      P521,
      'sha512',
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-512',
    );
  });

  test('refuses P-384 with SHA-384 naming the Go key type and hash', () => {
    expectRefusedWith(
      p256Only,
      P384,
      'sha384',
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384',
    );
  });

  test('refuses RSA-2048 with SHA-256 as *rsa.PublicKey', () => {
    expectRefusedWith(
      p256Only,
      RSA2048,
      'sha256',
      'signing algorithm not permitted: *rsa.PublicKey, SHA-256',
    );
  });

  test('refuses Ed25519 as ed25519.PublicKey with Go’s name for the zero hash', () => {
    // Fulcio formats `%T, %s` with crypto.Hash(0) for pure Ed25519.
    expectRefusedWith(
      p256Only,
      ED25519,
      'none',
      'signing algorithm not permitted: ed25519.PublicKey, unknown hash value 0',
    );
  });
});

describe('policy entries are matched by key size and curve, not by kind alone', () => {
  test('an RSA-2048-only policy refuses RSA-4096', () => {
    const policy = new AlgorithmPolicy(['rsa-sign-pkcs1-2048-sha256']);
    expect(() => policy.assertPermitted(RSA2048, 'sha256')).not.toThrow();
    expectRefusedWith(
      policy,
      RSA4096,
      'sha256',
      'signing algorithm not permitted: *rsa.PublicKey, SHA-256',
    );
  });

  test('a P-384-only policy refuses P-256', () => {
    const policy = new AlgorithmPolicy(['ecdsa-sha2-384-nistp384']);
    expect(() => policy.assertPermitted(P384, 'sha384')).not.toThrow();
    expect(refusal(policy, P256, 'sha256').code).toBe('algorithm_not_permitted');
  });

  test('an empty policy refuses everything', () => {
    const policy = new AlgorithmPolicy([]);
    for (const algorithm of [P256, P384, P521, RSA2048, ED25519]) {
      expect(refusal(policy, algorithm, proofHash(algorithm)).code).toBe('algorithm_not_permitted');
    }
  });
});

describe('names and hashes follow sigstore’s registry', () => {
  test.each<[KeyAlgorithm, Hash, string]>([
    [P256, 'sha256', 'ecdsa-sha2-256-nistp256'],
    [P384, 'sha384', 'ecdsa-sha2-384-nistp384'],
    [P521, 'sha512', 'ecdsa-sha2-512-nistp521'],
    [P384, 'sha256', 'ecdsa-sha2-256-nistp384'],
    [RSA3072, 'sha256', 'rsa-sign-pkcs1-3072-sha256'],
    [ED25519, 'none', 'ed25519'],
    [ED25519, 'sha512', 'ed25519-ph'],
  ])('names %j with %s as %s', (algorithm, hash, name) => {
    expect(algorithmName(algorithm, hash)).toBe(name);
  });

  test.each<[KeyAlgorithm, Hash]>([
    [P256, 'sha256'],
    [P384, 'sha384'],
    [P521, 'sha512'],
    [RSA2048, 'sha256'],
    [RSA4096, 'sha256'],
    [ED25519, 'none'],
  ])('the proof-of-possession hash for %j is %s', (algorithm, hash) => {
    expect(proofHash(algorithm)).toBe(hash);
  });
});
