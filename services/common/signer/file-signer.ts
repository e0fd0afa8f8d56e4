import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../clock';
import { decodePemBlocks } from '../encoding';
import { KeySigner, type CaSigner } from './signer';

/**
 * The `file` CA: a PEM chain (issuing certificate first) and a PKCS#8 key, optionally
 * encrypted with a password read from a file. The chain and key are checked at load so a
 * wrong pair fails the start, not the first request.
 */

const CODE_SIGNING_EKU = '1.3.6.1.5.5.7.3.3';

export class CaLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CaLoadError';
  }
}

export interface FileCaPaths {
  readonly cert: string;
  readonly key: string;
  readonly keyPasswordFile?: string | undefined;
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CaLoadError(
      `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

function readPassword(passwordFile: string | undefined): string | undefined {
  return passwordFile
    ? read(passwordFile, 'CA key password file').replace(/\r?\n$/, '')
    : undefined;
}

function loadKey(keyPem: string, passphrase: string | undefined): KeyObject {
  const encrypted = keyPem.includes('ENCRYPTED');
  if (encrypted && passphrase === undefined) {
    throw new CaLoadError('the CA key is encrypted: set MAYFLY_CA_KEY_PASSWORD_FILE');
  }
  try {
    return createPrivateKey({
      key: keyPem,
      format: 'pem',
      ...(passphrase === undefined ? {} : { passphrase }),
    });
  } catch {
    // The OpenSSL message can echo key details; keep ours plain.
    throw new CaLoadError(
      encrypted
        ? 'the CA key could not be decrypted with the given password'
        : 'the CA key is not a PKCS#8 PEM private key',
    );
  }
}

export function parseChain(pem: string): X509Certificate[] {
  const blocks = decodePemBlocks(pem).filter((b) => b.type === 'CERTIFICATE');
  if (blocks.length === 0)
    throw new CaLoadError('certificate chain must contain at least one certificate');
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block.der);
    } catch {
      throw new CaLoadError(`certificate ${i + 1} of the chain cannot be parsed`);
    }
  });
}

/**
 * Fulcio's VerifyCertChain: every link verifies, the last certificate is a self-signed root,
 * the issuing certificate is a CA, carries EKU codeSigning when an intermediate is used, is
 * currently valid, and its public key matches the private key.
 */
export function validateChain(
  chain: readonly X509Certificate[],
  key: KeyObject,
  clock: Clock,
): void {
  validateChainShape(chain, clock);
  if (!chain[0]!.checkPrivateKey(key)) throw new CaLoadError('public keys are not equal');
}

/**
 * validateChain without the private key (a key in an HSM is proven by a signature instead):
 * links, CA flags, dates, EKU codeSigning on an intermediate, and the key policy.
 */
export function validateChainShape(chain: readonly X509Certificate[], clock: Clock): void {
  const now = clock.now().getTime();
  chain.forEach((cert, i) => {
    const parent = chain[i + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
      throw new CaLoadError(`certificate ${i + 1} of the chain is not signed by the next one`);
    }
    if (!cert.ca) throw new CaLoadError(`certificate ${i + 1} of the chain is not a CA`);
    if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now) {
      throw new CaLoadError(
        `certificate ${i + 1} of the chain is not valid now (${cert.validFrom} – ${cert.validTo})`,
      );
    }
  });
  const issuing = chain[0]!;
  const eku = issuing.keyUsage;
  if (chain.length > 1 && !(eku ?? []).includes(CODE_SIGNING_EKU)) {
    throw new CaLoadError(
      'certificate must have extended key usage code signing set to sign code signing certificates',
    );
  }
  assertCaKeyAcceptable(issuing.publicKey);
}

/** The CA key itself must meet the policy clients are held to (goodkey, Fulcio's check). */
export function assertCaKeyAcceptable(key: KeyObject): void {
  const details = key.asymmetricKeyDetails ?? {};
  const ok =
    (key.asymmetricKeyType === 'ec' &&
      ['prime256v1', 'secp384r1', 'secp521r1'].includes(details.namedCurve ?? '')) ||
    (key.asymmetricKeyType === 'rsa' &&
      (details.modulusLength ?? 0) >= 2048 &&
      details.publicExponent === 65537n) ||
    key.asymmetricKeyType === 'ed25519';
  if (!ok)
    throw new CaLoadError(
      `the CA key type is not allowed (${String(key.asymmetricKeyType)} ${details.namedCurve ?? details.modulusLength ?? ''})`,
    );
}

/** The file CA's contents, already read (the reloader reads each file once per attempt). */
export interface FileCaContents {
  readonly certPem: string;
  readonly keyPem: string;
  /** The key's password, without the file's trailing newline. */
  readonly password?: string | undefined;
}

export function signerFromContents(contents: FileCaContents, clock: Clock): CaSigner {
  const chain = parseChain(contents.certPem);
  const key = loadKey(contents.keyPem, contents.password);
  if (key.type !== 'private') throw new CaLoadError('the CA key file does not hold a private key');
  assertCaKeyAcceptable(key);
  validateChain(chain, key, clock);
  return new KeySigner(key).withChain(chain.map((c) => new Uint8Array(c.raw)));
}

export function loadFileSigner(paths: FileCaPaths, clock: Clock): CaSigner {
  return signerFromContents(
    {
      certPem: read(paths.cert, 'CA certificate chain'),
      keyPem: read(paths.key, 'CA key'),
      password: readPassword(paths.keyPasswordFile),
    },
    clock,
  );
}

/**
 * A chain published in the trust bundle without signing with it (the next CA before a
 * rotation, the retired one after). It must be a real CA chain: every link verifies, every
 * certificate is a CA, the last one is a self-signed root. Its dates are not checked: the
 * next CA may not be valid yet, the retired one may have expired. An empty text is no chain.
 */
export function parsePublishedChain(pem: string, what: string): Uint8Array[] | undefined {
  if (pem.trim() === '') return undefined;
  let chain: X509Certificate[];
  try {
    chain = parseChain(pem);
  } catch (err) {
    throw new CaLoadError(`${what}: ${(err as Error).message}`);
  }
  chain.forEach((cert, i) => {
    const parent = chain[i + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
      throw new CaLoadError(`${what}: certificate ${i + 1} is not signed by the next one`);
    }
    if (!cert.ca) throw new CaLoadError(`${what}: certificate ${i + 1} is not a CA`);
  });
  return chain.map((c) => new Uint8Array(c.raw));
}
