import { KeyObject, createPublicKey, webcrypto, type JsonWebKey } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CaError } from '../common/errors';
import { decodePemBlocks, toArrayBuffer } from '../../common/encoding';

/**
 * Public keys submitted by clients. node:crypto (OpenSSL) parses and validates them: it
 * refuses EC points that are off the curve, which pkijs would accept. The key policy then
 * keeps only what Fulcio's goodkey allows.
 */

export type KeyAlgorithm =
  | { readonly kind: 'ecdsa'; readonly curve: 'P-256' | 'P-384' | 'P-521' }
  | { readonly kind: 'rsa'; readonly bits: 2048 | 3072 | 4096 }
  | { readonly kind: 'ed25519' };

export interface SubjectPublicKey {
  /** Canonical DER SubjectPublicKeyInfo, as it goes into the certificate. */
  readonly spki: Uint8Array;
  readonly key: KeyObject;
  readonly algorithm: KeyAlgorithm;
}

const EC_PUBLIC_KEY_OID = '1.2.840.10045.2.1';
const CURVES: Readonly<Record<string, 'P-256' | 'P-384' | 'P-521'>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/**
 * The canonical DER SPKI headers of the keys clients send most (named-curve EC keys with an
 * uncompressed point, Ed25519). OpenSSL's DER decoder costs more than the proof-of-possession
 * check itself; importing the same key as a JWK is a third cheaper and validates it as
 * strictly (OpenSSL refuses a JWK point that is off the curve or out of range). A key in
 * exactly one of these forms is imported that way; anything else takes the DER decoder.
 */
interface CanonicalSpki {
  readonly prefix: Buffer;
  readonly size: number;
  readonly jwk: (key: Buffer) => JsonWebKey;
  /** The WebCrypto curve of an EC form, for the raw-point import (importPublicKey). */
  readonly ecCurve?: 'P-256' | 'P-384' | 'P-521';
}

const CANONICAL_SPKI: readonly CanonicalSpki[] = [
  ...(
    [
      ['3059301306072a8648ce3d020106082a8648ce3d030107034200', 'P-256', 32],
      ['3076301006072a8648ce3d020106052b81040022036200', 'P-384', 48],
      ['30819b301006072a8648ce3d020106052b8104002303818600', 'P-521', 66],
    ] as const
  ).map(([hex, crv, size]) => {
    const prefix = Buffer.from(hex, 'hex');
    return {
      prefix,
      size: prefix.length + 1 + 2 * size,
      ecCurve: crv,
      jwk: (key: Buffer): JsonWebKey => {
        if (key[prefix.length] !== 0x04) throw new Error('not an uncompressed point');
        const x = key.subarray(prefix.length + 1, prefix.length + 1 + size);
        const y = key.subarray(prefix.length + 1 + size);
        return { kty: 'EC', crv, x: x.toString('base64url'), y: y.toString('base64url') };
      },
    };
  }),
  {
    prefix: Buffer.from('302a300506032b6570032100', 'hex'),
    size: 44,
    jwk: (key: Buffer): JsonWebKey => ({
      kty: 'OKP',
      crv: 'Ed25519',
      x: key.subarray(12).toString('base64url'),
    }),
  },
];

/** The key through the JWK importer when its DER is in a canonical form, else undefined. */
function importCanonical(der: Buffer): KeyObject | undefined {
  const form = canonicalForm(der);
  if (!form) return undefined;
  try {
    return createPublicKey({ key: form.jwk(der), format: 'jwk' });
  } catch {
    // Refused (off the curve, compressed): the DER path gives the precise answer.
    return undefined;
  }
}

/** The canonical form `der` is in, if any: its exact header and length. */
function canonicalForm(der: Buffer): CanonicalSpki | undefined {
  return CANONICAL_SPKI.find(
    (form) => der.length === form.size && der.subarray(0, form.prefix.length).equals(form.prefix),
  );
}

