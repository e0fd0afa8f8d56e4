import { X509Certificate, createHash, verify, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import {
  FULCIO_OID,
  type CertificateExtensionValue,
  type CertificateIdentity,
} from '../../../../services/ca/certificate-identity/certificate-identity';
import { systemClock } from '../../../../services/common/clock';
import { createEphemeralChain } from '../../../../services/ca/issuance/ephemeral-chain';
import {
  CertificateAuthority,
  type IssuanceRequest,
} from '../../../../services/ca/issuance/certificate-authority';
import { randomSerial } from '../../../../services/ca/issuance/serial';
import { generateEphemeralKey, type CaSigner } from '../../../../services/common/signer/signer';
import { makeKey, type KeyKind } from '../../../helpers/keys';

/**
 * The code-signing leaf profile (fulcio-reference §3), checked byte by byte on certificates
 * the CA really issues.
 */

const ISSUER_URL = 'https://issuer.example.com';
const SUBJECT = 'alice-subject-1234';
const EMAIL = 'alice@example.com';

const OIDS = {
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
};

function ab(bytes: Uint8Array): ArrayBuffer {
  return Uint8Array.from(bytes).buffer;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

interface Parsed {
  readonly der: Uint8Array;
  /** Raw DER of each TBSCertificate field, in order (version first). */
  readonly tbsFields: Buffer[];
  readonly tbs: Buffer;
  readonly outerAlgorithm: Buffer;
  readonly signature: Buffer;
  readonly cert: pkijs.Certificate;
}

function parse(der: Uint8Array): Parsed {
  const asn = asn1js.fromBER(ab(der));
  expect(asn.offset).toBe(der.length);
  const outer = asn.result as asn1js.Sequence;
  const [tbs, algorithm, signature] = outer.valueBlock.value as [
    asn1js.Sequence,
    asn1js.Sequence,
    asn1js.BitString,
  ];
  return {
    der,
    tbsFields: tbs.valueBlock.value.map((field) => Buffer.from(field.valueBeforeDecodeView)),
    tbs: Buffer.from(tbs.valueBeforeDecodeView),
    outerAlgorithm: Buffer.from(algorithm.valueBeforeDecodeView),
    signature: Buffer.from(signature.valueBlock.valueHexView),
    cert: new pkijs.Certificate({ schema: asn.result }),
  };
}

function extensionsOf(parsed: Parsed): pkijs.Extension[] {
  return parsed.cert.extensions ?? [];
}

function ext(parsed: Parsed, oid: string): pkijs.Extension {
  const found = extensionsOf(parsed).filter((e) => e.extnID === oid);
  expect(found).toHaveLength(1);
  return found[0]!;
}

function extValue(parsed: Parsed, oid: string): Buffer {
  return Buffer.from(ext(parsed, oid).extnValue.valueBlock.valueHexView);
}

/** The SKI extension's key identifier of a certificate. */
function subjectKeyId(parsed: Parsed): Buffer {
  const octets = asn1js.fromBER(ab(extValue(parsed, OIDS.subjectKeyIdentifier)))
    .result as asn1js.OctetString;
  return Buffer.from(octets.valueBlock.valueHexView);
}

function utcTime(date: Date): Buffer {
  const text = date
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d{3}Z$/, 'Z')
    .slice(2);
  return Buffer.concat([Buffer.from([0x17, text.length]), Buffer.from(text, 'ascii')]);
}

function identity(
  san: CertificateIdentity['san'],
  extensions: CertificateExtensionValue[] = [
    { oid: FULCIO_OID.issuerV1, value: ISSUER_URL, encoding: 'raw' },
    { oid: FULCIO_OID.issuerV2, value: ISSUER_URL, encoding: 'utf8' },
    { oid: FULCIO_OID.tokenSubject, value: SUBJECT, encoding: 'utf8' },
  ],
): CertificateIdentity {
  return { san, extensions };
}

const EMAIL_IDENTITY = identity({ type: 'email', value: EMAIL });

interface Fixture {
  readonly ca: CertificateAuthority;
  readonly signer: CaSigner;
  readonly intermediate: Parsed;
  readonly intermediateKey: KeyObject;
}

let fixture: Fixture;
beforeAll(async () => {
  const signer = await createEphemeralChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    systemClock,
  );
  fixture = {
    ca: new CertificateAuthority(signer),
    signer,
    intermediate: parse(signer.chain[0]!),
    intermediateKey: signer.publicKey,
  };
});

