import { X509Certificate, createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { hashForKey, type CaSigner } from './signer';

/**
 * The `kms` signer interface: a key store reached over its own API rather than PKCS#11
 * (AWS KMS `Sign` with `MessageType: DIGEST`, Google Cloud KMS `AsymmetricSign` with a
 * digest, Azure Key Vault `sign`). An adapter implements the two calls below for one key;
 * `kmsSigner` makes it the CA's signer. The private key never leaves the store: mayfly
 * hashes the TBS itself and sends only the digest.
 *
 * No cloud adapter ships: none can be tested honestly without the network, and the PKCS#11
 * libraries of Google Cloud KMS and AWS CloudHSM already reach those stores (README, "Keys
 * in an HSM").
 */
export interface KmsKey {
  /** The key's public half as DER SubjectPublicKeyInfo (AWS `GetPublicKey`, GCP `GetPublicKey` PEM). */
  publicKey(): Promise<Uint8Array>;
  /**
   * A signature over a digest the caller made: DER Ecdsa-Sig-Value for EC keys (what AWS
   * and GCP return), PKCS#1 v1.5 for RSA keys.
   */
  signDigest(digest: Uint8Array, hash: 'sha256' | 'sha384' | 'sha512'): Promise<Uint8Array>;
}

export class KmsKeyMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KmsKeyMismatchError';
  }
}

/**
 * The CA signer over a KMS key: the key must be the issuing certificate's (compared as
 * SPKI), and it must sign a fresh challenge that verifies with the certificate, before the
 * CA starts. Timeouts and the check of every leaf are the CA's, as for every signer.
 */
export async function kmsSigner(key: KmsKey, chain: readonly Uint8Array[]): Promise<CaSigner> {
  const issuing = new X509Certificate(chain[0]!);
  const certKey = issuing.publicKey;
  const kmsKey = createPublicKey({
    key: Buffer.from(await key.publicKey()),
    format: 'der',
    type: 'spki',
  });
  if (
    !kmsKey
      .export({ type: 'spki', format: 'der' })
      .equals(certKey.export({ type: 'spki', format: 'der' }))
  )
    throw new KmsKeyMismatchError(
      'the KMS key is not the issuing certificate key: public keys are not equal',
    );
  const hash = hashForKey(certKey);
  if (hash === null) throw new KmsKeyMismatchError('Ed25519 keys cannot sign a digest');
  const sign = async (message: Uint8Array) =>
    key.signDigest(new Uint8Array(createHash(hash).update(message).digest()), hash);
  const challenge = randomBytes(32);
  if (!verify(hash, challenge, { key: certKey, dsaEncoding: 'der' }, await sign(challenge)))
    throw new KmsKeyMismatchError(
      'the KMS key signed a challenge that does not verify with the issuing certificate',
    );
  return { chain, publicKey: certKey, hash, sign };
}
