import { createHash, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../../common/encoding';
import type { SignatureHash } from '../../common/signer/signer';
import { OID } from './oids';

/** Small ASN.1 building blocks shared by the leaf and CA certificate builders. */

export function parseDer(der: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(toArrayBuffer(der));
  if (parsed.offset === -1) throw new Error(`malformed DER: ${parsed.result.error}`);
  return parsed.result;
}

export function extension(
  extnID: string,
  critical: boolean,
  value: ArrayBuffer | Uint8Array,
): pkijs.Extension {
  const bytes = value instanceof Uint8Array ? toArrayBuffer(value) : value;
  // pkijs would try to parse the value to `parsedValue`; Fulcio's raw extensions (1.1–1.6)
  // are not DER, so the OctetString is set directly.
  const ext = new pkijs.Extension({ extnID, critical });
  ext.extnValue = new asn1js.OctetString({ valueHex: bytes });
  return ext;
}

export function signatureAlgorithmFor(
  key: KeyObject,
  hash: SignatureHash,
): pkijs.AlgorithmIdentifier {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const oid = {
        sha256: '1.2.840.10045.4.3.2',
        sha384: '1.2.840.10045.4.3.3',
        sha512: '1.2.840.10045.4.3.4',
      }[hash ?? 'sha256'];
      return new pkijs.AlgorithmIdentifier({ algorithmId: oid });
    }
    case 'rsa': {
      const oid = {
        sha256: '1.2.840.113549.1.1.11',
        sha384: '1.2.840.113549.1.1.12',
        sha512: '1.2.840.113549.1.1.13',
      }[hash ?? 'sha256'];
      return new pkijs.AlgorithmIdentifier({
        algorithmId: oid,
        algorithmParams: new asn1js.Null(),
      });
    }
    case 'rsa-pss': {
      // An RSA CA key that signs with PSS (the pkcs11 signer's rsaPadding: pss): RFC 4055
      // parameters, MGF1 with the same hash, salt as long as the hash.
      const name = hash ?? 'sha256';
      const digest = new pkijs.AlgorithmIdentifier({
        algorithmId: {
          sha256: '2.16.840.1.101.3.4.2.1',
          sha384: '2.16.840.1.101.3.4.2.2',
          sha512: '2.16.840.1.101.3.4.2.3',
        }[name],
        algorithmParams: new asn1js.Null(),
      });
      const params = new pkijs.RSASSAPSSParams({
        hashAlgorithm: digest,
        maskGenAlgorithm: new pkijs.AlgorithmIdentifier({
          algorithmId: '1.2.840.113549.1.1.8',
          algorithmParams: digest.toSchema(),
        }),
        saltLength: { sha256: 32, sha384: 48, sha512: 64 }[name],
      });
      return new pkijs.AlgorithmIdentifier({
        algorithmId: '1.2.840.113549.1.1.10',
        algorithmParams: params.toSchema(),
      });
    }
    case 'ed25519':
      return new pkijs.AlgorithmIdentifier({ algorithmId: '1.3.101.112' });
    default:
      throw new Error(`unsupported CA key type ${String(key.asymmetricKeyType)}`);
  }
}

/** SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2 method 1). */
export function keyIdentifier(spki: Uint8Array): Uint8Array {
  const info = new pkijs.PublicKeyInfo({ schema: parseDer(spki) });
  return new Uint8Array(
    createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest(),
  );
}

/** Whole-second dates as UTCTime until 2049 and GeneralizedTime after (RFC 5280 §4.1.2.5). */
export function certificateTime(date: Date): pkijs.Time {
  const type =
    date.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  return new pkijs.Time({ type, value: date });
}

/**
 * A Name with one attribute per RDN (pkijs would put them all in one multi-valued RDN and
 * encode an empty Name as SEQUENCE { SET {} } instead of Fulcio's empty SEQUENCE). Built
 * from DER so pkijs keeps the exact bytes.
 */
export function name(
  entries: readonly { oid: string; value: string }[],
): pkijs.RelativeDistinguishedNames {
  const sequence = new asn1js.Sequence({
    value: entries.map(
      (e) =>
        new asn1js.Set({
          value: [
            new asn1js.Sequence({
              value: [
                new asn1js.ObjectIdentifier({ value: e.oid }),
                new asn1js.Utf8String({ value: e.value }),
              ],
            }),
          ],
        }),
    ),
  });
  return new pkijs.RelativeDistinguishedNames({
    schema: parseDer(new Uint8Array(sequence.toBER(false))),
  });
}

/** Wraps a signed TBS into the final Certificate DER. */
export function assembleCertificate(
  tbs: Uint8Array,
  algorithm: pkijs.AlgorithmIdentifier,
  signature: Uint8Array,
): Uint8Array {
  const certificate = new asn1js.Sequence({
    value: [
      parseDer(tbs),
      algorithm.toSchema(),
      new asn1js.BitString({ valueHex: toArrayBuffer(signature) }),
    ],
  });
  return new Uint8Array(certificate.toBER(false));
}

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
  const value = new asn1js.Sequence({
    value: [new asn1js.ObjectIdentifier({ value: OID.codeSigning })],
  });
  return extension(OID.extKeyUsage, false, value.toBER(false));
}

/** SubjectKeyIdentifier: SHA-1 of the certificate's own key bits. */
export function subjectKeyIdExtension(spki: Uint8Array): pkijs.Extension {
  const value = new asn1js.OctetString({ valueHex: keyIdentifier(spki) });
  return extension(OID.subjectKeyIdentifier, false, value.toBER(false));
}

/** AuthorityKeyIdentifier with only the [0] keyIdentifier: the issuer's SKI. */
export function authorityKeyIdExtension(keyId: Uint8Array): pkijs.Extension {
  const value = new asn1js.Sequence({
    value: [new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: keyId })],
  });
  return extension(OID.authorityKeyIdentifier, false, value.toBER(false));
}
