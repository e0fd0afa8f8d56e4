import type { Clock } from '../../common/clock';
import type { CaSigner, KeySigner } from '../../common/signer/signer';
import { buildCaCertificate } from '../../common/x509/ca-certificate';
import { encodeSerial } from './der';
import { randomSerial } from './serial';

/**
 * The ephemeral backend's chain: a self-signed root (pathlen 1) and an issuing intermediate
 * (pathlen 0, EKU codeSigning) in Fulcio's chain profile, built by the same CA-certificate
 * builder as the key ceremony. Serials are drawn like the leaves' (uniform in [1, 2^159)).
 */

const YEAR_MS = 365 * 24 * 3600 * 1000;

function serial(): Uint8Array {
  return new Uint8Array(encodeSerial(randomSerial()).valueBlock.valueHexView);
}

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
  const rootName = { organization: 'mayfly', commonName: 'mayfly ephemeral root' };
  const intermediateName = { organization: 'mayfly', commonName: 'mayfly ephemeral intermediate' };
  const rootDer = await buildCaCertificate({
    subject: rootName,
    issuer: rootName,
    subjectKey: root.publicKey,
    issuerSigner: root,
    pathLen: 1,
    codeSigningEku: false,
    notBefore: now,
    notAfter: new Date(now.getTime() + 10 * YEAR_MS),
    serial: serial(),
  });
  const intermediateDer = await buildCaCertificate({
    subject: intermediateName,
    issuer: rootName,
    subjectKey: intermediate.publicKey,
    issuerSigner: root,
    pathLen: 0,
    codeSigningEku: true,
    notBefore: now,
    notAfter: new Date(now.getTime() + 3 * YEAR_MS),
    serial: serial(),
  });
  return intermediate.withChain([intermediateDer, rootDer]);
}
