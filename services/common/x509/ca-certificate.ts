import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../encoding';
import type { SignatureHash } from '../signer/signer';

/**
 * CA certificates (a self-signed root, an issuing intermediate) in Fulcio's chain profile:
 * KeyUsage certSign|cRLSign (critical), BasicConstraints CA with a path length (critical),
 * EKU codeSigning on an intermediate, SKI = SHA-1 of the key bits, AKI = the issuer's SKI,
 * no name constraints. Built for the key ceremony (`mayfly ca create` / `ca rotate`), where
 * the issuer's key is in an HSM: the builder only hands the TBS to `issuer.sign`.
 *
 * The same profile as services/ca/issuance/ca-certificates.ts (the ephemeral CA), which can
 * build on this one once both live here.
 */

const OID = {
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

const KU_CERT_SIGN_CRL_SIGN = Uint8Array.from([0x03, 0x02, 0x01, 0x06]);

/** Whoever signs the certificate: a key in a token or in memory. */
export interface CertificateSigner {
  readonly publicKey: KeyObject;
  readonly hash: SignatureHash;
  /** DER signature (ECDSA: Ecdsa-Sig-Value) over the DER TBS. */
  sign(tbs: Uint8Array): Promise<Uint8Array>;
}

export interface DistinguishedName {
  readonly organization?: string | undefined;
  readonly commonName: string;
}

export interface CaCertificateSpec {
  readonly subject: DistinguishedName;
  /** The issuer's name; the subject's for a self-signed root. */
  readonly issuer: DistinguishedName;
  readonly subjectKey: KeyObject;
  readonly issuerSigner: CertificateSigner;
  /** BasicConstraints pathLenConstraint (root 1, intermediate 0). */
  readonly pathLen: number;
  readonly codeSigningEku: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

function parseDer(der: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(toArrayBuffer(der));
  if (parsed.offset === -1) throw new Error(`malformed DER: ${parsed.result.error}`);
  return parsed.result;
}

function extension(extnID: string, critical: boolean, value: ArrayBuffer): pkijs.Extension {
  const ext = new pkijs.Extension({ extnID, critical });
  ext.extnValue = new asn1js.OctetString({ valueHex: value });
  return ext;
}

/** One attribute per RDN, UTF8String, in a fixed order (O, then CN). */
function name(dn: DistinguishedName): pkijs.RelativeDistinguishedNames {
  const entries = [
    ...(dn.organization ? [{ oid: OID.organization, value: dn.organization }] : []),
    { oid: OID.commonName, value: dn.commonName },
  ];
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

function spkiOf(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }));
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1): SKI, and the token CKA_ID. */
export function keyIdentifierOf(key: KeyObject): Uint8Array {
  const info = new pkijs.PublicKeyInfo({ schema: parseDer(spkiOf(key)) });
  return new Uint8Array(
    createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest(),
  );
}

function time(date: Date): pkijs.Time {
  const type =
    date.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  return new pkijs.Time({ type, value: date });
}

function signatureAlgorithm(signer: CertificateSigner): pkijs.AlgorithmIdentifier {
  const hash = signer.hash ?? 'sha256';
  switch (signer.publicKey.asymmetricKeyType) {
    case 'ec':
      return new pkijs.AlgorithmIdentifier({
        algorithmId: {
          sha256: '1.2.840.10045.4.3.2',
          sha384: '1.2.840.10045.4.3.3',
          sha512: '1.2.840.10045.4.3.4',
        }[hash],
      });
    case 'rsa':
      return new pkijs.AlgorithmIdentifier({
        algorithmId: {
          sha256: '1.2.840.113549.1.1.11',
          sha384: '1.2.840.113549.1.1.12',
          sha512: '1.2.840.113549.1.1.13',
        }[hash],
        algorithmParams: new asn1js.Null(),
      });
    default:
      throw new Error(
        `a CA certificate cannot be signed with a ${String(signer.publicKey.asymmetricKeyType)} key here`,
      );
  }
}

function positiveSerial(): asn1js.Integer {
  const bytes = randomBytes(20);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return new asn1js.Integer({ valueHex: toArrayBuffer(new Uint8Array(bytes)) });
}

export async function buildCaCertificate(spec: CaCertificateSpec): Promise<Uint8Array> {
  const algorithm = signatureAlgorithm(spec.issuerSigner);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = positiveSerial();
  cert.signature = algorithm;
  cert.issuer = name(spec.issuer);
  cert.subject = name(spec.subject);
  cert.notBefore = time(spec.notBefore);
  cert.notAfter = time(spec.notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({
    schema: parseDer(spkiOf(spec.subjectKey)),
  });
  const aki = new asn1js.Sequence({
    value: [
      new asn1js.Primitive({
        idBlock: { tagClass: 3, tagNumber: 0 },
        valueHex: toArrayBuffer(keyIdentifierOf(spec.issuerSigner.publicKey)),
      }),
    ],
  });
  cert.extensions = [
    extension(OID.keyUsage, true, toArrayBuffer(KU_CERT_SIGN_CRL_SIGN)),
    ...(spec.codeSigningEku
      ? [
          extension(
            OID.extKeyUsage,
            false,
            new asn1js.Sequence({
              value: [new asn1js.ObjectIdentifier({ value: OID.codeSigning })],
            }).toBER(false),
          ),
        ]
      : []),
    extension(
      OID.basicConstraints,
      true,
      new asn1js.Sequence({
        value: [new asn1js.Boolean({ value: true }), new asn1js.Integer({ value: spec.pathLen })],
      }).toBER(false),
    ),
    extension(
      OID.subjectKeyIdentifier,
      false,
      new asn1js.OctetString({
        valueHex: toArrayBuffer(keyIdentifierOf(spec.subjectKey)),
      }).toBER(false),
    ),
    extension(OID.authorityKeyIdentifier, false, aki.toBER(false)),
  ];
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  const signature = await spec.issuerSigner.sign(tbs);
  const certificate = new asn1js.Sequence({
    value: [
      parseDer(tbs),
      algorithm.toSchema(),
      new asn1js.BitString({ valueHex: toArrayBuffer(signature) }),
    ],
  });
  return new Uint8Array(certificate.toBER(false));
}
