import { encodeSerial } from '../../../../services/ca/issuance/der';
import { randomSerial, serialHex } from '../../../../services/ca/issuance/serial';

function hex(bytes: ArrayBuffer | Uint8Array): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('hex');
}

describe('randomSerial', () => {
  const serials = Array.from({ length: 256 }, () => randomSerial());

  test('is 20 octets with the top bit clear, so it is positive and DER-fits in 20 octets', () => {
    for (const serial of serials) {
      expect(serial).toHaveLength(20);
      expect(serial[0]! & 0x80).toBe(0);
      const der = new Uint8Array(encodeSerial(serial).toBER(false));
      expect(der[0]).toBe(0x02);
      expect(der[1]).toBeLessThanOrEqual(20);
      expect(der[2]! & 0x80).toBe(0);
    }
  });

  test('is never zero', () => {
    for (const serial of serials) expect(serial.some((b) => b !== 0)).toBe(true);
  });

  test('does not repeat', () => {
    expect(new Set(serials.map((s) => hex(s))).size).toBe(serials.length);
  });

  test('keeps its value while later serials are drawn (across a refill of the random pool)', () => {
    const first = randomSerial();
    const before = hex(first);
    for (let i = 0; i < 500; i++) randomSerial();
    expect(hex(first)).toBe(before);
  });

  test('uses the whole 159-bit range: the leading octet takes high and low values', () => {
    // With 256 uniform draws, all leading octets below 0x40 (or all at or above) has
    // probability 2^-256: a failure means the range is truncated.
    const leading = serials.map((s) => s[0]!);
    expect(leading.some((b) => b >= 0x40)).toBe(true);
    expect(leading.some((b) => b < 0x40)).toBe(true);
  });
});

describe('encodeSerial', () => {
  test.each([
    ['01', '020101'],
    ['0001', '020101'],
    ['7f', '02017f'],
    ['80', '02020080'],
    ['00ff', '020200ff'],
    ['0000', '020100'],
  ])('encodes the unsigned octets %s as the DER INTEGER %s', (input, expected) => {
    expect(hex(encodeSerial(Buffer.from(input, 'hex')).toBER(false))).toBe(expected);
  });
});

describe('serialHex', () => {
  test('prints the serial as lowercase hex without leading zero octets', () => {
    expect(serialHex(Buffer.from('0000ab12', 'hex'))).toBe('ab12');
    expect(serialHex(Buffer.from('7FEE', 'hex'))).toBe('7fee');
  });

  test('prints zero as 00', () => {
    expect(serialHex(new Uint8Array(3))).toBe('00');
  });
});
