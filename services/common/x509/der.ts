import { createHash, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../encoding';
import type { SignatureHash } from '../signer/signer';

/**
 * X.509 building blocks shared by every certificate builder (the CA's leaves and CA
 * certificates, the key ceremony, the TSA): Name, Time, signature AlgorithmIdentifier,
 * key identifiers, extensions and the final Certificate assembly.
 */

export const X509_OID = {
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

export function parseDer(der: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(toArrayBuffer(der));
  if (parsed.offset === -1) throw new Error(`malformed DER: ${parsed.result.error}`);
  return parsed.result;
}

/** DER of an asn1js value. */
export function derOf(schema: { toBER(sizeOnly?: boolean): ArrayBuffer }): Uint8Array {
  return new Uint8Array(schema.toBER(false));
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

/** The signature AlgorithmIdentifier for a certificate signed by `key` with `hash`. */
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

export function spkiOf(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }));
}

/** SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2 method 1). */
export function keyIdentifier(spki: Uint8Array): Uint8Array {
  const info = new pkijs.PublicKeyInfo({ schema: parseDer(spki) });
  return new Uint8Array(
    createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest(),
  );
}

/** `keyIdentifier` of a public key: SKI, and the token CKA_ID. */
export function keyIdentifierOf(key: KeyObject): Uint8Array {
  return keyIdentifier(spkiOf(key));
}

/** Whole-second dates as UTCTime until 2049 and GeneralizedTime after (RFC 5280 §4.1.2.5). */
export function certificateTime(date: Date): pkijs.Time {
  const type =
    date.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  return new pkijs.Time({ type, value: date });
}

/**
 * A Name with one UTF8String attribute per RDN, in the order given (pkijs would put them
 * all in one multi-valued RDN and encode an empty Name as SEQUENCE { SET {} } instead of
 * Fulcio's empty SEQUENCE). Built from DER so pkijs keeps the exact bytes.
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
  return new pkijs.RelativeDistinguishedNames({ schema: parseDer(derOf(sequence)) });
}

/** Wraps a signed TBS into the final Certificate DER. */
export function assembleCertificate(
  tbs: Uint8Array,
  algorithm: pkijs.AlgorithmIdentifier,
  signature: Uint8Array,
): Uint8Array {
  return derOf(
    new asn1js.Sequence({
      value: [
        parseDer(tbs),
        algorithm.toSchema(),
        new asn1js.BitString({ valueHex: toArrayBuffer(signature) }),
      ],
    }),
  );
}

/** ExtendedKeyUsage with the given purposes. */
export function extKeyUsageExtension(
  purposes: readonly string[],
  critical: boolean,
): pkijs.Extension {
  const value = new asn1js.Sequence({
    value: purposes.map((oid) => new asn1js.ObjectIdentifier({ value: oid })),
  });
  return extension(X509_OID.extKeyUsage, critical, value.toBER(false));
}

/** SubjectKeyIdentifier: SHA-1 of the certificate's own key bits. */
export function subjectKeyIdExtension(spki: Uint8Array): pkijs.Extension {
  const value = new asn1js.OctetString({ valueHex: toArrayBuffer(keyIdentifier(spki)) });
  return extension(X509_OID.subjectKeyIdentifier, false, value.toBER(false));
}

/** AuthorityKeyIdentifier with only the [0] keyIdentifier: the issuer's SKI. */
export function authorityKeyIdExtension(keyId: Uint8Array): pkijs.Extension {
  const value = new asn1js.Sequence({
    value: [
      new asn1js.Primitive({
        idBlock: { tagClass: 3, tagNumber: 0 },
        valueHex: toArrayBuffer(keyId),
      }),
    ],
  });
  return extension(X509_OID.authorityKeyIdentifier, false, value.toBER(false));
}

/** BasicConstraints cA TRUE, with a pathLenConstraint when given; critical. */
export function caBasicConstraintsExtension(pathLen?: number): pkijs.Extension {
  const value = new asn1js.Sequence({
    value: [
      new asn1js.Boolean({ value: true }),
      ...(pathLen === undefined ? [] : [new asn1js.Integer({ value: pathLen })]),
    ],
  });
  return extension(X509_OID.basicConstraints, true, value.toBER(false));
}
