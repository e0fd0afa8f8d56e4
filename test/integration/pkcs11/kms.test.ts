import { X509Certificate, createPublicKey, verify, type KeyObject } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { kmsSigner, type KmsKey } from '../../../services/common/signer/kms';
import { ecdsaRawToDer } from '../../../services/common/signer/pkcs11/pkcs11-signer';
import {
  closeModule,
  closeSession,
  findKeys,
  findSlot,
  openModule,
  openSession,
  type Pkcs11,
} from '../../../services/common/signer/pkcs11/token';
import { SoftHsm, makeChain } from '../../helpers/softhsm';

/**
 * The kms adapter contract against a real external key store that signs digests only, as
 * AWS KMS does in DIGEST mode: a SoftHSM2 key driven with CKM_ECDSA over a digest made by
 * the caller. What crosses the interface is a digest one way and a DER signature the
 * other; the key is proven against the issuing certificate before the CA uses it.
 */

const PIN = '1122';
const TOKEN = `kms-${process.pid}-${Date.now().toString(36)}`;
let hsm: SoftHsm;
let mod: Pkcs11;
let session: Buffer;
const chains = new Map<string, { chain: readonly Uint8Array[]; key: KeyObject }>();

beforeAll(async () => {
  hsm = new SoftHsm();
  hsm.initToken(TOKEN, PIN);
  for (const [label, kind] of [
    ['p256', 'p256'],
    ['p384', 'p384'],
    ['other', 'p256'],
  ] as const) {
    const ca = await makeChain(kind);
    hsm.importKey(TOKEN, PIN, ca.key, label, Buffer.from(label).toString('hex'));
    chains.set(label, ca);
  }
  mod = openModule(hsm.module);
  session = openSession(mod, findSlot(mod, TOKEN), PIN);
});

afterAll(() => {
  closeSession(mod, session);
  closeModule(mod);
  hsm?.close();
});

/** A "KMS" holding the key `label`: signs the digest it is given, nothing else. */
function tokenKms(label: string, seen: Uint8Array[] = []): KmsKey {
  const [handle] = findKeys(mod, session, pkcs11js.CKO_PRIVATE_KEY, { label });
  return {
    publicKey: () =>
      Promise.resolve(
        new Uint8Array(
          createPublicKey(chains.get(label)!.key).export({ format: 'der', type: 'spki' }),
        ),
      ),
    signDigest: (digest) => {
      seen.push(digest);
      mod.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, handle!);
      const raw = mod.C_Sign(session, Buffer.from(digest), Buffer.alloc(132));
      return Promise.resolve(ecdsaRawToDer(raw));
    },
  };
}

test.each(['p256', 'p384'])(
  'a %s KMS key signs digests that verify as CA signatures',
  async (label) => {
    const { chain } = chains.get(label)!;
    const seen: Uint8Array[] = [];
    const signer = await kmsSigner(tokenKms(label, seen), chain);
    const tbs = Buffer.from('a TBS certificate, in spirit');
    const signature = await signer.sign(tbs);
    const issuing = new X509Certificate(chain[0]!);
    expect(
      verify(signer.hash, tbs, { key: issuing.publicKey, dsaEncoding: 'der' }, signature),
    ).toBe(true);
    // Only digests crossed (the start challenge's and the TBS's), never the TBS itself.
    expect(seen.map((d) => d.length)).toEqual(label === 'p256' ? [32, 32] : [48, 48]);
    expect(seen.some((d) => Buffer.from(d).includes(tbs))).toBe(false);
  },
);

test('a KMS key that is not the certificate key is refused before the CA starts', async () => {
  await expect(kmsSigner(tokenKms('other'), chains.get('p256')!.chain)).rejects.toThrow(
    /public keys are not equal/,
  );
});

test('a KMS that answers with a signature by another key is refused', async () => {
  const liar: KmsKey = {
    publicKey: tokenKms('p256').publicKey,
    signDigest: tokenKms('other').signDigest,
  };
  await expect(kmsSigner(liar, chains.get('p256')!.chain)).rejects.toThrow(/does not verify/);
});
