import { constants, verify, type KeyObject } from 'node:crypto';
import { decodeBase64UrlStrict } from '../../common/encoding';

/**
 * A compact JWS (an identity token) split and decoded, and its signature checked with
 * node:crypto. jose still finds the key (discovery, JWKS cache, kid matching); this module
 * only replaces the signature check, because jose's WebCrypto call hops to libuv's thread
 * pool and back and costs more than twice the synchronous OpenSSL check it wraps (bench/results).
 */

export interface DecodedJws {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

export class JwsFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwsFormatError';
  }
}

function jsonObject(part: string, what: string): Record<string, unknown> {
  const bytes = decodeBase64UrlStrict(part);
  if (bytes === undefined) throw new JwsFormatError(`${what} is not RawURL base64`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new JwsFormatError(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new JwsFormatError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Splits and decodes a compact JWS. Refuses `crit` (go-jose, hence Fulcio, understands no
 * critical extension) and `b64` (an unencoded payload is never a JWT).
 */
export function decodeJws(token: string): DecodedJws {
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwsFormatError(`token has ${parts.length} parts, want 3`);
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = jsonObject(headerPart, 'header');
  if ('crit' in header) throw new JwsFormatError('header names critical extensions');
  if ('b64' in header) throw new JwsFormatError('header has b64');
  if (typeof header.alg !== 'string' || header.alg.length === 0)
    throw new JwsFormatError('header has no alg');
  const payload = jsonObject(payloadPart, 'payload');
  const signature = decodeBase64UrlStrict(signaturePart);
  if (signature === undefined || signature.length === 0)
    throw new JwsFormatError('signature is not RawURL base64');
  return {
    header,
    payload,
    signingInput: Buffer.from(`${headerPart}.${payloadPart}`, 'latin1'),
    signature,
  };
}

type Check =
  | { readonly kind: 'rsa'; readonly hash: string; readonly pss: boolean; readonly bytes: number }
  | { readonly kind: 'ec'; readonly hash: string; readonly curve: string; readonly bytes: number }
  | { readonly kind: 'ed25519' };

/** What each asymmetric JWS algorithm needs of its key and signature (RFC 7518 §3). */
const CHECKS: Readonly<Record<string, Check>> = {
  RS256: { kind: 'rsa', hash: 'sha256', pss: false, bytes: 32 },
  RS384: { kind: 'rsa', hash: 'sha384', pss: false, bytes: 48 },
  RS512: { kind: 'rsa', hash: 'sha512', pss: false, bytes: 64 },
  PS256: { kind: 'rsa', hash: 'sha256', pss: true, bytes: 32 },
  PS384: { kind: 'rsa', hash: 'sha384', pss: true, bytes: 48 },
  PS512: { kind: 'rsa', hash: 'sha512', pss: true, bytes: 64 },
  ES256: { kind: 'ec', hash: 'sha256', curve: 'prime256v1', bytes: 64 },
  ES384: { kind: 'ec', hash: 'sha384', curve: 'secp384r1', bytes: 96 },
  ES512: { kind: 'ec', hash: 'sha512', curve: 'secp521r1', bytes: 132 },
  EdDSA: { kind: 'ed25519' },
};

/**
 * True when `signature` is `alg`'s signature of the JWS by `key`. False for an algorithm
 * outside the table (HMAC, `none`), a key of the wrong type or size (an RSA key under 2048
 * bits, as jose refuses), or a signature of the wrong length.
 */
export function jwsSignatureVerifies(
  alg: string,
  key: KeyObject,
  signingInput: Buffer,
  signature: Buffer,
): boolean {
  const check = Object.hasOwn(CHECKS, alg) ? CHECKS[alg] : undefined;
  if (!check || key.type !== 'public') return false;
  const details = key.asymmetricKeyDetails ?? {};
  try {
    switch (check.kind) {
      case 'rsa':
        if (key.asymmetricKeyType !== 'rsa' || (details.modulusLength ?? 0) < 2048) return false;
        return verify(
          check.hash,
          signingInput,
          check.pss
            ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: check.bytes }
            : { key, padding: constants.RSA_PKCS1_PADDING },
          signature,
        );
      case 'ec':
        if (key.asymmetricKeyType !== 'ec' || details.namedCurve !== check.curve) return false;
        if (signature.length !== check.bytes) return false;
        return verify(check.hash, signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature);
      case 'ed25519':
        if (key.asymmetricKeyType !== 'ed25519') return false;
        return verify(null, signingInput, key, signature);
    }
  } catch {
    return false;
  }
}
