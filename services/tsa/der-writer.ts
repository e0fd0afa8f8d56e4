/**
 * A minimal DER writer for the per-request part of a token. The structures are laid out with
 * pkijs/asn1js once, when the TSA starts (everything constant: names, certificates,
 * algorithm identifiers, the ESS attribute); per request only a few primitives change
 * (imprint, serial, time, nonce, digest, signature), and asn1js re-encoding whole objects
 * for those cost about fifty times the signature itself. These helpers only frame bytes.
 */

export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Tag, length, and the concatenated contents. */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  const body = contents.length === 1 ? contents[0]! : Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

export const TAG = {
  integer: 0x02,
  octetString: 0x04,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
  context0: 0xa0,
} as const;

/** A non-negative INTEGER from big-endian magnitude bytes (minimal, sign octet as needed). */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const bytes = Buffer.from(magnitude.subarray(start));
  return tlv(TAG.integer, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
}

/** Any INTEGER from a bigint (two's complement, minimal). */
export function bigintInteger(value: bigint): Buffer {
  if (value >= 0n) {
    const hex = value.toString(16);
    return unsignedInteger(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'));
  }
  // Negative: the smallest byte count whose two's complement range holds the value.
  let size = 1;
  while (value < -(1n << BigInt(8 * size - 1))) size++;
  const twos = (1n << BigInt(8 * size)) + value;
  return tlv(TAG.integer, Buffer.from(twos.toString(16).padStart(size * 2, '0'), 'hex'));
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** GeneralizedTime in whole seconds, "YYYYMMDDhhmmssZ" (RFC 3161 §2.4.2, no fraction). */
export function generalizedTime(date: Date): Buffer {
  const text =
    `${date.getUTCFullYear()}${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}` +
    `${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  return tlv(TAG.generalizedTime, Buffer.from(text, 'latin1'));
}

/** A CMS time (RFC 5652 signingTime): UTCTime until 2049, GeneralizedTime after. */
export function cmsTime(date: Date): Buffer {
  const year = date.getUTCFullYear();
  if (year >= 2050 || year < 1950) return generalizedTime(date);
  const text =
    `${two(year % 100)}${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}` +
    `${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  return tlv(TAG.utcTime, Buffer.from(text, 'latin1'));
}
