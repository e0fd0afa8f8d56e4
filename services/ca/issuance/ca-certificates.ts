import type { KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { OID } from './oids';
import type { Clock } from '../../common/clock';
import type { CaSigner, KeySigner } from '../../common/signer/signer';
import {
  assembleCertificate,
  authorityKeyIdExtension,
  codeSigningEkuExtension,
  certificateTime,
  encodeSerial,
  extension,
  keyIdentifier,
  name,
  signatureAlgorithmFor,
  parseDer,
  subjectKeyIdExtension,
} from './der';
import { randomSerial } from './serial';

/**
 * CA certificates for the ephemeral backend: a self-signed root (pathlen 1) and an
 * issuing intermediate (pathlen 0, EKU codeSigning), matching Fulcio's chain profile.
 */

const KU_CERT_SIGN_CRL_SIGN = Uint8Array.from([0x03, 0x02, 0x01, 0x06]);

interface CaCertificateSpec {
  readonly subject: pkijs.RelativeDistinguishedNames;
  readonly issuer: pkijs.RelativeDistinguishedNames;
  readonly subjectKey: KeyObject;
  readonly issuerKey: KeyObject;
  readonly pathLen: number;
  readonly codeSigningEku: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly signer: KeySigner;
}

async function buildCaCertificate(spec: CaCertificateSpec): Promise<Uint8Array> {
  const spki = new Uint8Array(spec.subjectKey.export({ format: 'der', type: 'spki' }));
  const issuerSpki = new Uint8Array(spec.issuerKey.export({ format: 'der', type: 'spki' }));
  const algorithm = signatureAlgorithmFor(spec.issuerKey, spec.signer.hash);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = encodeSerial(randomSerial());
  cert.signature = algorithm;
  cert.issuer = spec.issuer;
  cert.subject = spec.subject;
  cert.notBefore = certificateTime(spec.notBefore);
  cert.notAfter = certificateTime(spec.notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: parseDer(spki) });
  cert.extensions = [
    extension(OID.keyUsage, true, KU_CERT_SIGN_CRL_SIGN),
    ...(spec.codeSigningEku ? [codeSigningEkuExtension()] : []),
    extension(
      OID.basicConstraints,
      true,
      new asn1js.Sequence({
        value: [new asn1js.Boolean({ value: true }), new asn1js.Integer({ value: spec.pathLen })],
      }).toBER(false),
    ),
    subjectKeyIdExtension(spki),
    authorityKeyIdExtension(keyIdentifier(issuerSpki)),
  ];
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  return assembleCertificate(tbs, algorithm, await spec.signer.sign(tbs));
}

const YEAR_MS = 365 * 24 * 3600 * 1000;

/**
 * Builds the ephemeral chain and returns the issuing signer bound to it. The root key is
 * used once, to sign the intermediate, and is then dropped.
 */
export async function createEphemeralChain(
  root: KeySigner,
  intermediate: KeySigner,
  clock: Clock,
): Promise<CaSigner> {
  const now = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
  const rootName = name([
    { oid: OID.organization, value: 'mayfly' },
    { oid: OID.commonName, value: 'mayfly ephemeral root' },
  ]);
  const intermediateName = name([
    { oid: OID.organization, value: 'mayfly' },
    { oid: OID.commonName, value: 'mayfly ephemeral intermediate' },
  ]);
  const rootDer = await buildCaCertificate({
    subject: rootName,
    issuer: rootName,
    subjectKey: root.publicKey,
    issuerKey: root.publicKey,
    pathLen: 1,
    codeSigningEku: false,
    notBefore: now,
    notAfter: new Date(now.getTime() + 10 * YEAR_MS),
    signer: root,
  });
  const intermediateDer = await buildCaCertificate({
    subject: intermediateName,
    issuer: rootName,
    subjectKey: intermediate.publicKey,
    issuerKey: root.publicKey,
    pathLen: 0,
    codeSigningEku: true,
    notBefore: now,
    notAfter: new Date(now.getTime() + 3 * YEAR_MS),
    signer: root,
  });
  return intermediate.withChain([intermediateDer, rootDer]);
}
