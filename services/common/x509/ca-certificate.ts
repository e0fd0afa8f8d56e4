import { randomBytes, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { toArrayBuffer } from '../encoding';
import type { SignatureHash } from '../signer/signer';
import {
  assembleCertificate,
  authorityKeyIdExtension,
  caBasicConstraintsExtension,
  certificateTime,
  extension,
  extKeyUsageExtension,
  keyIdentifierOf,
  name as nameOf,
  parseDer,
  signatureAlgorithmFor,
  spkiOf,
  subjectKeyIdExtension,
  X509_OID,
} from './der';

export { keyIdentifierOf } from './der';

/**
 * CA certificates (a self-signed root, an issuing intermediate) in Fulcio's chain profile:
 * KeyUsage certSign|cRLSign (critical), BasicConstraints CA with a path length (critical),
 * EKU codeSigning on an intermediate, SKI = SHA-1 of the key bits, AKI = the issuer's SKI,
 * no name constraints. Built for the key ceremony (`mayfly ca create` / `ca rotate`), where
 * the issuer's key is in an HSM (the builder only hands the TBS to `issuer.sign`), and for
 * the CA's ephemeral chain.
 */

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

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
  /** The serial's octets (positive); 20 random octets when absent. */
  readonly serial?: Uint8Array | undefined;
}

/** One attribute per RDN, UTF8String, in a fixed order (O, then CN). */
function name(dn: DistinguishedName): pkijs.RelativeDistinguishedNames {
  return nameOf([
    ...(dn.organization ? [{ oid: X509_OID.organization, value: dn.organization }] : []),
    { oid: X509_OID.commonName, value: dn.commonName },
  ]);
}

function positiveSerial(): asn1js.Integer {
  const bytes = randomBytes(20);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return new asn1js.Integer({ valueHex: toArrayBuffer(new Uint8Array(bytes)) });
}

export async function buildCaCertificate(spec: CaCertificateSpec): Promise<Uint8Array> {
  const algorithm = signatureAlgorithmFor(spec.issuerSigner.publicKey, spec.issuerSigner.hash);
  const spki = spkiOf(spec.subjectKey);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = spec.serial
    ? new asn1js.Integer({ valueHex: toArrayBuffer(spec.serial) })
    : positiveSerial();
  cert.signature = algorithm;
  cert.issuer = name(spec.issuer);
  cert.subject = name(spec.subject);
  cert.notBefore = certificateTime(spec.notBefore);
  cert.notAfter = certificateTime(spec.notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: parseDer(spki) });
  cert.extensions = [
    extension(X509_OID.keyUsage, true, KU_CERT_SIGN_CRL_SIGN),
    ...(spec.codeSigningEku ? [extKeyUsageExtension([CODE_SIGNING], false)] : []),
    caBasicConstraintsExtension(spec.pathLen),
    subjectKeyIdExtension(spki),
    authorityKeyIdExtension(keyIdentifierOf(spec.issuerSigner.publicKey)),
  ];
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  return assembleCertificate(tbs, algorithm, await spec.issuerSigner.sign(tbs));
}