function importKey(der: Buffer, type: 'spki' | 'pkcs1'): KeyObject | undefined {
  try {
    return createPublicKey({ key: der, format: 'der', type });
  } catch {
    return undefined;
  }
}

/** True when the bytes are a well-formed SPKI naming an EC key that OpenSSL refused. */
function isStructurallyEcSpki(der: Uint8Array): boolean {
  try {
    // Inside the try: asn1js throws on some malformed values instead of returning offset -1.
    const parsed = asn1js.fromBER(toArrayBuffer(der));
    if (parsed.offset === -1) return false;
    const info = new pkijs.PublicKeyInfo({ schema: parsed.result });
    return info.algorithm.algorithmId === EC_PUBLIC_KEY_OID;
  } catch {
    return false;
  }
}

/**
 * Parses a client key: PEM `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1), else the raw
 * bytes as SPKI DER (Fulcio's order). Then applies the key policy.
 */
export function parsePublicKey(content: Uint8Array | string): SubjectPublicKey {
  return parseKeyDer(readKeyDer(content));
}

interface KeyDer {
  readonly der: Buffer;
  readonly type: 'spki' | 'pkcs1';
}

/** The key's DER and its kind: from a `PUBLIC KEY` or `RSA PUBLIC KEY` PEM, else the bytes. */
function readKeyDer(content: Uint8Array | string): KeyDer {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
  if (bytes.length === 0) throw new CaError('invalid_public_key', 'public key not provided');
  const text = bytes.toString('latin1');
  if (!text.includes('-----BEGIN')) return wholeDer({ der: bytes, type: 'spki' });
  const block = decodePemBlocks(text)[0];
  if (!block) throw new CaError('invalid_public_key', 'PEM public key could not be decoded');
  if (block.type === 'PUBLIC KEY') return wholeDer({ der: block.der, type: 'spki' });
  if (block.type === 'RSA PUBLIC KEY') return wholeDer({ der: block.der, type: 'pkcs1' });
  throw new CaError('invalid_public_key', `unexpected PEM type ${block.type}`);
}

/**
 * The key DER must be exactly one TLV. OpenSSL's decoder stops after the first value and
 * ignores what follows; Go's x509.ParsePKIXPublicKey and ParsePKCS1PublicKey (Fulcio,
 * cosign, every Go verifier) refuse trailing data, so mayfly does too.
 */
function wholeDer(read: KeyDer): KeyDer {
  const length = tlvLength(read.der);
  if (length !== read.der.length) {
    throw new CaError(
      'invalid_public_key',
      length === undefined
        ? `${read.type} DER has no complete outer value`
        : `trailing data after the ${read.type} key (${read.der.length - length} bytes)`,
    );
  }
  return read;
}

/**
 * The total length (header and content) of the TLV at the start of `der`: single-byte tag,
 * definite length. undefined when there is no such complete TLV (the parser says why).
 */
function tlvLength(der: Buffer): number | undefined {
  if (der.length < 2 || (der[0]! & 0x1f) === 0x1f) return undefined;
  const first = der[1]!;
  if (first < 0x80) return 2 + first <= der.length ? 2 + first : undefined;
  const octets = first & 0x7f;
  // 0x80 is BER's indefinite length; more than 4 length octets is beyond any key.
  if (octets === 0 || octets > 4 || der.length < 2 + octets) return undefined;
  let length = 0;
  for (let i = 0; i < octets; i++) length = length * 256 + der[2 + i]!;
  const total = 2 + octets + length;
  return total <= der.length ? total : undefined;
}