function wholeSecondsNow(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

function request(
  overrides: Partial<IssuanceRequest> = {},
  kind: KeyKind = 'p256',
): IssuanceRequest {
  const notBefore = wholeSecondsNow();
  return {
    publicKey: new Uint8Array(makeKey(kind).publicKey.export({ type: 'spki', format: 'der' })),
    identity: EMAIL_IDENTITY,
    serial: randomSerial(),
    notBefore,
    notAfter: new Date(notBefore.getTime() + 600_000),
    ...overrides,
  };
}

async function issue(req: IssuanceRequest): Promise<Parsed> {
  return parse((await fixture.ca.issue(req)).der);
}

describe('the TBSCertificate fields of an issued leaf', () => {
  test('is an X.509 version 3 certificate', async () => {
    const leaf = await issue(request());
    expect(hex(leaf.tbsFields[0]!)).toBe('a003020102');
    expect(leaf.cert.version).toBe(2);
  });

  test('carries the request serial as a positive INTEGER of at most 20 octets', async () => {
    const req = request();
    const leaf = await issue(req);
    const serial = leaf.tbsFields[1]!;
    expect(serial[0]).toBe(0x02);
    const content = serial.subarray(2);
    expect(serial[1]).toBe(content.length);
    expect(content.length).toBeGreaterThan(0);
    expect(content.length).toBeLessThanOrEqual(20);
    expect(content[0]! & 0x80).toBe(0);
    expect(BigInt(`0x${hex(content)}`)).toBe(BigInt(`0x${hex(req.serial)}`));
    expect(BigInt(`0x${hex(content)}`)).toBeGreaterThan(0n);
  });

  test('gets a different serial on every issue when the request serials are random', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 5; i++) serials.add(hex((await issue(request())).tbsFields[1]!));
    expect(serials.size).toBe(5);
  });

  test('has an empty subject encoded as SEQUENCE {} (30 00)', async () => {
    const leaf = await issue(request());
    expect(hex(leaf.tbsFields[5]!)).toBe('3000');
  });

  test('has an issuer byte-identical to the intermediate’s subject', async () => {
    const leaf = await issue(request());
    expect(leaf.tbsFields[3]!).toEqual(fixture.intermediate.tbsFields[5]!);
    expect(leaf.tbsFields[3]!.length).toBeGreaterThan(2);
  });

  test('has exactly the requested validity, encoded as UTCTime', async () => {
    const notBefore = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    const req = request({ notBefore, notAfter: new Date(notBefore.getTime() + 600_000) });
    const leaf = await issue(req);
    const expected = Buffer.concat([utcTime(req.notBefore), utcTime(req.notAfter)]);
    expect(leaf.tbsFields[4]!).toEqual(
      Buffer.concat([Buffer.from([0x30, expected.length]), expected]),
    );
    expect(hex(leaf.tbsFields[4]!)).toContain(Buffer.from('260102030405Z').toString('hex'));
    expect(hex(leaf.tbsFields[4]!)).toContain(Buffer.from('260102031405Z').toString('hex'));
  });

  test('carries the request public key byte for byte', async () => {
    const req = request({}, 'rsa2048');
    const leaf = await issue(req);
    expect(leaf.tbsFields[6]!).toEqual(Buffer.from(req.publicKey));
  });

  test('is signed ecdsa-with-SHA256, with absent parameters, by a P-256 CA key', async () => {
    const leaf = await issue(request());
    const ecdsaWithSha256 = '300a06082a8648ce3d040302';
    expect(hex(leaf.tbsFields[2]!)).toBe(ecdsaWithSha256);
    expect(hex(leaf.outerAlgorithm)).toBe(ecdsaWithSha256);
  });

  test('has a signature over the TBS that node:crypto verifies with the intermediate key', async () => {
    const leaf = await issue(request());
    expect(
      verify(
        'sha256',
        leaf.tbs,
        { key: fixture.intermediateKey, dsaEncoding: 'der' },
        leaf.signature,
      ),
    ).toBe(true);
    const tampered = Buffer.from(leaf.tbs);
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 0x01;
    expect(
      verify(
        'sha256',
        tampered,
        { key: fixture.intermediateKey, dsaEncoding: 'der' },
        leaf.signature,
      ),
    ).toBe(false);
  });
});

