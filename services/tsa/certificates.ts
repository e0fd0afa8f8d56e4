import { createHash, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { Clock } from '../common/clock';
import { toArrayBuffer } from '../common/encoding';
import type { CaSigner, KeySigner, SignatureHash } from '../common/signer/signer';

/**
 * The TSA's certificates: the ephemeral development chain (a self-signed root and a TSA
 * leaf, made at start) and the profile check every chain must pass before the TSA serves.
 */

export const OIDS = {
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

export class TsaChainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TsaChainError';
  }
}

function der(schema: { toBER(sizeOnly?: boolean): ArrayBuffer }): Uint8Array {
  return new Uint8Array(schema.toBER(false));
}

function parse(bytes: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(toArrayBuffer(bytes));
  if (parsed.offset === -1) throw new Error(`malformed DER: ${parsed.result.error}`);
  return parsed.result;
}

function ext(extnID: string, critical: boolean, value: Uint8Array): pkijs.Extension {
  const e = new pkijs.Extension({ extnID, critical });
  e.extnValue = new asn1js.OctetString({ valueHex: toArrayBuffer(value) });
  return e;
}

export function signatureAlgorithm(key: KeyObject, hash: SignatureHash): pkijs.AlgorithmIdentifier {
  const h = hash ?? 'sha256';
  if (key.asymmetricKeyType === 'ec') {
    const oid = {
      sha256: '1.2.840.10045.4.3.2',
      sha384: '1.2.840.10045.4.3.3',
      sha512: '1.2.840.10045.4.3.4',
    }[h];
    return new pkijs.AlgorithmIdentifier({ algorithmId: oid });
  }
  if (key.asymmetricKeyType === 'rsa') {
    const oid = {
      sha256: '1.2.840.113549.1.1.11',
      sha384: '1.2.840.113549.1.1.12',
      sha512: '1.2.840.113549.1.1.13',
    }[h];
    return new pkijs.AlgorithmIdentifier({ algorithmId: oid, algorithmParams: new asn1js.Null() });
  }
  throw new TsaChainError(
    `the TSA key type ${String(key.asymmetricKeyType)} is not supported (EC or RSA)`,
  );
}

function rdn(commonName: string): pkijs.RelativeDistinguishedNames {
  const entries = [
    { oid: OIDS.organization, value: 'mayfly' },
    { oid: OIDS.commonName, value: commonName },
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
  return new pkijs.RelativeDistinguishedNames({ schema: parse(der(sequence)) });
}

function keyId(spki: Uint8Array): Uint8Array {
  const info = new pkijs.PublicKeyInfo({ schema: parse(spki) });
  return new Uint8Array(
    createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest(),
  );
}

function time(date: Date): pkijs.Time {
  const type =
    date.getUTCFullYear() < 2050 ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  return new pkijs.Time({ type, value: date });
}

const SERIAL_BYTES = 20;
const POOL_SERIALS = 512;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/**
 * A positive serial of 20 octets, minimal DER: the first octet is 0x40–0x7f, so 158 random
 * bits — unique across replicas without coordination. The bytes come from a CSPRNG page
 * refilled every 512 serials (one call per serial cost more than the framing of a token);
 * each serial is copied out, never shared.
 */
export function randomSerialBytes(): Uint8Array {
  if (poolOffset + SERIAL_BYTES > pool.length) {
    pool = randomBytes(SERIAL_BYTES * POOL_SERIALS);
    poolOffset = 0;
  }
  const bytes = new Uint8Array(SERIAL_BYTES);
  bytes.set(pool.subarray(poolOffset, poolOffset + SERIAL_BYTES));
  pool.fill(0, poolOffset, poolOffset + SERIAL_BYTES);
  poolOffset += SERIAL_BYTES;
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes;
}

interface CertSpec {
  readonly subject: string;
  readonly issuer: string;
  readonly subjectKey: KeyObject;
  readonly issuerKey: KeyObject;
  readonly ca: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly signer: KeySigner;
}

async function buildCertificate(spec: CertSpec): Promise<Uint8Array> {
  const spki = new Uint8Array(spec.subjectKey.export({ format: 'der', type: 'spki' }));
  const issuerSpki = new Uint8Array(spec.issuerKey.export({ format: 'der', type: 'spki' }));
  const algorithm = signatureAlgorithm(spec.issuerKey, spec.signer.hash);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: toArrayBuffer(randomSerialBytes()) });
  cert.signature = algorithm;
  cert.issuer = rdn(spec.issuer);
  cert.subject = rdn(spec.subject);
  cert.notBefore = time(spec.notBefore);
  cert.notAfter = time(spec.notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: parse(spki) });
  const ski = der(new asn1js.OctetString({ valueHex: toArrayBuffer(keyId(spki)) }));
  const aki = der(
    new asn1js.Sequence({
      value: [
        new asn1js.Primitive({
          idBlock: { tagClass: 3, tagNumber: 0 },
          valueHex: toArrayBuffer(keyId(issuerSpki)),
        }),
      ],
    }),
  );
  cert.extensions = spec.ca
    ? [
        // keyCertSign, cRLSign
        ext(OIDS.keyUsage, true, Uint8Array.from([0x03, 0x02, 0x01, 0x06])),
        ext(
          OIDS.basicConstraints,
          true,
          der(new asn1js.Sequence({ value: [new asn1js.Boolean({ value: true })] })),
        ),
        ext(OIDS.subjectKeyIdentifier, false, ski),
      ]
    : [
        // digitalSignature
        ext(OIDS.keyUsage, true, Uint8Array.from([0x03, 0x02, 0x07, 0x80])),
        ext(
          OIDS.extKeyUsage,
          true,
          der(
            new asn1js.Sequence({
              value: [new asn1js.ObjectIdentifier({ value: OIDS.timeStamping })],
            }),
          ),
        ),
        ext(OIDS.subjectKeyIdentifier, false, ski),
        ext(OIDS.authorityKeyIdentifier, false, aki),
      ];
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  const signature = await spec.signer.sign(tbs);
  return der(
    new asn1js.Sequence({
      value: [
        parse(tbs),
        algorithm.toSchema(),
        new asn1js.BitString({ valueHex: toArrayBuffer(signature) }),
      ],
    }),
  );
}

