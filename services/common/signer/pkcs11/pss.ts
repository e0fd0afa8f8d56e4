import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * An RSA public key re-labelled as RSASSA-PSS (id-RSASSA-PSS, no parameters), so that the
 * issuance code, which picks the certificate's signature algorithm from the signer's key
 * type, writes RSASSA-PSS with the hash's parameters. The key itself is unchanged.
 */
export function rsaPssPublicKey(rsaKey: KeyObject, _hash: string): KeyObject {
  if (rsaKey.asymmetricKeyType === 'rsa-pss') return rsaKey;
  const pkcs1 = rsaKey.export({ format: 'der', type: 'pkcs1' });
  const algorithm = Buffer.from('300b06092a864886f70d01010a', 'hex');
  const bitString = Buffer.concat([derHeader(0x03, pkcs1.length + 1), Buffer.from([0]), pkcs1]);
  const body = Buffer.concat([algorithm, bitString]);
  return createPublicKey({
    key: Buffer.concat([derHeader(0x30, body.length), body]),
    format: 'der',
    type: 'spki',
  });
}

function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  if (length < 0x100) return Buffer.from([tag, 0x81, length]);
  return Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
}
