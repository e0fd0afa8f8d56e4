import { X509Certificate } from 'node:crypto';
import { certificateParts, DerError } from '../../../services/ctlog/der';
import {
  SubmissionError,
  decodeStdBase64,
  parseRoots,
  validateSubmission,
} from '../../../services/ctlog/submission';
import { makeCert, makeHierarchy } from '../../helpers/ct-certs';

/**
 * The submission checks' fast path (our own DER walk and a signature check with the
 * issuer's cached key) against the full way (Node's X509Certificate, i.e. OpenSSL): they must
 * reach the same verdict on every certificate, valid or damaged.
 */

const { root, intermediate } = makeHierarchy();
const roots = parseRoots([root.der]);
const always = { start: new Date(0), end: new Date(Date.UTC(9999, 0, 1)) };

/** What the log decided before the fast path: OpenSSL parses and checks the link. */
function reference(leaf: Buffer): boolean {
  try {
    const cert = new X509Certificate(leaf);
    if (!Buffer.from(cert.raw).equals(leaf)) return false;
    return cert.checkIssued(intermediate.cert) && cert.verify(intermediate.publicKey);
  } catch {
    return false;
  }
}

function accepted(leaf: Buffer, precert: boolean): boolean {
  try {
    validateSubmission([leaf, intermediate.der, root.der], precert, roots, always);
    return true;
  } catch (err) {
    expect(err).toBeInstanceOf(SubmissionError);
    return false;
  }
}

describe('submission checks: fast path and OpenSSL agree', () => {
  const precert = makeCert({ issuer: intermediate, poison: 'critical' });
  const cert = makeCert({ issuer: intermediate });

  it('accepts a valid precertificate and certificate, with the notAfter OpenSSL reads', () => {
    const entry = validateSubmission(
      [precert.der, intermediate.der, root.der],
      true,
      roots,
      always,
    );
    expect(entry.isPrecert).toBe(true);
    expect(accepted(cert.der, false)).toBe(true);
    expect(certificateParts(precert.der).notAfter.getTime()).toBe(
      new Date(precert.cert.validTo).getTime(),
    );
  });

  it.each([
    ['precertificate', precert.der, true],
    ['certificate', cert.der, false],
  ] as const)('every one-bit damage to a %s gets the verdict OpenSSL gives', (_n, der, pre) => {
    let refused = 0;
    for (let i = 0; i < der.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const damaged = Buffer.from(der);
        damaged[i]! ^= bit;
        const fast = accepted(damaged, pre);
        if (fast !== reference(damaged))
          throw new Error(`byte ${i} bit ${bit}: fast path ${fast}, OpenSSL ${!fast}`);
        if (!fast) refused++;
      }
    }
    expect(refused).toBeGreaterThan(der.length);
  });

  it('trailing bytes and truncation are refused', () => {
    expect(accepted(Buffer.concat([precert.der, Buffer.from([0])]), true)).toBe(false);
    expect(accepted(precert.der.subarray(0, precert.der.length - 1), true)).toBe(false);
  });

  it('an issuer name in other bytes (PrintableString for UTF8String) goes the full way and is accepted as OpenSSL accepts it', () => {
    const leaf = makeCert({
      issuer: intermediate,
      issuerNamePrintable: 'test intermediate',
      poison: 'critical',
    });
    expect(certificateParts(leaf.der).issuer).not.toEqual(
      certificateParts(intermediate.der).subject,
    );
    expect(reference(leaf.der)).toBe(true);
    expect(accepted(leaf.der, true)).toBe(true);
  });

  it('a leaf signed by another key under the same name is refused', () => {
    const impostor = makeCert({ cn: 'test intermediate', ca: true, issuer: root });
    const leaf = makeCert({ issuer: impostor, poison: 'critical' });
    expect(accepted(leaf.der, true)).toBe(false);
  });
});

describe('certificateParts', () => {
  it('reads UTCTime with the RFC 5280 century rule and GeneralizedTime from 2050', () => {
    const early = makeCert({ notAfter: new Date(Date.UTC(2049, 11, 31, 23, 59, 59)) });
    const late = makeCert({ notAfter: new Date(Date.UTC(2050, 0, 1, 0, 0, 0)) });
    for (const c of [early, late])
      expect(certificateParts(c.der).notAfter.getTime()).toBe(new Date(c.cert.validTo).getTime());
  });

  it('refuses what is not a certificate', () => {
    for (const bad of [
      Buffer.alloc(0),
      Buffer.from('3000', 'hex'),
      Buffer.from('300302010a', 'hex'),
    ])
      expect(() => certificateParts(bad)).toThrow(DerError);
  });
});

describe('decodeStdBase64 takes exactly what the regular expression it replaced took', () => {
  const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const agree = (text: string) => {
    const expected = text.length > 0 && STD_B64.test(text);
    const der = decodeStdBase64(text);
    expect({ text, accepted: der !== undefined }).toEqual({ text, accepted: expected });
    if (der) expect(der.equals(Buffer.from(text, 'base64'))).toBe(true);
  };

  it.each([
    '',
    'QQ==',
    'QR==',
    'QUI=',
    'QUJ=',
    'QUJD',
    'QUJDRA==',
    'QQ',
    'QUI',
    'Q===',
    '====',
    'QQ=',
    'QQ==QQ==',
    'QQ=Q',
    'QUJD\n',
    ' QUJD',
    'QU JD',
    'QUJD!',
    'QUJ-',
    'QUJ_',
    'QUJDé===',
    '+/+/',
    '////',
    'A'.repeat(4000),
    `${'A'.repeat(3999)}=`,
  ])('%j', agree);

  it('on 50,000 random strings of base64 characters, padding, look-alikes and others', () => {
    // A fixed generator (xorshift32): the same strings on every run.
    let x = 0x2545f491;
    const next = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 2 ** 32;
    };
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const others = '=-_ \n.é\u0000';
    let accepted = 0;
    const disagreements: string[] = [];
    for (let i = 0; i < 50_000; i++) {
      let text = '';
      const n = Math.floor(next() * 14);
      for (let j = 0; j < n; j++) {
        const r = next();
        text +=
          r < 0.9
            ? alphabet[Math.floor(next() * 64)]
            : r < 0.97
              ? '='
              : others[Math.floor(next() * others.length)];
      }
      const expected = text.length > 0 && STD_B64.test(text);
      const der = decodeStdBase64(text);
      if ((der !== undefined) !== expected || (der && !der.equals(Buffer.from(text, 'base64'))))
        disagreements.push(text);
      if (expected) accepted++;
    }
    expect(disagreements).toEqual([]);
    // Both verdicts occur often enough for the comparison to mean something.
    expect(accepted).toBeGreaterThan(2_000);
    expect(accepted).toBeLessThan(48_000);
  });
});
