/**
 * A minimal DER writer and reader for the per-request fast path: the leaf template splices
 * its variable fields with these, and the final check walks the certificate with them.
 * Only definite, minimal lengths and single-byte tags are accepted (everything a leaf
 * holds); anything else is malformed. pkijs and asn1js stay the tools for everything else.
 */

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  sequence: 0x30,
  set: 0x31,
  utcTime: 0x17,
  generalizedTime: 0x18,
  /** [0] constructed (explicit version, otherName value) */
  context0: 0xa0,
  /** [3] constructed (explicit extensions) */
  context3: 0xa3,
  /** [0] primitive (AKI keyIdentifier) */
  implicit0: 0x80,
  /** [1] primitive (rfc822Name) */
  implicit1: 0x81,
  /** [6] primitive (uniformResourceIdentifier) */
  implicit6: 0x86,
} as const;

/** The header (tag and definite length, minimal form) of a TLV with `length` content bytes. */
export function header(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  if (length < 0x100) return Buffer.from([tag, 0x81, length]);
  if (length < 0x10000) return Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
  if (length < 0x1000000)
    return Buffer.from([tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff]);
  throw new Error(`DER length ${length} too large`);
}

/** A TLV around the concatenation of `parts`. */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Buffer {
  let length = 0;
  for (const part of parts) length += part.length;
  const head = header(tag, length);
  const out = Buffer.allocUnsafe(head.length + length);
  head.copy(out, 0);
  let offset = head.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const oidCache = new Map<string, Buffer>();

/** The DER of an OBJECT IDENTIFIER (memoised: the OIDs of a leaf are a small fixed set). */
export function oid(dotted: string): Buffer {
  let der = oidCache.get(dotted);
  if (der) return der;
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new Error(`bad OID ${dotted}`);
    return BigInt(a);
  });
  if (arcs.length < 2) throw new Error(`bad OID ${dotted}`);
  const bytes: number[] = [];
  const push = (arc: bigint) => {
    const groups = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) groups.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...groups);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (const arc of arcs.slice(2)) push(arc);
  der = tlv(TAG.oid, Uint8Array.from(bytes));
  if (oidCache.size < 256) oidCache.set(dotted, der);
  return der;
}

/** One TLV found by the reader: its tag, where its content is, and where it ends. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the content. */
  readonly end: number;
}

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** Reads the TLV at `offset`, which must end by `limit`; lengths must be minimal DER. */
export function readTlv(der: Uint8Array, offset: number, limit: number = der.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated TLV at ${offset}`);
  const tag = der[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte tag at ${offset}`);
  let length = der[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3) throw new DerError(`unsupported length form at ${offset}`);
    if (contentStart + count > limit) throw new DerError(`truncated length at ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[contentStart + i]!;
    contentStart += count;
    // Minimal: no leading zero octet, and the long form only from 128 on.
    if (der[offset + 2] === 0 || length < 0x80)
      throw new DerError(`non-minimal length at ${offset}`);
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError(`TLV at ${offset} overruns its parent`);
  return { tag, start: offset, contentStart, end };
}

/** The children of a constructed TLV, which must exactly fill it. */
export function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let offset = parent.contentStart;
  while (offset < parent.end) {
    const child = readTlv(der, offset, parent.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

/** Reads a TLV that must have `tag`. */
export function expectTlv(der: Uint8Array, offset: number, tag: number, limit?: number): Tlv {
  const found = readTlv(der, offset, limit);
  if (found.tag !== tag)
    throw new DerError(
      `expected tag 0x${tag.toString(16)} at ${offset}, got 0x${found.tag.toString(16)}`,
    );
  return found;
}

export function contentOf(der: Uint8Array, t: Tlv): Uint8Array {
  return der.subarray(t.contentStart, t.end);
}

export function bytesOf(der: Uint8Array, t: Tlv): Uint8Array {
  return der.subarray(t.start, t.end);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
