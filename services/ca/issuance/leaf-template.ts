import { FULCIO_OID, type CertificateIdentity } from '../certificate-identity/certificate-identity';
import { TAG, oid, tlv } from './der-codec';
import { OID } from './oids';

/**
 * The leaf certificate (the same profile as test/helpers/leaf.ts): everything fixed for
 * one issuing CA — version, signature algorithm, issuer name, KeyUsage, EKU, AKI — is
 * encoded once; serial, validity, SPKI, SKI, SAN and the Fulcio extensions are spliced in
 * with their DER lengths. buildLeafTbs (pkijs) stays the reference: the unit tests prove the
 * two produce the same bytes for every identity shape, length boundary and key type.
 */

export interface LeafTemplateCa {
  /** DER Name of the issuing certificate's subject, copied byte for byte. */
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  /** DER AlgorithmIdentifier the CA signs with. */
  readonly signatureAlgorithm: Uint8Array;
}

export interface LeafTemplateFields {
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Uint8Array;
  /** The key's identifier (spki.ts leafKeyId), from the CA's one read of the SPKI. */
  readonly subjectKeyId: Uint8Array;
  readonly identity: CertificateIdentity;
}

const VERSION_3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);
const EMPTY_NAME = Buffer.from([0x30, 0x00]);
const CRITICAL = Buffer.from([0x01, 0x01, 0xff]);
const NO_UNUSED_BITS = Buffer.from([0x00]);
const utf8 = new TextEncoder();

/** An Extension: SEQUENCE { OID, [critical TRUE], OCTET STRING value } (FALSE is omitted). */
export function extensionDer(extnId: string, critical: boolean, value: Uint8Array): Buffer {
  const octets = tlv(TAG.octetString, value);
  return critical
    ? tlv(TAG.sequence, oid(extnId), CRITICAL, octets)
    : tlv(TAG.sequence, oid(extnId), octets);
}

/** A positive INTEGER from serial octets: leading zeros dropped, a sign octet if needed. */
export function serialDer(serial: Uint8Array): Buffer {
  let start = 0;
  while (start < serial.length - 1 && serial[start] === 0) start++;
  const bytes = serial.subarray(start);
  return (bytes[0] ?? 0) & 0x80 ? tlv(TAG.integer, NO_UNUSED_BITS, bytes) : tlv(TAG.integer, bytes);
}

function twoDigits(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5), whole seconds. */
export function timeDer(date: Date): Buffer {
  const year = date.getUTCFullYear();
  const rest =
    twoDigits(date.getUTCMonth() + 1) +
    twoDigits(date.getUTCDate()) +
    twoDigits(date.getUTCHours()) +
    twoDigits(date.getUTCMinutes()) +
    twoDigits(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year < 2050)
    return tlv(TAG.utcTime, Buffer.from(twoDigits(year % 100) + rest, 'latin1'));
  return tlv(TAG.generalizedTime, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'));
}

/** The SubjectAltName extension value: SEQUENCE { one GeneralName }. */
export function subjectAltNameDer(identity: CertificateIdentity): Buffer {
  const { type, value } = identity.san;
  if (type === 'otherName') {
    return tlv(
      TAG.sequence,
      tlv(
        TAG.context0,
        oid(FULCIO_OID.otherNameSan),
        tlv(TAG.context0, tlv(TAG.utf8String, utf8.encode(value))),
      ),
    );
  }
  return tlv(
    TAG.sequence,
    tlv(type === 'email' ? TAG.implicit1 : TAG.implicit6, utf8.encode(value)),
  );
}

/** The Fulcio extensions in the identity's order; empty values are left out. */
export function fulcioExtensionsDer(identity: CertificateIdentity): Buffer[] {
  const out: Buffer[] = [];
  for (const e of identity.extensions) {
    if (e.value.length === 0) continue;
    const bytes = utf8.encode(e.value);
    out.push(extensionDer(e.oid, false, e.encoding === 'raw' ? bytes : tlv(TAG.utf8String, bytes)));
  }
  return out;
}

/** The critical poison extension, value ASN.1 NULL (RFC 6962 §3.1). */
export const CT_POISON_EXTENSION = extensionDer(OID.ctPoison, true, Buffer.from([0x05, 0x00]));

/** The SCT list extension: extnValue is an OCTET STRING holding the TLS list (§3.3). */
export function sctListExtensionDer(list: Uint8Array): Buffer {
  return extensionDer(OID.ctSctList, false, tlv(TAG.octetString, list));
}

export class LeafTemplate {
  /** AlgorithmIdentifier + issuer Name: between the serial and the validity. */
  private readonly algorithmAndIssuer: Buffer;
  /** KeyUsage (critical) and EKU codeSigning: the same in every leaf. */
  private readonly usageExtensions: Buffer;
  private readonly authorityKeyIdExtension: Buffer;
  private readonly signatureAlgorithm: Buffer;

  constructor(ca: LeafTemplateCa) {
    this.signatureAlgorithm = Buffer.from(ca.signatureAlgorithm);
    this.algorithmAndIssuer = Buffer.concat([this.signatureAlgorithm, ca.issuerName]);
    this.usageExtensions = Buffer.concat([
      extensionDer(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])),
      extensionDer(OID.extKeyUsage, false, tlv(TAG.sequence, oid(OID.codeSigning))),
    ]);
    this.authorityKeyIdExtension = extensionDer(
      OID.authorityKeyIdentifier,
      false,
      tlv(TAG.sequence, tlv(TAG.implicit0, ca.authorityKeyId)),
    );
  }

  /**
   * The DER TBSCertificate of a leaf. `last` is one encoded extension appended after all
   * the others: the CT poison (precertificate) or the SCT list (final certificate), so that
   * both certificates share every other byte in the same order (RFC 6962 §3.1).
   */
  tbs(fields: LeafTemplateFields, last?: Uint8Array): Buffer {
    const extensions = tlv(
      TAG.context3,
      tlv(
        TAG.sequence,
        this.usageExtensions,
        extensionDer(OID.subjectKeyIdentifier, false, tlv(TAG.octetString, fields.subjectKeyId)),
        this.authorityKeyIdExtension,
        // Critical because the subject is empty (RFC 5280 §4.2.1.6).
        extensionDer(OID.subjectAltName, true, subjectAltNameDer(fields.identity)),
        ...fulcioExtensionsDer(fields.identity),
        ...(last ? [last] : []),
      ),
    );
    return tlv(
      TAG.sequence,
      VERSION_3,
      serialDer(fields.serial),
      this.algorithmAndIssuer,
      tlv(TAG.sequence, timeDer(fields.notBefore), timeDer(fields.notAfter)),
      EMPTY_NAME,
      fields.spki,
      extensions,
    );
  }

  /** Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }. */
  certificate(tbs: Uint8Array, signature: Uint8Array): Buffer {
    return tlv(
      TAG.sequence,
      tbs,
      this.signatureAlgorithm,
      tlv(TAG.bitString, NO_UNUSED_BITS, signature),
    );
  }
}
