import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../common/clock';
import { decodePemBlocks } from '../common/encoding';
import { generateEphemeralKey, KeySigner, type CaSigner } from '../common/signer/signer';
import { createEphemeralTsaChain, TsaChainError, validateTsaChain } from './certificates';
import type { TsaConfig } from './config';

/**
 * The TSA's key custody, behind the signer interface the CA uses (services/common/signer),
 * so PKCS#11 can serve both: `ephemeral` (a root and a TSA leaf made at start, for
 * development) or `file` (a PEM chain, TSA certificate first, and a PKCS#8 key, optionally
 * encrypted). Whatever the source, the chain must pass the TSA profile or the TSA does not
 * start.
 */

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TsaChainError(
      `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

function loadKey(pem: string, password: string | undefined): KeyObject {
  const encrypted = pem.includes('ENCRYPTED');
  if (encrypted && password === undefined) {
    throw new TsaChainError('the TSA key is encrypted: set MAYFLY_TSA_KEY_PASSWORD_FILE');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: pem,
      format: 'pem',
      ...(password === undefined ? {} : { passphrase: password }),
    });
  } catch {
    // OpenSSL's message may echo key details; keep ours plain.
    throw new TsaChainError(
      encrypted
        ? 'the TSA key could not be decrypted with the given password'
        : 'the TSA key is not a PKCS#8 PEM private key',
    );
  }
  const details = key.asymmetricKeyDetails ?? {};
  const ok =
    (key.asymmetricKeyType === 'ec' &&
      ['prime256v1', 'secp384r1', 'secp521r1'].includes(details.namedCurve ?? '')) ||
    (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048);
  if (!ok)
    throw new TsaChainError(
      'the TSA key must be ECDSA P-256/P-384/P-521 or RSA of at least 2048 bits',
    );
  return key;
}

export interface TsaFiles {
  readonly cert: string;
  readonly key: string;
  readonly keyPasswordFile?: string | undefined;
}

export function loadFileTsaSigner(files: TsaFiles, clock: Clock): CaSigner {
  const chain = decodePemBlocks(read(files.cert, 'TSA certificate chain'))
    .filter((b) => b.type === 'CERTIFICATE')
    .map((b) => new Uint8Array(b.der));
  const password = files.keyPasswordFile
    ? read(files.keyPasswordFile, 'TSA key password file').replace(/\r?\n$/, '')
    : undefined;
  const signer = new KeySigner(loadKey(read(files.key, 'TSA key'), password)).withChain(chain);
  validateTsaChain(signer.chain, signer.publicKey, clock);
  return signer;
}

export async function createTsaSigner(config: TsaConfig, clock: Clock): Promise<CaSigner> {
  if (config.signer === 'file') {
    return loadFileTsaSigner(
      { cert: config.cert!, key: config.key!, keyPasswordFile: config.keyPasswordFile },
      clock,
    );
  }
  const signer = await createEphemeralTsaChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    clock,
  );
  validateTsaChain(signer.chain, signer.publicKey, clock);
  return signer;
}