const YEAR_MS = 365 * 24 * 3600 * 1000;

/**
 * The development chain: a root valid ten years and a TSA leaf valid as long, made at start.
 * The root key signs the leaf and is dropped. The leaf starts a minute in the past so a
 * timestamp made at once is inside it whatever the rounding.
 */
export async function createEphemeralTsaChain(
  root: KeySigner,
  leaf: KeySigner,
  clock: Clock,
): Promise<CaSigner> {
  const start = new Date(Math.floor(clock.now().getTime() / 1000) * 1000 - 60_000);
  const end = new Date(start.getTime() + 10 * YEAR_MS);
  const rootDer = await buildCertificate({
    subject: 'mayfly TSA root (ephemeral)',
    issuer: 'mayfly TSA root (ephemeral)',
    subjectKey: root.publicKey,
    issuerKey: root.publicKey,
    ca: true,
    notBefore: start,
    notAfter: end,
    signer: root,
  });
  const leafDer = await buildCertificate({
    subject: 'mayfly TSA (ephemeral)',
    issuer: 'mayfly TSA root (ephemeral)',
    subjectKey: leaf.publicKey,
    issuerKey: root.publicKey,
    ca: false,
    notBefore: start,
    notAfter: end,
    signer: root,
  });
  return leaf.withChain([leafDer, rootDer]);
}

/**
 * The chain profile the TSA serves with: every link verifies, the last certificate is a
 * self-signed root, the leaf is not a CA, carries the extended key usage timeStamping, marked
 * critical, and nothing else (what Sigstore's verifiers demand), is valid now, and holds the
 * signer's public key. Intermediates must be CAs.
 */
export function validateTsaChain(
  chainDer: readonly Uint8Array[],
  publicKey: KeyObject,
  clock: Clock,
): void {
  if (chainDer.length < 2) {
    throw new TsaChainError('the TSA chain needs the TSA certificate and at least its root');
  }
  const chain = chainDer.map((d, i) => {
    try {
      return new X509Certificate(d);
    } catch {
      throw new TsaChainError(`certificate ${i + 1} of the TSA chain cannot be parsed`);
    }
  });
  const now = clock.now().getTime();
  chain.forEach((cert, i) => {
    const parent = chain[i + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
      throw new TsaChainError(
        `certificate ${i + 1} of the TSA chain is not signed by the next one`,
      );
    }
    if (i > 0 && !cert.ca)
      throw new TsaChainError(`certificate ${i + 1} of the TSA chain is not a CA`);
    if (Date.parse(cert.validTo) <= now || Date.parse(cert.validFrom) > now) {
      throw new TsaChainError(
        `certificate ${i + 1} of the TSA chain is not valid now (${cert.validFrom} – ${cert.validTo})`,
      );
    }
  });
  const leaf = chain[0]!;
  if (leaf.ca) throw new TsaChainError('the TSA certificate must not be a CA');
  const parsed = pkijs.Certificate.fromBER(toArrayBuffer(chainDer[0]!));
  const eku = parsed.extensions?.filter((e) => e.extnID === OIDS.extKeyUsage) ?? [];
  const purposes = (eku[0]?.parsedValue as pkijs.ExtKeyUsage | undefined)?.keyPurposes ?? [];
  if (
    eku.length !== 1 ||
    !eku[0]!.critical ||
    purposes.length !== 1 ||
    purposes[0] !== OIDS.timeStamping
  ) {
    throw new TsaChainError(
      'the TSA certificate must carry the extended key usage timeStamping, critical, and no other',
    );
  }
  const spki = (k: KeyObject) => k.export({ format: 'der', type: 'spki' });
  if (!spki(leaf.publicKey).equals(spki(publicKey))) {
    throw new TsaChainError('the TSA key does not match the TSA certificate');
  }
}
