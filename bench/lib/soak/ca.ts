import { X509Certificate, createPrivateKey } from 'node:crypto';
import { encodePem } from '../../../services/common/encoding';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../../services/common/clock';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../../../services/common/signer/signer';

/**
 * One CA for the whole soak: a root and an issuing intermediate made once, with mayfly's own
 * chain builder, and written as the files of a file CA (MAYFLY_CA=file). Every replica loads
 * the same files, so every certificate, whichever replica issued it, chains to one root.
 */

export interface SoakCa {
  readonly chainFile: string;
  readonly keyFile: string;
  /** Issuing certificate first, root last. */
  readonly chain: readonly X509Certificate[];
}

export async function makeSoakCa(dir: string): Promise<SoakCa> {
  const intermediate = generateEphemeralKey();
  const signer = await createEphemeralChain(generateEphemeralKey(), intermediate, systemClock);
  // The only export of a KeySigner's private key (meant for cluster workers); the root key
  // is never exported: it signed the intermediate and is gone.
  const transfer = intermediate.exportForWorkers(signer.chain);
  const chainFile = join(dir, 'chain.pem');
  const keyFile = join(dir, 'key.pem');
  writeFileSync(chainFile, signer.chain.map((der) => encodePem('CERTIFICATE', der)).join(''));
  writeFileSync(
    keyFile,
    createPrivateKey(transfer.key).export({ type: 'pkcs8', format: 'pem' }).toString(),
    { mode: 0o600 },
  );
  chmodSync(keyFile, 0o600);
  const chain = signer.chain.map((der) => new X509Certificate(der));
  const root = chain[chain.length - 1]!;
  if (!root.checkIssued(root) || !root.verify(root.publicKey))
    throw new Error('the soak root is not self-signed');
  for (let i = 0; i + 1 < chain.length; i++)
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey))
      throw new Error('the soak chain does not verify');
  return { chainFile, keyFile, chain };
}
