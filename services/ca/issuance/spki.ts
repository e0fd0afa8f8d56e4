import { createHash } from 'node:crypto';
import {
  DerError,
  TAG,
  children,
  contentOf,
  expectTlv,
  oid,
  readTlv,
  sameBytes,
} from './der-codec';

/**
 * A SubjectPublicKeyInfo read with the minimal DER reader: the CA's own structural check of
 * the key it is asked to certify (pop/ has already parsed it with OpenSSL and checked the
 * proof of possession with it), and the key bits the SKI is computed from.
 */

export type SpkiKind =
  | { readonly kind: 'ecdsa'; readonly curve: 'P-256' | 'P-384' | 'P-521' }
  | { readonly kind: 'rsa'; readonly bits: number; readonly exponent: number }
  | { readonly kind: 'ed25519' };

export interface SpkiInfo {
  readonly key: SpkiKind;
  /** The subjectPublicKey BIT STRING's bits, without the unused-bits octet. */
  readonly keyBits: Uint8Array;
}

const EC_PUBLIC_KEY = oid('1.2.840.10045.2.1');
const RSA_ENCRYPTION = oid('1.2.840.113549.1.1.1');
const ED25519 = oid('1.3.101.112');
const NULL = Buffer.from([0x05, 0x00]);
const CURVES: readonly { oid: Buffer; curve: 'P-256' | 'P-384' | 'P-521'; size: number }[] = [
  { oid: oid('1.2.840.10045.3.1.7'), curve: 'P-256', size: 32 },
  { oid: oid('1.3.132.0.34'), curve: 'P-384', size: 48 },
  { oid: oid('1.3.132.0.35'), curve: 'P-521', size: 66 },
];

/** Unsigned big-endian INTEGER content without the sign octet; refuses negatives. */
function positiveInteger(content: Uint8Array): Uint8Array {
  if (content.length === 0 || (content[0]! & 0x80) !== 0) throw new DerError('not positive');
  if (content.length > 1 && content[0] === 0 && (content[1]! & 0x80) === 0)
    throw new DerError('non-minimal INTEGER');
  return content[0] === 0 ? content.subarray(1) : content;
}

function bitLength(magnitude: Uint8Array): number {
  if (magnitude.length === 0) return 0;
  return (magnitude.length - 1) * 8 + (32 - Math.clz32(magnitude[0]!));
}

/** Reads an SPKI; throws DerError for anything malformed or of an unsupported type. */
export function readSpki(spki: Uint8Array): SpkiInfo {
  const outer = expectTlv(spki, 0, TAG.sequence);
  if (outer.end !== spki.length) throw new DerError('trailing bytes after SPKI');
  const [algorithm, subjectKey, extra] = children(spki, outer);
  if (!algorithm || !subjectKey || extra) throw new DerError('SPKI is not two fields');
  if (algorithm.tag !== TAG.sequence || subjectKey.tag !== TAG.bitString)
    throw new DerError('SPKI fields have the wrong types');
  const bits = contentOf(spki, subjectKey);
  if (bits.length < 2 || bits[0] !== 0) throw new DerError('subjectPublicKey has unused bits');
  const keyBits = bits.subarray(1);
  const [algOid, params, more] = children(spki, algorithm);
  if (!algOid || algOid.tag !== TAG.oid || more) throw new DerError('malformed algorithm');
  const algBytes = spki.subarray(algOid.start, algOid.end);
  const paramBytes = params ? spki.subarray(params.start, params.end) : undefined;

  if (sameBytes(algBytes, EC_PUBLIC_KEY)) {
    const curve = paramBytes && CURVES.find((c) => sameBytes(c.oid, paramBytes));
    if (!curve) throw new DerError('EC key on an unsupported curve');
    if (keyBits.length !== 1 + 2 * curve.size || keyBits[0] !== 0x04)
      throw new DerError('EC point is not uncompressed for its curve');
    return { key: { kind: 'ecdsa', curve: curve.curve }, keyBits };
  }
  if (sameBytes(algBytes, RSA_ENCRYPTION)) {
    if (!paramBytes || !sameBytes(paramBytes, NULL)) throw new DerError('RSA parameters not NULL');
    const rsaKey = readTlv(keyBits, 0);
    if (rsaKey.tag !== TAG.sequence || rsaKey.end !== keyBits.length)
      throw new DerError('malformed RSAPublicKey');
    const [modulus, exponent, rest] = children(keyBits, rsaKey);
    if (
      !modulus ||
      !exponent ||
      rest ||
      modulus.tag !== TAG.integer ||
      exponent.tag !== TAG.integer
    )
      throw new DerError('malformed RSAPublicKey');
    const e = positiveInteger(contentOf(keyBits, exponent));
    if (e.length > 4) throw new DerError('RSA exponent too large');
    let exponentValue = 0;
    for (const b of e) exponentValue = exponentValue * 256 + b;
    return {
      key: {
        kind: 'rsa',
        bits: bitLength(positiveInteger(contentOf(keyBits, modulus))),
        exponent: exponentValue,
      },
      keyBits,
    };
  }
  if (sameBytes(algBytes, ED25519)) {
    if (params) throw new DerError('Ed25519 takes no parameters');
    if (keyBits.length !== 32) throw new DerError('Ed25519 key is not 32 bytes');
    return { key: { kind: 'ed25519' }, keyBits };
  }
  throw new DerError('unsupported key algorithm');
}

/** The key identifier of a leaf (RFC 5280 §4.2.1.2 method 1: SHA-1 of the key bits). */
export function leafKeyId(spki: SpkiInfo): Uint8Array {
  return createHash('sha1').update(spki.keyBits).digest();
}
