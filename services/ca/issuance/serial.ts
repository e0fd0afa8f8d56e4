import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for serials, drawn from OpenSSL's CSPRNG a page at a time: one call per
 * serial cost more than assembling the certificate (each call pays OpenSSL's DRBG locking
 * and provider lookup), and serials are public, so holding the next few in memory is
 * harmless.
 */
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let used = POOL_BYTES;

/** `count` fresh random octets in a buffer of their own. */
function randomOctets(count: number): Uint8Array {
  if (used + count > POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  // A copy, since the pool is refilled in place; `used` moves on, so no octet is used twice.
  const out = new Uint8Array(pool.subarray(used, used + count));
  used += count;
  return out;
}

/**
 * A random positive serial of at most 20 octets (RFC 5280 §4.1.2.2), like Fulcio's
 * GenerateSerialNumber: uniform in [1, 2^159).
 */
export function randomSerial(): Uint8Array {
  for (;;) {
    const bytes = randomOctets(20);
    bytes[0] = bytes[0]! & 0x7f;
    if (bytes.some((b) => b !== 0)) return bytes;
  }
}

export function serialHex(serial: Uint8Array): string {
  const hex = Buffer.from(serial)
    .toString('hex')
    .replace(/^(00)+/, '');
  return hex.length === 0 ? '00' : hex;
}
