import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { ecdsaRawToDer } from '../common/signer/pkcs11/pkcs11-signer';
import {
  closeSession,
  closeModule,
  findKeys,
  findSlot,
  generateKeyPair,
  openModule,
  openSession,
  readPublicKey,
  type Handle,
  type KeySpec,
  type Pkcs11,
} from '../common/signer/pkcs11/token';
import { hashForKey } from '../common/signer/signer';
import { keyIdentifierOf, type CertificateSigner } from '../common/x509/ca-certificate';

/**
 * Where the ceremony keeps CA keys: a PKCS#11 token (production: the key is generated in
 * the token and never leaves it) or a folder of PKCS#8 files (development only).
 */
export interface CeremonyKeys {
  /** Where the keys are, for the operator's notes. */
  readonly where: string;
  exists(label: string): boolean;
  /** Generates a key pair under `label`; refuses a label that is taken. */
  generate(label: string, spec: KeySpec): CertificateSigner;
  /** The signer for an existing key. */
  load(label: string): CertificateSigner;
  /** Removes a key this run generated (a ceremony that failed half-way leaves nothing). */
  destroy(label: string): void;
  close(): void;
}

export class CeremonyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CeremonyError';
  }
}

const alreadyThere = (label: string, where: string) =>
  new CeremonyError(
    `a key labelled ${JSON.stringify(label)} already exists in ${where}; refusing to overwrite it`,
  );

export interface TokenOptions {
  readonly module: string;
  readonly tokenLabel: string;
  readonly pin: string;
}

export class TokenKeys implements CeremonyKeys {
  readonly where: string;
  private readonly mod: Pkcs11;
  private readonly session: Handle;

  constructor(options: TokenOptions) {
    this.where = `token ${JSON.stringify(options.tokenLabel)}`;
    this.mod = openModule(options.module);
    try {
      const slot = findSlot(this.mod, options.tokenLabel);
      this.session = openSession(this.mod, slot, options.pin, true);
    } catch (err) {
      closeModule(this.mod);
      throw err;
    }
  }

  private handles(label: string, objectClass: number): Handle[] {
    return findKeys(this.mod, this.session, objectClass, { label });
  }

  exists(label: string): boolean {
    return (
      this.handles(label, pkcs11js.CKO_PRIVATE_KEY).length > 0 ||
      this.handles(label, pkcs11js.CKO_PUBLIC_KEY).length > 0
    );
  }

  generate(label: string, spec: KeySpec): CertificateSigner {
    if (this.exists(label)) throw alreadyThere(label, this.where);
    const pair = generateKeyPair(this.mod, this.session, spec, label, new Uint8Array([0]));
    const publicKey = readPublicKey(this.mod, this.session, pair.publicKey);
    // CKA_ID = the key identifier the certificate will carry (SKI), so that the CA finds
    // the key from its certificate alone (a rotation is then a change of files only).
    const id = Buffer.from(keyIdentifierOf(publicKey));
    for (const handle of [pair.privateKey, pair.publicKey])
      this.mod.C_SetAttributeValue(this.session, handle, [{ type: pkcs11js.CKA_ID, value: id }]);
    return this.signer(pair.privateKey, publicKey);
  }

  load(label: string): CertificateSigner {
    const priv = this.handles(label, pkcs11js.CKO_PRIVATE_KEY);
    const pub = this.handles(label, pkcs11js.CKO_PUBLIC_KEY);
    if (priv.length !== 1 || pub.length !== 1)
      throw new CeremonyError(
        `no single key pair labelled ${JSON.stringify(label)} in ${this.where}`,
      );
    return this.signer(priv[0]!, readPublicKey(this.mod, this.session, pub[0]!));
  }

  destroy(label: string): void {
    for (const objectClass of [pkcs11js.CKO_PRIVATE_KEY, pkcs11js.CKO_PUBLIC_KEY])
      for (const handle of this.handles(label, objectClass))
        this.mod.C_DestroyObject(this.session, handle);
  }

  private signer(privateKey: Handle, publicKey: KeyObject): CertificateSigner {
    const hash = hashForKey(publicKey) ?? 'sha256';
    const ec = publicKey.asymmetricKeyType === 'ec';
    const mechanism = ec
      ? pkcs11js.CKM_ECDSA
      : {
          sha256: pkcs11js.CKM_SHA256_RSA_PKCS,
          sha384: pkcs11js.CKM_SHA384_RSA_PKCS,
          sha512: pkcs11js.CKM_SHA512_RSA_PKCS,
        }[hash];
    return {
      publicKey,
      hash,
      sign: (tbs) => {
        // The token signs: a digest (ECDSA) or the TBS (RSA, hashed in the token).
        const input = ec ? createHash(hash).update(tbs).digest() : Buffer.from(tbs);
        this.mod.C_SignInit(this.session, { mechanism }, privateKey);
        const raw = this.mod.C_Sign(this.session, input, Buffer.alloc(1024));
        return Promise.resolve(ec ? ecdsaRawToDer(raw) : new Uint8Array(raw));
      },
    };
  }

  close(): void {
    closeSession(this.mod, this.session);
    closeModule(this.mod);
  }
}

/** Development only: keys as PKCS#8 PEM files (mode 0600) in a folder. */
export class FileKeys implements CeremonyKeys {
  readonly where: string;

  constructor(private readonly dir: string) {
    this.where = `folder ${dir}`;
  }

  keyFile(label: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(label))
      throw new CeremonyError(`key label ${JSON.stringify(label)} is not a file name`);
    return join(this.dir, `${label}.key.pem`);
  }

  exists(label: string): boolean {
    return existsSync(this.keyFile(label));
  }

  generate(label: string, spec: KeySpec): CertificateSigner {
    if (this.exists(label)) throw alreadyThere(label, this.where);
    const { privateKey } =
      spec.type === 'ec'
        ? generateKeyPairSync('ec', {
            namedCurve: spec.curve === 'P-256' ? 'prime256v1' : 'secp384r1',
          })
        : generateKeyPairSync('rsa', { modulusLength: spec.bits });
    writeFileSync(this.keyFile(label), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
      flag: 'wx',
    });
    return this.signer(privateKey);
  }

  load(label: string): CertificateSigner {
    if (!this.exists(label))
      throw new CeremonyError(`no key file for ${JSON.stringify(label)} in ${this.where}`);
    return this.signer(createPrivateKey(readFileSync(this.keyFile(label), 'utf8')));
  }

  destroy(label: string): void {
    rmSync(this.keyFile(label), { force: true });
  }

  private signer(privateKey: KeyObject): CertificateSigner {
    const hash = hashForKey(privateKey) ?? 'sha256';
    return {
      publicKey: createPublicKey(privateKey),
      hash,
      sign: (tbs) =>
        Promise.resolve(new Uint8Array(sign(hash, tbs, { key: privateKey, dsaEncoding: 'der' }))),
    };
  }

  close(): void {}
}
