import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';

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

  /**
   * The key and chain as plain data, for one purpose only: a cluster primary hands the
   * ephemeral CA it made to its worker processes over their IPC channel, so that every
   * worker signs with the same CA. Never logged, never written to disk.
   */
  exportForWorkers(chain: readonly Uint8Array[]): EphemeralCaTransfer {
    return {
      key: this.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      chain: chain.map((der) => Buffer.from(der).toString('base64')),
    };
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

/**
 * What the CA signs with right now, and the other chains it publishes. A state is one
 * immutable value, replaced whole when the CA files change, so a request that took it keeps
 * a key and a chain that belong together until it is done.
 */
export interface SigningState {
  readonly signer: CaSigner;
  /**
   * Chains published in the trust bundle after the signer's own, without signing with
   * them: the next CA before a rotation, the retired one after it.
   */
  readonly publishedChains: readonly (readonly Uint8Array[])[];
}

/** Where the CA takes its current signing state from, once per certificate. */
export interface SignerSource {
  current(): SigningState;
}

export function isSignerSource(value: CaSigner | SignerSource): value is SignerSource {
  return typeof (value as Partial<SignerSource>).current === 'function';
}

/** A source that never changes (the ephemeral CA, tests). */
export function fixedSource(
  signer: CaSigner,
  publishedChains: readonly (readonly Uint8Array[])[] = [],
): SignerSource {
  const state: SigningState = { signer, publishedChains };
  return { current: () => state };
}

/** An ephemeral CA as the cluster primary sends it to a worker. */
export interface EphemeralCaTransfer {
  /** PKCS#8 PEM. */
  readonly key: string;
  /** Base64 DER certificates, issuing certificate first. */
  readonly chain: readonly string[];
}

export function signerFromTransfer(transfer: EphemeralCaTransfer): CaSigner {
  const signer = new KeySigner(createPrivateKey({ key: transfer.key, format: 'pem' }));
  return signer.withChain(transfer.chain.map((b64) => new Uint8Array(Buffer.from(b64, 'base64'))));
}
