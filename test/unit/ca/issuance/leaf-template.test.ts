import { X509Certificate, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import {
  FULCIO_OID,
  type CertificateExtensionValue,
  type CertificateIdentity,
} from '../../../../services/ca/certificate-identity/certificate-identity';
import {
  assembleCertificate,
  keyIdentifier,
  signatureAlgorithmFor,
  name,
} from '../../../../services/ca/issuance/der';
import { buildLeafTbs } from '../../../helpers/leaf';
import { LeafTemplate } from '../../../../services/ca/issuance/leaf-template';
import { leafKeyId, readSpki } from '../../../../services/ca/issuance/spki';
import { lintCertificate, type LintIssuer } from '../../../../services/ca/issuance/lint';
import { randomSerial } from '../../../../services/ca/issuance/serial';
import { hashForKey, type SignatureHash } from '../../../../services/common/signer/signer';
import { makeKey, type KeyKind } from '../../../helpers/keys';

/**
 * The DER template (the per-request fast path) against the pkijs builder (the reference):
 * byte for byte, for every identity shape, for values whose lengths cross the DER length
 * encodings (127/128, 255/256, 65535/65536), for every client key type and every CA key type.
 */

const KEY_KINDS: KeyKind[] = ['p256', 'p384', 'p521', 'rsa2048', 'rsa3072', 'rsa4096', 'ed25519'];

interface Ca {
  readonly label: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly hash: SignatureHash;
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
}

function makeCa(label: string, pair: { privateKey: KeyObject; publicKey: KeyObject }): Ca {
  const spki = new Uint8Array(pair.publicKey.export({ format: 'der', type: 'spki' }));
  const nameDer = new Uint8Array(
    name([
      { oid: '2.5.4.10', value: 'mayfly test' },
      { oid: '2.5.4.3', value: `issuing ${label}` },
    ])
      .toSchema()
      .toBER(false),
  );
  return {
    label,
    ...pair,
    hash: hashForKey(pair.privateKey),
    issuerName: nameDer,
    authorityKeyId: keyIdentifier(spki),
  };
}

const CAS: Ca[] = [
  makeCa('P-256', generateKeyPairSync('ec', { namedCurve: 'prime256v1' })),
  makeCa('P-384', generateKeyPairSync('ec', { namedCurve: 'secp384r1' })),
  makeCa('RSA-2048', generateKeyPairSync('rsa', { modulusLength: 2048 })),
  makeCa('Ed25519', generateKeyPairSync('ed25519')),
];

function spkiOf(kind: KeyKind): Uint8Array {
  return new Uint8Array(makeKey(kind).publicKey.export({ type: 'spki', format: 'der' }));
}

function fulcio(issuer: string, subject: string): CertificateExtensionValue[] {
  return [
    { oid: FULCIO_OID.issuerV1, value: issuer, encoding: 'raw' },
    { oid: FULCIO_OID.issuerV2, value: issuer, encoding: 'utf8' },
    { oid: FULCIO_OID.tokenSubject, value: subject, encoding: 'utf8' },
  ];
}

/** A string of exactly `length` ASCII characters. */
function ascii(length: number, seed = 'a'): string {
  return seed.repeat(length).slice(0, length);
}

/** An email of exactly `length` characters (local part padded). */
function emailOfLength(length: number): string {
  const domain = '@example.com';
  return `${ascii(Math.max(1, length - domain.length))}${domain}`.slice(-length);
}

const LENGTHS = [1, 2, 100, 111, 112, 113, 126, 127, 128, 129, 240, 254, 255, 256, 257, 1000];

function identities(): { label: string; identity: CertificateIdentity }[] {
  const out: { label: string; identity: CertificateIdentity }[] = [];
  const issuer = 'https://token.actions.githubusercontent.com';
  for (const n of LENGTHS) {
    out.push({
      label: `email of ${n + 12}`,
      identity: {
        san: { type: 'email', value: emailOfLength(n + 12) },
        extensions: fulcio(issuer, 'sub'),
      },
    });
    out.push({
      label: `uri of ${n}`,
      identity: {
        san: { type: 'uri', value: `https://${ascii(n, 'u')}` },
        extensions: fulcio(issuer, 'sub'),
      },
    });
    out.push({
      label: `otherName of ${n}`,
      identity: {
        san: { type: 'otherName', value: ascii(n, 'o') },
        extensions: fulcio(issuer, 'x'),
      },
    });
    out.push({
      label: `issuer extension of ${n}`,
      identity: {
        san: { type: 'email', value: 'alice@example.com' },
        extensions: fulcio(`https://${ascii(n, 'i')}`, ascii(n, 's')),
      },
    });
  }
  out.push({
    label: 'values over 65535 bytes (three-octet lengths)',
    identity: {
      san: { type: 'otherName', value: ascii(65_600, 'n') },
      extensions: fulcio(`https://${ascii(70_000, 'i')}`, ascii(65_536, 's')),
    },
  });
  out.push({
    label: 'non-ASCII UTF-8 in otherName and extensions',
    identity: {
      san: { type: 'otherName', value: 'jürgen-😀' },
      extensions: fulcio('https://issuer.example/é', 'sübject-😀'),
    },
  });
  out.push({
    label: 'empty extension values left out, CI extensions kept in order',
    identity: {
      san: {
        type: 'uri',
        value: 'https://github.com/org/repo/.github/workflows/ci.yml@refs/heads/main',
      },
      extensions: [
        ...fulcio('https://token.actions.githubusercontent.com', ''),
        { oid: '1.3.6.1.4.1.57264.1.2', value: 'push', encoding: 'raw' },
        { oid: '1.3.6.1.4.1.57264.1.9', value: '', encoding: 'utf8' },
        { oid: '1.3.6.1.4.1.57264.1.12', value: 'https://github.com/org/repo', encoding: 'utf8' },
      ],
    },
  });
  return out;
}

interface Case {
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Uint8Array;
  readonly subjectKeyId: Uint8Array;
  readonly identity: CertificateIdentity;
}

function reference(ca: Ca, c: Case): Uint8Array {
  return buildLeafTbs({
    ...c,
    issuerName: ca.issuerName,
    authorityKeyId: ca.authorityKeyId,
    signatureAlgorithm: signatureAlgorithmFor(ca.publicKey, ca.hash),
  });
}

function templateFor(ca: Ca): LeafTemplate {
  return new LeafTemplate({
    issuerName: ca.issuerName,
    authorityKeyId: ca.authorityKeyId,
    signatureAlgorithm: algorithmDer(ca),
  });
}

function algorithmDer(ca: Ca): Uint8Array {
  return new Uint8Array(signatureAlgorithmFor(ca.publicKey, ca.hash).toSchema().toBER(false));
}

function signWith(ca: Ca, tbs: Uint8Array): Buffer {
  return sign(ca.hash, tbs, { key: ca.privateKey, dsaEncoding: 'der' });
}

function lintIssuer(ca: Ca, notAfter = new Date(Date.UTC(2200, 0, 1))): LintIssuer {
  return {
    name: ca.issuerName,
    keyId: ca.authorityKeyId,
    publicKey: ca.publicKey,
    hash: ca.hash,
    signatureAlgorithm: algorithmDer(ca),
    notAfter,
  };
}

const NOW = new Date(Date.UTC(2026, 4, 17, 9, 8, 7));
const baseCase = (overrides: Partial<Case> = {}): Case => {
  const spki = overrides.spki ?? spkiOf('p256');
  return {
    serial: randomSerial(),
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + 600_000),
    spki,
    // As the CA computes it: from its one read of the key.
    subjectKeyId: leafKeyId(readSpki(spki)),
    identity: {
      san: { type: 'email', value: 'alice@example.com' },
      extensions: fulcio('https://i', 's'),
    },
    ...overrides,
  };
};