describe('the extensions of an issued leaf', () => {
  test('come in Go’s order: KU, EKU, SKI, AKI, SAN, then Fulcio 1.1, 1.8, 1.24', async () => {
    const leaf = await issue(request());
    expect(extensionsOf(leaf).map((e) => e.extnID)).toEqual([
      OIDS.keyUsage,
      OIDS.extKeyUsage,
      OIDS.subjectKeyIdentifier,
      OIDS.authorityKeyIdentifier,
      OIDS.subjectAltName,
      FULCIO_OID.issuerV1,
      FULCIO_OID.issuerV2,
      FULCIO_OID.tokenSubject,
    ]);
  });

  test('has KeyUsage digitalSignature only, critical (03 02 07 80)', async () => {
    const leaf = await issue(request());
    expect(ext(leaf, OIDS.keyUsage).critical).toBe(true);
    expect(hex(extValue(leaf, OIDS.keyUsage))).toBe('03020780');
  });

  test('has ExtKeyUsage codeSigning only, non-critical', async () => {
    const leaf = await issue(request());
    expect(ext(leaf, OIDS.extKeyUsage).critical).toBe(false);
    expect(hex(extValue(leaf, OIDS.extKeyUsage))).toBe('300a06082b06010505070303');
  });

  test('has no BasicConstraints', async () => {
    const leaf = await issue(request());
    expect(extensionsOf(leaf).some((e) => e.extnID === '2.5.29.19')).toBe(false);
  });

  test('has an SKI that is the SHA-1 of the subjectPublicKey bits', async () => {
    const key = makeKey('p384');
    const spki = key.publicKey.export({ type: 'spki', format: 'der' });
    const leaf = await issue(request({ publicKey: new Uint8Array(spki) }));
    // For an EC key the BIT STRING holds the raw point, which JWK x||y gives us independently.
    const jwk = key.publicKey.export({ format: 'jwk' });
    const point = Buffer.concat([
      Buffer.from([0x04]),
      Buffer.from(jwk.x!, 'base64url'),
      Buffer.from(jwk.y!, 'base64url'),
    ]);
    expect(ext(leaf, OIDS.subjectKeyIdentifier).critical).toBe(false);
    expect(subjectKeyId(leaf)).toEqual(createHash('sha1').update(point).digest());
    expect(hex(extValue(leaf, OIDS.subjectKeyIdentifier))).toMatch(/^0414[0-9a-f]{40}$/);
  });

  test('has an AKI naming the intermediate’s SKI', async () => {
    const leaf = await issue(request());
    const aki = extValue(leaf, OIDS.authorityKeyIdentifier);
    expect(ext(leaf, OIDS.authorityKeyIdentifier).critical).toBe(false);
    expect(aki).toEqual(
      Buffer.concat([Buffer.from('30168014', 'hex'), subjectKeyId(fixture.intermediate)]),
    );
  });

  test('has a critical SAN with exactly one rfc822Name for an email identity', async () => {
    const leaf = await issue(request());
    expect(ext(leaf, OIDS.subjectAltName).critical).toBe(true);
    const value = extValue(leaf, OIDS.subjectAltName);
    const expected = Buffer.concat([Buffer.from([0x81, EMAIL.length]), Buffer.from(EMAIL)]);
    expect(value).toEqual(Buffer.concat([Buffer.from([0x30, expected.length]), expected]));
  });

  test('has a critical SAN with exactly one URI for a uri identity', async () => {
    const uri = 'https://github.com/sigstore/fulcio/.github/workflows/ci.yml@refs/heads/main';
    const leaf = await issue(request({ identity: identity({ type: 'uri', value: uri }) }));
    expect(ext(leaf, OIDS.subjectAltName).critical).toBe(true);
    const expected = Buffer.concat([Buffer.from([0x86, uri.length]), Buffer.from(uri)]);
    expect(extValue(leaf, OIDS.subjectAltName)).toEqual(
      Buffer.concat([Buffer.from([0x30, expected.length]), expected]),
    );
  });

  test('has a critical SAN with exactly one Fulcio otherName for a username identity', async () => {
    const username = 'alice!example.com';
    const leaf = await issue(
      request({ identity: identity({ type: 'otherName', value: username }) }),
    );
    expect(ext(leaf, OIDS.subjectAltName).critical).toBe(true);
    const names = asn1js.fromBER(ab(extValue(leaf, OIDS.subjectAltName))).result as asn1js.Sequence;
    expect(names.valueBlock.value).toHaveLength(1);
    const otherName = names.valueBlock.value[0] as asn1js.Constructed;
    expect(otherName.idBlock.tagClass).toBe(3);
    expect(otherName.idBlock.tagNumber).toBe(0);
    const [typeId, wrapped] = otherName.valueBlock.value as [
      asn1js.ObjectIdentifier,
      asn1js.Constructed,
    ];
    expect(typeId.valueBlock.toString()).toBe(FULCIO_OID.otherNameSan);
    expect(wrapped.idBlock.tagClass).toBe(3);
    expect(wrapped.idBlock.tagNumber).toBe(0);
    const inner = wrapped.valueBlock.value[0] as asn1js.Utf8String;
    expect(inner).toBeInstanceOf(asn1js.Utf8String);
    expect(inner.valueBlock.value).toBe(username);
  });

  test('has 1.1 (issuer, deprecated) as the raw bytes of the issuer URL', async () => {
    const leaf = await issue(request());
    expect(ext(leaf, FULCIO_OID.issuerV1).critical).toBe(false);
    expect(extValue(leaf, FULCIO_OID.issuerV1).toString('utf8')).toBe(ISSUER_URL);
  });

  test.each([
    ['1.8 (issuer v2)', FULCIO_OID.issuerV2, ISSUER_URL],
    ['1.24 (token subject)', FULCIO_OID.tokenSubject, SUBJECT],
  ])('has %s as a DER UTF8String, tag 12, with no trailing bytes', async (_name, oid, value) => {
    const leaf = await issue(request());
    expect(ext(leaf, oid).critical).toBe(false);
    const bytes = extValue(leaf, oid);
    const decoded = asn1js.fromBER(ab(bytes));
    expect(decoded.offset).toBe(bytes.length);
    expect(decoded.result.idBlock.tagClass).toBe(1);
    expect(decoded.result.idBlock.tagNumber).toBe(12);
    expect((decoded.result as asn1js.Utf8String).valueBlock.value).toBe(value);
    expect(bytes).toEqual(Buffer.concat([Buffer.from([0x0c, value.length]), Buffer.from(value)]));
  });

  test('omits Fulcio extensions whose value is empty', async () => {
    const leaf = await issue(
      request({
        identity: identity({ type: 'email', value: EMAIL }, [
          { oid: FULCIO_OID.issuerV1, value: ISSUER_URL, encoding: 'raw' },
          { oid: '1.3.6.1.4.1.57264.1.2', value: '', encoding: 'raw' },
          { oid: FULCIO_OID.issuerV2, value: ISSUER_URL, encoding: 'utf8' },
          { oid: '1.3.6.1.4.1.57264.1.23', value: '', encoding: 'utf8' },
          { oid: FULCIO_OID.tokenSubject, value: '', encoding: 'utf8' },
        ]),
      }),
    );
    const ids = extensionsOf(leaf).map((e) => e.extnID);
    expect(ids).toContain(FULCIO_OID.issuerV2);
    expect(ids).not.toContain('1.3.6.1.4.1.57264.1.2');
    expect(ids).not.toContain('1.3.6.1.4.1.57264.1.23');
    expect(ids).not.toContain(FULCIO_OID.tokenSubject);
    expect(ids).toHaveLength(7);
  });

  test('encodes a UTF-8 extension value with multi-byte characters by its byte length', async () => {
    const subject = 'zoë-ünïcode';
    const leaf = await issue(
      request({
        identity: identity({ type: 'email', value: EMAIL }, [
          { oid: FULCIO_OID.issuerV1, value: ISSUER_URL, encoding: 'raw' },
          { oid: FULCIO_OID.issuerV2, value: ISSUER_URL, encoding: 'utf8' },
          { oid: FULCIO_OID.tokenSubject, value: subject, encoding: 'utf8' },
        ]),
      }),
    );
    const utf8 = Buffer.from(subject, 'utf8');
    expect(extValue(leaf, FULCIO_OID.tokenSubject)).toEqual(
      Buffer.concat([Buffer.from([0x0c, utf8.length]), utf8]),
    );
  });
});

describe('leaf profile with other client keys', () => {
  test.each<KeyKind>(['p521', 'rsa3072', 'ed25519'])(
    'issues for a %s client key with the same profile and that key’s SKI',
    async (kind) => {
      const req = request({}, kind);
      const leaf = await issue(req);
      expect(leaf.tbsFields[6]!).toEqual(Buffer.from(req.publicKey));
      expect(extensionsOf(leaf).map((e) => e.extnID)).toHaveLength(8);
      const bits = Buffer.from(
        new pkijs.PublicKeyInfo({ schema: asn1js.fromBER(ab(req.publicKey)).result })
          .subjectPublicKey.valueBlock.valueHexView,
      );
      expect(subjectKeyId(leaf)).toEqual(createHash('sha1').update(bits).digest());
      expect(
        new X509Certificate(leaf.der).publicKey.export({ type: 'spki', format: 'der' }),
      ).toEqual(Buffer.from(req.publicKey));
    },
  );
});
