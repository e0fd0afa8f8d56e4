import {
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

/**
 * Certificates for CT log tests, built here with pkijs (the log may not import the CA's
 * code): a root, an intermediate, leaves, precertificates (poison, critical or not), a
 * precertificate-signing certificate. Every signature is ECDSA P-256 with SHA-256, made by
 * node:crypto over the DER TBS.
 */

export const POISON_OID = '1.3.6.1.4.1.11129.2.4.3';
export const PRECERT_SIGNING_EKU = '1.3.6.1.4.1.11129.2.4.4';
const ECDSA_SHA256 = '1.2.840.10045.4.3.2';

export interface TestCert {
  readonly der: Buffer;
  readonly key: KeyObject;
  readonly publicKey: KeyObject;
  readonly cert: X509Certificate;
}

export interface CertOptions {
  readonly cn?: string;
  readonly ca?: boolean;
  readonly poison?: 'critical' | 'non-critical';
  readonly eku?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** The issuer; none = self-signed. */
  readonly issuer?: TestCert;
  readonly key?: { privateKey: KeyObject; publicKey: KeyObject };
  /** Writes the issuer's name with a PrintableString (the same name to RFC 5280, other bytes). */
  readonly issuerNamePrintable?: string;
}

function rdn(cn: string): pkijs.RelativeDistinguishedNames {
  return new pkijs.RelativeDistinguishedNames({
    typesAndValues: [
      new pkijs.AttributeTypeAndValue({
        type: '2.5.4.3',
        value: new asn1js.Utf8String({ value: cn }),
      }),
    ],
  });
}

function ext(extnID: string, critical: boolean, value: ArrayBuffer): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value });
}

export function makeCert(options: CertOptions = {}): TestCert {
  const pair = options.key ?? generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const cn = options.cn ?? `test-${randomBytes(4).toString('hex')}`;
  const cert = new pkijs.Certificate();
  cert.version = 2;
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40; // positive and minimally encoded
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  const alg = new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_SHA256 });
  cert.signature = alg;
  cert.subject = rdn(cn);
  cert.issuer = options.issuerNamePrintable
    ? new pkijs.RelativeDistinguishedNames({
        typesAndValues: [
          new pkijs.AttributeTypeAndValue({
            type: '2.5.4.3',
            value: new asn1js.PrintableString({ value: options.issuerNamePrintable }),
          }),
        ],
      })
    : options.issuer
      ? new pkijs.Certificate({ schema: asn1js.fromBER(options.issuer.der).result }).subject
      : rdn(cn);
  const now = Date.now();
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  const time = (value: Date) =>
    new pkijs.Time({ type: value.getUTCFullYear() < 2050 ? 0 : 1, value });
  cert.notBefore = time(options.notBefore ?? new Date(now - 60_000));
  cert.notAfter = time(options.notAfter ?? new Date(now + 600_000));
  const spki = pair.publicKey.export({ type: 'spki', format: 'der' });
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: asn1js.fromBER(spki).result });
  const extensions: pkijs.Extension[] = [];
  if (options.ca) {
    extensions.push(
      ext(
        '2.5.29.19',
        true,
        new asn1js.Sequence({ value: [new asn1js.Boolean({ value: true })] }).toBER(),
      ),
      ext(
        '2.5.29.15',
        true,
        new asn1js.BitString({ valueHex: new Uint8Array([0x06]).buffer, unusedBits: 1 }).toBER(),
      ),
    );
  } else {
    extensions.push(
      ext(
        '2.5.29.15',
        true,
        new asn1js.BitString({ valueHex: new Uint8Array([0x80]).buffer, unusedBits: 7 }).toBER(),
      ),
    );
  }
  if (options.eku?.length) {
    extensions.push(
      ext(
        '2.5.29.37',
        false,
        new asn1js.Sequence({
          value: options.eku.map((o) => new asn1js.ObjectIdentifier({ value: o })),
        }).toBER(),
      ),
    );
  }
  extensions.push(
    ext(
      '2.5.29.17',
      false,
      new asn1js.Sequence({
        value: [
          new asn1js.Primitive({
            idBlock: { tagClass: 3, tagNumber: 1 },
            valueHex: Buffer.from(`${cn}@example.com`),
          }),
        ],
      }).toBER(),
    ),
  );
  if (options.poison)
    extensions.push(ext(POISON_OID, options.poison === 'critical', new asn1js.Null().toBER()));
  cert.extensions = extensions;
  const tbs = Buffer.from(cert.encodeTBS().toBER());
  const signerKey = options.issuer?.key ?? pair.privateKey;
  const signature = sign('sha256', tbs, { key: signerKey, dsaEncoding: 'der' });
  const der = Buffer.from(
    new asn1js.Sequence({
      value: [
        asn1js.fromBER(tbs).result,
        alg.toSchema(),
        new asn1js.BitString({ valueHex: new Uint8Array(signature).buffer }),
      ],
    }).toBER(),
  );
  return { der, key: pair.privateKey, publicKey: pair.publicKey, cert: new X509Certificate(der) };
}

/** A root and an intermediate (what mayfly's CA looks like). */
export function makeHierarchy(): { root: TestCert; intermediate: TestCert } {
  const root = makeCert({ cn: 'test root', ca: true });
  const intermediate = makeCert({ cn: 'test intermediate', ca: true, issuer: root });
  return { root, intermediate };
}

export function b64(der: Buffer): string {
  return der.toString('base64');
}

export function pem(der: Buffer): string {
  const lines = der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `-----BEGIN CERTIFICATE-----\n${lines}\n-----END CERTIFICATE-----\n`;
}
