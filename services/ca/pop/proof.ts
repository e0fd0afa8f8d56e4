import { constants, verify } from 'node:crypto';
import { CaError } from '../common/errors';
import { proofHash, type Hash } from './algorithms';
import type { SubjectPublicKey } from './public-key';

/**
 * Checks the proof of possession: a signature by the submitted key over the UTF-8 bytes of
 * the principal's name. ECDSA signatures are DER, RSA is PKCS#1 v1.5 with SHA-256 and
 * Ed25519 is pure (no prehash). Returns the hash used, for the allow-list.
 */
export function verifyProof(key: SubjectPublicKey, proof: Uint8Array, name: string): Hash {
  const hash = proofHash(key.algorithm);
  const message = Buffer.from(name, 'utf8');
  let ok = false;
  try {
    switch (key.algorithm.kind) {
      case 'ecdsa':
        ok = verify(hash, message, { key: key.key, dsaEncoding: 'der' }, proof);
        break;
      case 'rsa':
        ok = verify(hash, message, { key: key.key, padding: constants.RSA_PKCS1_PADDING }, proof);
        break;
      case 'ed25519':
        ok = verify(null, message, key.key, proof);
        break;
    }
  } catch {
    ok = false;
  }
  if (!ok) throw new CaError('invalid_signature', 'proof of possession does not verify');
  return hash;
}