describe('the leaf DER template equals the pkijs-built TBS byte for byte', () => {
  const p256Ca = CAS[0]!;
  const template = templateFor(p256Ca);

  test.each(identities().map((c) => [c.label, c.identity] as const))('%s', (_label, identity) => {
    for (const kind of ['p256', 'rsa2048'] as KeyKind[]) {
      const c = baseCase({ identity, spki: spkiOf(kind) });
      expect(Buffer.from(template.tbs(c)).equals(Buffer.from(reference(p256Ca, c)))).toBe(true);
    }
  });

  test.each(KEY_KINDS)('client key %s', (kind) => {
    for (let i = 0; i < 3; i++) {
      const c = baseCase({ spki: spkiOf(kind) });
      expect(Buffer.from(template.tbs(c)).toString('hex')).toBe(
        Buffer.from(reference(p256Ca, c)).toString('hex'),
      );
    }
  });

  test.each(CAS.map((ca) => [ca.label, ca] as const))('CA key %s', (_label, ca) => {
    const t = templateFor(ca);
    for (const kind of KEY_KINDS) {
      const c = baseCase({ spki: spkiOf(kind) });
      const tbs = t.tbs(c);
      expect(Buffer.from(tbs).equals(Buffer.from(reference(ca, c)))).toBe(true);
      const signature = signWith(ca, tbs);
      const reassembled = assembleCertificate(
        tbs,
        signatureAlgorithmFor(ca.publicKey, ca.hash),
        signature,
      );
      expect(Buffer.from(t.certificate(tbs, signature)).equals(Buffer.from(reassembled))).toBe(
        true,
      );
    }
  });

  test('serials of every shape: high bit set, leading zeros, one octet, 20 octets', () => {
    const serials = [
      Uint8Array.from([0x01]),
      Uint8Array.from([0x7f]),
      Uint8Array.from([0x00, 0x80]),
      Uint8Array.from([0x00, 0x00, 0x00, 0x05]),
      Uint8Array.from([0x00, 0xff, 0x00]),
      Uint8Array.from(new Array<number>(20).fill(0x7f)),
      Uint8Array.from([0x80, ...new Array<number>(18).fill(1)]),
      ...Array.from({ length: 50 }, () => randomSerial()),
    ];
    for (const serial of serials) {
      const c = baseCase({ serial });
      expect(Buffer.from(template.tbs(c)).equals(Buffer.from(reference(p256Ca, c)))).toBe(true);
    }
  });

  test('validity as UTCTime up to 2049 and GeneralizedTime from 2050', () => {
    const dates = [
      new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
      new Date(Date.UTC(2000, 0, 1, 0, 0, 0)),
      new Date(Date.UTC(2049, 11, 31, 23, 59, 59)),
      new Date(Date.UTC(2050, 0, 1, 0, 0, 0)),
      new Date(Date.UTC(2100, 6, 9, 1, 2, 3)),
    ];
    for (const notBefore of dates) {
      const c = baseCase({ notBefore, notAfter: new Date(notBefore.getTime() + 1000) });
      expect(Buffer.from(template.tbs(c)).equals(Buffer.from(reference(p256Ca, c)))).toBe(true);
    }
  });

  test('OpenSSL reads a template leaf with the requested fields', () => {
    const c = baseCase();
    const tbs = template.tbs(c);
    const cert = new X509Certificate(template.certificate(tbs, signWith(p256Ca, tbs)));
    expect(cert.subjectAltName).toBe('email:alice@example.com');
    expect(cert.verify(p256Ca.publicKey)).toBe(true);
    expect(Date.parse(cert.validFrom)).toBe(c.notBefore.getTime());
  });
});

