import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

/**
 * Key custody: the only code that holds a CA private key. A signer signs DER TBS bytes and
 * knows its chain; it never sees a request or an identity.
 */
export type SignatureHash = 'sha256' | 'sha384' | 'sha512' | null;

export interface CaSigner {
  /** DER certificates, issuing certificate first, root last. */
  readonly chain: readonly Uint8Array[];
  readonly publicKey: KeyObject;
  /** The hash this key signs with (null for Ed25519). */
  readonly hash: SignatureHash;
  /** DER signature (ECDSA: Ecdsa-Sig-Value) over DER TBS bytes. */
  sign(tbs: Uint8Array): Promise<Uint8Array>;
}

/** Fulcio's choice: the hash follows the CA key's curve. */
export function hashForKey(key: KeyObject): SignatureHash {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return 'sha384';
      if (curve === 'secp521r1') return 'sha512';
      return 'sha256';
    }
    case 'ed25519':
      return null;
    default:
      return 'sha256';
  }
}

/** A signer over an in-process private key (ephemeral or loaded from a file). */
export class KeySigner {
  readonly publicKey: KeyObject;
  readonly hash: SignatureHash;

  constructor(private readonly privateKey: KeyObject) {
    this.publicKey = createPublicKey(privateKey);
    this.hash = hashForKey(privateKey);
  }

  sign(tbs: Uint8Array): Promise<Uint8Array> {
    const signature = sign(this.hash, tbs, { key: this.privateKey, dsaEncoding: 'der' });
    return Promise.resolve(new Uint8Array(signature));
  }

  /** Binds this key to its certificate chain once the chain exists. */
  withChain(chain: readonly Uint8Array[]): CaSigner {
    return {
      chain,
      publicKey: this.publicKey,
      hash: this.hash,
      sign: (tbs) => this.sign(tbs),
    };
  }
}

/** A fresh P-256 key, for the ephemeral CA (Fulcio's ephemeralca uses P-256 too). */
export function generateEphemeralKey(): KeySigner {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return new KeySigner(privateKey);
}
