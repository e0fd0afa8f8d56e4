/** der-writer against asn1js (which we did not write): the same bytes for the same values. */
import * as asn1js from 'asn1js';
import fc from 'fast-check';
import {
  bigintInteger,
  cmsTime,
  generalizedTime,
  tlv,
  unsignedInteger,
} from '../../../services/tsa/der-writer';

const asn1 = (v: { toBER(): ArrayBuffer }) => Buffer.from(v.toBER());

test('INTEGERs from bigints, negative and positive, are asn1js', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }), (n) => {
      expect(bigintInteger(n)).toEqual(asn1(asn1js.Integer.fromBigInt(n)));
    }),
    { numRuns: 2000 },
  );
  for (const n of [0n, 127n, 128n, 255n, 256n, -1n, -128n, -129n, -256n, -32768n, -32769n]) {
    expect(bigintInteger(n)).toEqual(asn1(asn1js.Integer.fromBigInt(n)));
  }
});

test('unsigned INTEGERs from magnitude bytes are minimal', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (bytes) => {
      const value = BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
      expect(unsignedInteger(bytes)).toEqual(asn1(asn1js.Integer.fromBigInt(value)));
    }),
  );
});

test('lengths of every size frame like asn1js', () => {
  for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536, 70000]) {
    const body = Buffer.alloc(size, 7);
    expect(tlv(0x04, body)).toEqual(asn1(new asn1js.OctetString({ valueHex: body })));
  }
});

test('times: whole seconds, Z, UTCTime until 2049', () => {
  const d = new Date('2026-12-05T11:22:33.456Z');
  expect(generalizedTime(d).toString('latin1')).toBe('\x18\x0f20261205112233Z');
  expect(cmsTime(d).toString('latin1')).toBe('\x17\x0d261205112233Z');
  expect(cmsTime(new Date('2050-01-01T00:00:00Z'))[0]).toBe(0x18);
});