describe('the final check of a signed leaf', () => {
  const ca = CAS[0]!;
  const template = templateFor(ca);

  function signed(c: Case): Buffer {
    const tbs = template.tbs(c);
    return template.certificate(tbs, signWith(ca, tbs));
  }

  test.each(
    identities()
      .slice(0, 12)
      .map((c) => [c.label, c.identity] as const),
  )('passes a correct leaf (%s)', (_label, identity) => {
    for (const kind of KEY_KINDS) {
      const c = baseCase({ identity, spki: spkiOf(kind) });
      expect(lintCertificate(signed(c), { ...c, issuer: lintIssuer(ca) })).toEqual([]);
    }
  });

  test('passes a leaf with three-octet lengths and non-ASCII values', () => {
    for (const { identity } of identities().slice(-3)) {
      const c = baseCase({ identity });
      expect(lintCertificate(signed(c), { ...c, issuer: lintIssuer(ca) })).toEqual([]);
    }
  });

  test('catches every single-bit change anywhere in the certificate', () => {
    const c = baseCase();
    const der = signed(c);
    for (let i = 0; i < der.length; i++) {
      const changed = Buffer.from(der);
      changed[i] = changed[i]! ^ (1 << (i % 8));
      expect(lintCertificate(changed, { ...c, issuer: lintIssuer(ca) }).length).toBeGreaterThan(0);
    }
  });

  test('catches a truncated certificate and trailing bytes', () => {
    const c = baseCase();
    const der = signed(c);
    expect(
      lintCertificate(der.subarray(0, der.length - 1), { ...c, issuer: lintIssuer(ca) }),
    ).not.toEqual([]);
    expect(
      lintCertificate(Buffer.concat([der, Buffer.from([0])]), { ...c, issuer: lintIssuer(ca) }),
    ).not.toEqual([]);
  });

  test('catches a leaf that differs from the request: SAN, extension, key, serial, validity', () => {
    const c = baseCase();
    const der = signed(c);
    const issuer = lintIssuer(ca);
    const differs = (expected: Partial<Case>) =>
      lintCertificate(der, { ...c, ...expected, issuer });
    expect(
      differs({ identity: { ...c.identity, san: { type: 'email', value: 'bob@example.com' } } }),
    ).toContain('SAN differs from the identity');
    expect(
      differs({ identity: { ...c.identity, san: { type: 'uri', value: 'alice@example.com' } } }),
    ).toContain('SAN differs from the identity');
    expect(
      differs({ identity: { ...c.identity, extensions: fulcio('https://j', 's') } }).join(),
    ).toMatch(/1\.3\.6\.1\.4\.1\.57264\.1\.1 differs/);
    expect(differs({ identity: { ...c.identity, extensions: fulcio('https://i', '') } })).toContain(
      '1 unexpected extension(s)',
    );
    expect(differs({ spki: spkiOf('p256') })).toContain('public key differs from the request');
    expect(differs({ subjectKeyId: leafKeyId(readSpki(spkiOf('p256'))) })).toContain(
      'SubjectKeyIdentifier is wrong',
    );
    expect(differs({ serial: randomSerial() })).toContain('serial differs from the request');
    expect(differs({ notAfter: new Date(c.notAfter.getTime() + 1000) })).toContain(
      'notAfter differs from the request',
    );
    expect(lintCertificate(der, { ...c, issuer: lintIssuer(ca, NOW) })).toContain(
      'outlives the issuing certificate',
    );
  });

  test('catches a signature by another key and a foreign issuer', () => {
    const c = baseCase();
    const tbs = template.tbs(c);
    const other = CAS[1]!;
    const forged = template.certificate(tbs, sign('sha256', tbs, other.privateKey));
    expect(lintCertificate(forged, { ...c, issuer: lintIssuer(ca) })).toContain(
      'signature does not verify with the issuing key',
    );
    const der = template.certificate(tbs, signWith(ca, tbs));
    expect(
      lintCertificate(der, { ...c, issuer: { ...lintIssuer(ca), name: other.issuerName } }),
    ).toContain('issuer name does not match the issuing certificate');
  });

  test('catches a leaf whose extensions were built for a CA (BasicConstraints)', () => {
    const c = baseCase({
      identity: {
        san: { type: 'email', value: 'alice@example.com' },
        extensions: [
          ...fulcio('https://i', 's'),
          { oid: '2.5.29.19', value: '0\u0003\u0001\u0001', encoding: 'raw' },
        ],
      },
    });
    const der = signed(c);
    expect(
      lintCertificate(der, { ...c, identity: baseCase().identity, issuer: lintIssuer(ca) }),
    ).toContain('1 unexpected extension(s)');
  });
});
