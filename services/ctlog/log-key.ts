import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KeySigner, type CaSigner } from '../common/signer/signer';
import { sha256 } from './merkle';
import { TlsWriter } from './tls';

/**
 * The log's key: ECDSA P-256 with SHA-256 (RFC 6962 §2.1.4), behind the signer interface
 * the CA uses, so a PKCS#11 signer serves the log as well. The log ID is SHA-256 of the
 * DER SPKI.
 */

export class LogKeyError extends Error {}

export interface LogKey {
  readonly signer: CaSigner;
  readonly spki: Buffer;
  readonly logId: Buffer;
}

export function logKeyFromSigner(signer: CaSigner): LogKey {
  const pub = signer.publicKey;
  if (pub.asymmetricKeyType !== 'ec' || pub.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new LogKeyError('the log key must be ECDSA P-256');
  if (signer.hash !== 'sha256') throw new LogKeyError('the log key must sign with SHA-256');
  const spki = pub.export({ type: 'spki', format: 'der' });
  return { signer, spki, logId: sha256(spki) };
}

function fromPrivateKey(key: KeyObject): LogKey {
  return logKeyFromSigner(new KeySigner(key).withChain([]));
}

/** A PKCS#8 PEM key file, optionally encrypted (password from a file). */
export function loadLogKey(path: string, passwordFile?: string): LogKey {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LogKeyError(
      `cannot read the log key ${path}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  let passphrase: string | undefined;
  if (passwordFile) {
    try {
      passphrase = readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new LogKeyError(
        `cannot read the log key password file: ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  }
  if (pem.includes('ENCRYPTED') && passphrase === undefined)
    throw new LogKeyError('the log key is encrypted: set MAYFLY_CTLOG_KEY_PASSWORD_FILE');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem', ...(passphrase ? { passphrase } : {}) });
  } catch {
    throw new LogKeyError('the log key is not a usable PKCS#8 PEM private key');
  }
  return fromPrivateKey(key);
}

/** A development key as PKCS#8 DER, kept in the log's storage so a restart keeps the log ID. */
export function generateDevKeyDer(): Buffer {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return privateKey.export({ type: 'pkcs8', format: 'der' });
}

export function logKeyFromDer(der: Buffer): LogKey {
  return fromPrivateKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
}

/** RFC 5246 DigitallySigned with SHA-256 (4) and ECDSA (3). */
export async function digitallySign(key: LogKey, data: Buffer): Promise<Buffer> {
  const sig = await key.signer.sign(data);
  return new TlsWriter().u8(4).u8(3).vector(sig, 2).finish();
}
