import { CaError } from '../common/errors';
import type { KeyAlgorithm } from './public-key';

/**
 * The allow-list of key and hash pairs (Fulcio's --client-signing-algorithms). Names are
 * Fulcio's so configs carry over.
 */

export type Hash = 'sha256' | 'sha384' | 'sha512' | 'none';

export const DEFAULT_HASH: Readonly<Record<string, Hash>> = {
  'P-256': 'sha256',
  'P-384': 'sha384',
  'P-521': 'sha512',
};

/** The hash a proof of possession uses for this key (sigstore's default per key type). */
export function proofHash(algorithm: KeyAlgorithm): Hash {
  switch (algorithm.kind) {
    case 'ecdsa':
      return DEFAULT_HASH[algorithm.curve] ?? 'sha256';
    case 'rsa':
      return 'sha256';
    case 'ed25519':
      return 'none';
  }
}

export function algorithmName(algorithm: KeyAlgorithm, hash: Hash): string {
  switch (algorithm.kind) {
    case 'ecdsa': {
      const curve = { 'P-256': 'nistp256', 'P-384': 'nistp384', 'P-521': 'nistp521' }[
        algorithm.curve
      ];
      return `ecdsa-sha2-${hash.slice(3)}-${curve}`;
    }
    case 'rsa':
      return `rsa-sign-pkcs1-${algorithm.bits}-${hash}`;
    case 'ed25519':
      return hash === 'none' ? 'ed25519' : `ed25519-ph`;
  }
}

/** Go's names, so the passthrough message matches Fulcio's `%T, %s` formatting. */
function goKeyType(algorithm: KeyAlgorithm): string {
  return { ecdsa: '*ecdsa.PublicKey', rsa: '*rsa.PublicKey', ed25519: 'ed25519.PublicKey' }[
    algorithm.kind
  ];
}

function goHashName(hash: Hash): string {
  return { sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512', none: 'unknown hash value 0' }[
    hash
  ];
}

export class AlgorithmPolicy {
  private readonly allowed: ReadonlySet<string>;
  constructor(allowed: readonly string[]) {
    this.allowed = new Set(allowed);
  }

  assertPermitted(algorithm: KeyAlgorithm, hash: Hash): void {
    if (this.allowed.has(algorithmName(algorithm, hash))) return;
    const message = `signing algorithm not permitted: ${goKeyType(algorithm)}, ${goHashName(hash)}`;
    throw new CaError('algorithm_not_permitted', message, { clientMessage: message });
  }
}