/** The key in `der` through OpenSSL (JWK import for canonical forms), with the key policy. */
function parseKeyDer({ der, type }: KeyDer): SubjectPublicKey {
  if (type === 'spki') {
    const fast = importCanonical(der);
    // A canonical SPKI is exactly what OpenSSL would export for the key: no re-encoding.
    if (fast) return { key: fast, algorithm: assertAcceptable(fast), spki: new Uint8Array(der) };
  }
  const key = importKey(der, type);
  if (!key) {
    if (type === 'spki' && isStructurallyEcSpki(der)) {
      throw new CaError('insecure_public_key', 'EC point is not on the curve');
    }
    throw new CaError('invalid_public_key', `key could not be parsed as ${type}`);
  }
  const spki = new Uint8Array(key.export({ format: 'der', type: 'spki' }));
  if (key.asymmetricKeyType === 'ec' && !hasUncompressedPoint(spki)) {
    // OpenSSL takes compressed (and hybrid) points and exports them as it got them; Go's
    // x509 parser (Fulcio, cosign, sigstore-go) refuses them, so a leaf carrying one would
    // be unreadable by every verifier.
    throw new CaError('invalid_public_key', 'EC point is not in uncompressed form');
  }
  return { key, algorithm: assertAcceptable(key), spki };
}

/** True when the SPKI carries an uncompressed SEC1 point (0x04 || X || Y). */
function hasUncompressedPoint(spki: Uint8Array): boolean {
  const info = new pkijs.PublicKeyInfo({ schema: asn1js.fromBER(toArrayBuffer(spki)).result });
  return info.subjectPublicKey.valueBlock.valueHexView[0] === 0x04;
}

/**
 * parsePublicKey, cheaper for the keys nearly every client sends (an uncompressed
 * named-curve EC point in canonical SPKI, PEM or DER): the point is imported raw through
 * WebCrypto, which checks that it is on the curve (SEC1 point decoding) without the full
 * key check OpenSSL's JWK and DER importers add, and which a proof of possession then
 * verifies against without converting the key again. Together that is about a quarter of
 * the JWK path's cost. Anything else, and any key the raw import refuses, takes
 * parsePublicKey's path, which gives the precise answer.
 */
export async function importPublicKey(content: Uint8Array | string): Promise<SubjectPublicKey> {
  const read = readKeyDer(content);
  const { der } = read;
  const form = read.type === 'spki' ? canonicalForm(der) : undefined;
  if (form?.ecCurve && der[form.prefix.length] === 0x04) {
    try {
      const imported = await webcrypto.subtle.importKey(
        'raw',
        der.subarray(form.prefix.length),
        { name: 'ECDSA', namedCurve: form.ecCurve },
        true,
        ['verify'],
      );
      const key = KeyObject.from(imported);
      return { key, algorithm: assertAcceptable(key), spki: new Uint8Array(der) };
    } catch {
      // Refused (off the curve): the synchronous path below says why.
    }
  }
  return parseKeyDer(read);
}

/** Applies the key policy (goodkey) to a parsed key. */
export function fromKeyObject(key: KeyObject): SubjectPublicKey {
  return {
    key,
    algorithm: assertAcceptable(key),
    spki: new Uint8Array(key.export({ format: 'der', type: 'spki' })),
  };
}

/**
 * Fulcio's goodkey: RSA of exactly 2048, 3072 or 4096 bits with e = 65537, ECDSA on
 * P-256/384/521, or Ed25519. Anything else is insecure.
 */
export function assertAcceptable(key: KeyObject): KeyAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = CURVES[details.namedCurve ?? ''];
      if (!curve)
        throw new CaError(
          'insecure_public_key',
          `ECDSA curve ${details.namedCurve ?? '?'} not allowed`,
        );
      return { kind: 'ecdsa', curve };
    }
    case 'rsa': {
      const bits = details.modulusLength;
      if (bits !== 2048 && bits !== 3072 && bits !== 4096) {
        throw new CaError('insecure_public_key', `RSA modulus of ${String(bits)} bits not allowed`);
      }
      if (details.publicExponent !== 65537n) {
        throw new CaError(
          'insecure_public_key',
          `RSA exponent ${String(details.publicExponent)} not allowed`,
        );
      }
      return { kind: 'rsa', bits };
    }
    case 'ed25519':
      return { kind: 'ed25519' };
    default:
      throw new CaError(
        'insecure_public_key',
        `unsupported public key type ${String(key.asymmetricKeyType)}`,
      );
  }
}
