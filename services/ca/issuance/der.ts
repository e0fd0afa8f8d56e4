import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../../common/encoding';
import { extKeyUsageExtension, parseDer } from '../../common/x509/der';
import { OID } from './oids';

/**
 * The CA's ASN.1 helpers. The X.509 building blocks shared with the key ceremony and the TSA
 * live in services/common/x509/der.ts and are re-exported here for the issuance code.
 */
export {
  assembleCertificate,
  authorityKeyIdExtension,
  certificateTime,
  extension,
  keyIdentifier,
  name,
  parseDer,
  signatureAlgorithmFor,
  subjectKeyIdExtension,
} from '../../common/x509/der';

/** A positive serial that fits in 20 octets: 159 random bits, never zero. */
export function encodeSerial(serial: Uint8Array): asn1js.Integer {
  let start = 0;
  while (start < serial.length - 1 && serial[start] === 0) start++;
  let bytes = serial.slice(start);
  if ((bytes[0] ?? 0) & 0x80) bytes = Uint8Array.from([0, ...bytes]);
  return new asn1js.Integer({ valueHex: toArrayBuffer(bytes) });
}

/**
 * The exact bytes of a certificate's subject Name, so a leaf's issuer field matches its
 * CA byte for byte (re-encoding could change string types and break chain building).
 */
export function subjectNameDer(certDer: Uint8Array): Uint8Array {
  const cert = parseDer(certDer);
  const tbs = cert instanceof asn1js.Sequence ? cert.valueBlock.value[0] : undefined;
  if (!(tbs instanceof asn1js.Sequence)) throw new Error('certificate has no TBS');
  const fields = tbs.valueBlock.value;
  // [0] EXPLICIT version is optional; subject is the fifth field after it.
  const offset = fields[0]?.idBlock.tagClass === 3 ? 1 : 0;
  const subject = fields[offset + 4];
  if (!subject) throw new Error('certificate has no subject');
  return new Uint8Array(subject.valueBeforeDecodeView);
}

/**
 * The key identifier in a certificate's SubjectKeyIdentifier extension, if it has one.
 * A CA may choose any identifier (RFC 5280 §4.2.1.2), so a leaf's AKI must copy it rather
 * than recompute it: verifiers match the two byte for byte.
 */
export function subjectKeyIdOf(certDer: Uint8Array): Uint8Array | undefined {
  const cert = new pkijs.Certificate({ schema: parseDer(certDer) });
  const ski = cert.extensions?.find((e) => e.extnID === OID.subjectKeyIdentifier);
  if (!ski) return undefined;
  const value = parseDer(new Uint8Array(ski.extnValue.valueBlock.valueHexView));
  if (!(value instanceof asn1js.OctetString)) throw new Error('malformed SubjectKeyIdentifier');
  return new Uint8Array(value.valueBlock.valueHexView);
}

/** EKU codeSigning only (leaves, and issuing CAs per Fulcio's chain profile). */
export function codeSigningEkuExtension(): pkijs.Extension {
  return extKeyUsageExtension([OID.codeSigning], false);
}
