import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from '../../services/ca/issuance/oids';
import {
  FULCIO_OID,
  type CertificateIdentity,
} from '../../services/ca/certificate-identity/certificate-identity';
import {
  authorityKeyIdExtension,
  certificateTime,
  codeSigningEkuExtension,
  encodeSerial,
  extension,
  name,
  parseDer,
  subjectKeyIdExtension,
} from '../../services/ca/issuance/der';

/**
 * The code-signing leaf profile (fulcio-reference §3): empty subject, one critical SAN,
 * KeyUsage digitalSignature (critical), EKU codeSigning, SKI, AKI, then the Fulcio
 * extensions in the order the identity lists them. Extension order follows Go's
 * x509.CreateCertificate so certificates compare with Fulcio's.
 */

export interface LeafFields {
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Uint8Array;
  readonly identity: CertificateIdentity;
  /** DER Name of the issuing certificate's subject, copied byte for byte. */
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  readonly signatureAlgorithm: pkijs.AlgorithmIdentifier;
}

const KU_DIGITAL_SIGNATURE = Uint8Array.from([0x03, 0x02, 0x07, 0x80]);

export function subjectAltName(identity: CertificateIdentity): ArrayBuffer {
  const { type, value } = identity.san;
  let generalName: asn1js.AsnType;
  if (type === 'otherName') {
    generalName = new asn1js.Constructed({
      idBlock: { tagClass: 3, tagNumber: 0 },
      value: [
        new asn1js.ObjectIdentifier({ value: FULCIO_OID.otherNameSan }),
        new asn1js.Constructed({
          idBlock: { tagClass: 3, tagNumber: 0 },
          value: [new asn1js.Utf8String({ value })],
        }),
      ],
    });
  } else {
    // rfc822Name [1] and uniformResourceIdentifier [6] are IA5String, implicitly tagged.
    generalName = new asn1js.Primitive({
      idBlock: { tagClass: 3, tagNumber: type === 'email' ? 1 : 6 },
      valueHex: new TextEncoder().encode(value),
    });
  }
  return new asn1js.Sequence({ value: [generalName] }).toBER(false);
}

function fulcioExtensions(identity: CertificateIdentity): pkijs.Extension[] {
  return identity.extensions
    .filter((e) => e.value.length > 0)
    .map((e) =>
      extension(
        e.oid,
        false,
        e.encoding === 'raw'
          ? new TextEncoder().encode(e.value)
          : new asn1js.Utf8String({ value: e.value }).toBER(false),
      ),
    );
}

export function buildLeafTbs(fields: LeafFields): Uint8Array {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = encodeSerial(fields.serial);
  cert.signature = fields.signatureAlgorithm;
  cert.issuer = new pkijs.RelativeDistinguishedNames({ schema: parseDer(fields.issuerName) });
  cert.notBefore = certificateTime(fields.notBefore);
  cert.notAfter = certificateTime(fields.notAfter);
  cert.subject = name([]);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: parseDer(fields.spki) });
  cert.extensions = [
    extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE),
    codeSigningEkuExtension(),
    subjectKeyIdExtension(fields.spki),
    authorityKeyIdExtension(fields.authorityKeyId),
    // Critical because the subject is empty (RFC 5280 §4.2.1.6).
    extension(OID.subjectAltName, true, subjectAltName(fields.identity)),
    ...fulcioExtensions(fields.identity),
  ];
  return new Uint8Array(cert.encodeTBS().toBER(false));
}
