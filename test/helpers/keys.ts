import { generateKeyPairSync, sign, createPublicKey, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

/** Key makers for tests: every kind a client may send, good and bad. */

export type KeyKind = 'p256' | 'p384' | 'p521' | 'rsa2048' | 'rsa3072' | 'rsa4096' | 'ed25519';

export interface TestKey {
  readonly kind: KeyKind | string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SPKI PEM, with the trailing newline clients send. */
  readonly pem: string;
}

const cache = new Map<string, TestKey>();

function fromPair(kind: string, pair: { privateKey: KeyObject; publicKey: KeyObject }): TestKey {
  return { kind, ...pair, pem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** A fresh key (RSA keys are cached per kind: generating them is slow). */
export function makeKey(kind: KeyKind): TestKey {
  switch (kind) {
    case 'p256':
      return fromPair(kind, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }));
    case 'p384':
      return fromPair(kind, generateKeyPairSync('ec', { namedCurve: 'secp384r1' }));
    case 'p521':
      return fromPair(kind, generateKeyPairSync('ec', { namedCurve: 'secp521r1' }));
    case 'ed25519':
      return fromPair(kind, generateKeyPairSync('ed25519'));
    default: {
      const bits = Number(kind.slice(3));
      return cachedRsa(kind, bits, 65537);
    }
  }
}

function cachedRsa(kind: string, bits: number, publicExponent: number): TestKey {
  const id = `${kind}/${publicExponent}`;
  let key = cache.get(id);
  if (!key) {
    key = fromPair(kind, generateKeyPairSync('rsa', { modulusLength: bits, publicExponent }));
    cache.set(id, key);
  }
  return key;
}

/** Keys Fulcio's goodkey refuses. */
export const weakKeys = {
  rsa1024: () => cachedRsa('rsa1024', 1024, 65537),
  rsaExponent3: () => cachedRsa('rsa2048-e3', 2048, 3),
  p224: () => fromPair('p224', generateKeyPairSync('ec', { namedCurve: 'secp224r1' })),
  /** A P-256 SPKI whose point is not on the curve (y changed). */
  offCurveP256Pem(): string {
    const der = makeKey('p256').publicKey.export({ type: 'spki', format: 'der' });
    const bytes = Buffer.from(der);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01;
    return toPem('PUBLIC KEY', bytes);
  },
};

export function toPem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `-----BEGIN ${type}-----\n${b64}\n-----END ${type}-----\n`;
}

/** The hash sigstore clients use for a proof with this key. */
export function proofHashFor(key: TestKey): string | null {
  const type = key.publicKey.asymmetricKeyType;
  if (type === 'ed25519') return null;
  if (type === 'ec') {
    const curve = key.publicKey.asymmetricKeyDetails?.namedCurve;
    return curve === 'secp384r1' ? 'sha384' : curve === 'secp521r1' ? 'sha512' : 'sha256';
  }
  return 'sha256';
}

/** A proof of possession: the key's signature over `name`, DER for ECDSA. */
export function proofFor(
  key: TestKey,
  name: string,
  hash: string | null = proofHashFor(key),
): Buffer {
  return sign(hash, Buffer.from(name, 'utf8'), { key: key.privateKey, dsaEncoding: 'der' });
}

const SIGNATURE_OIDS: Record<string, string> = {
  'ec/sha256': '1.2.840.10045.4.3.2',
  'ec/sha384': '1.2.840.10045.4.3.3',
  'ec/sha512': '1.2.840.10045.4.3.4',
  'ec/sha1': '1.2.840.10045.4.1',
  'rsa/sha256': '1.2.840.113549.1.1.11',
  'rsa/sha1': '1.2.840.113549.1.1.5',
  'ed25519/null': '1.3.101.112',
};

/**
 * A PEM PKCS#10 CSR for the key, signed with node:crypto. `corrupt` flips the last byte
 * of the signature; `spki` carries that SubjectPublicKeyInfo instead of the key's own (a
 * key OpenSSL cannot load, still signed by `key`); the subject is arbitrary (mayfly
 * ignores it).
 */
export function makeCsr(
  key: TestKey,
  options: {
    hash?: string | null;
    corrupt?: boolean;
    subjectCn?: string;
    spki?: Buffer;
    /** Leave out PKCS#10's mandatory (here empty) `attributes [0]`: a CSR Go refuses. */
    withoutAttributes?: boolean;
  } = {},
): string {
  const hash = options.hash === undefined ? proofHashFor(key) : options.hash;
  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject.typesAndValues.push(
    new pkijs.AttributeTypeAndValue({
      type: '2.5.4.3',
      value: new asn1js.Utf8String({ value: options.subjectCn ?? 'ignored' }),
    }),
  );
  const spki = options.spki ?? key.publicKey.export({ type: 'spki', format: 'der' });
  csr.subjectPublicKeyInfo = pkijs.PublicKeyInfo.fromBER(spki);
  if (!options.withoutAttributes) csr.attributes = [];
  const oid = SIGNATURE_OIDS[`${key.publicKey.asymmetricKeyType}/${String(hash)}`];
  if (!oid)
    throw new Error(`no signature OID for ${key.publicKey.asymmetricKeyType}/${String(hash)}`);
  csr.signatureAlgorithm = new pkijs.AlgorithmIdentifier({
    algorithmId: oid,
    ...(key.publicKey.asymmetricKeyType === 'rsa' ? { algorithmParams: new asn1js.Null() } : {}),
  });
  // encodeTBS is protected in pkijs' typings; the TBS is what the signature covers.
  const tbs = new Uint8Array(
    (csr as unknown as { encodeTBS(): asn1js.Sequence }).encodeTBS().toBER(false),
  );
  const signature = sign(hash, tbs, { key: key.privateKey, dsaEncoding: 'der' });
  if (options.corrupt) signature[signature.length - 1] = signature[signature.length - 1]! ^ 0xff;
  const outer = new asn1js.Sequence({
    value: [
      asn1js.fromBER(tbs).result,
      csr.signatureAlgorithm.toSchema(),
      new asn1js.BitString({ valueHex: signature }),
    ],
  });
  return toPem('CERTIFICATE REQUEST', new Uint8Array(outer.toBER(false)));
}

/** A public key object from PEM, to compare with certificates. */
export function spkiDer(pem: string): Buffer {
  return createPublicKey(pem).export({ type: 'spki', format: 'der' });
}
