import { randomBytes } from 'node:crypto';

/**
 * A random positive serial of at most 20 octets (RFC 5280 §4.1.2.2), like Fulcio's
 * GenerateSerialNumber: uniform in [1, 2^159).
 */
export function randomSerial(): Uint8Array {
  for (;;) {
    const bytes = randomBytes(20);
    bytes[0] = bytes[0]! & 0x7f;
    if (bytes.some((b) => b !== 0)) return new Uint8Array(bytes);
  }
}

export function serialHex(serial: Uint8Array): string {
  const hex = Buffer.from(serial)
    .toString('hex')
    .replace(/^(00)+/, '');
  return hex.length === 0 ? '00' : hex;
}
