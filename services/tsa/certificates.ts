import { randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { Clock } from '../common/clock';
import { toArrayBuffer } from '../common/encoding';
import type { CaSigner, KeySigner, SignatureHash } from '../common/signer/signer';
import {
  assembleCertificate,
  authorityKeyIdExtension,
  caBasicConstraintsExtension,
  certificateTime,
  extension,
  extKeyUsageExtension,
  keyIdentifierOf,
  name,
  parseDer,
  signatureAlgorithmFor,
  spkiOf,
  subjectKeyIdExtension,
} from '../common/x509/der';

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

/** EC or RSA only (PKCS#1 v1.5 for RSA): what the TSA's verifiers accept. */
export function signatureAlgorithm(key: KeyObject, hash: SignatureHash): pkijs.AlgorithmIdentifier {
  if (key.asymmetricKeyType !== 'ec' && key.asymmetricKeyType !== 'rsa') {
    throw new TsaChainError(
      `the TSA key type ${String(key.asymmetricKeyType)} is not supported (EC or RSA)`,
    );
  }
  return signatureAlgorithmFor(key, hash);
}

function rdn(commonName: string): pkijs.RelativeDistinguishedNames {
  return name([
    { oid: OIDS.organization, value: 'mayfly' },
    { oid: OIDS.commonName, value: commonName },
  ]);
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
  const spki = spkiOf(spec.subjectKey);
  const algorithm = signatureAlgorithm(spec.issuerKey, spec.signer.hash);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  cert.serialNumber = new asn1js.Integer({ valueHex: toArrayBuffer(randomSerialBytes()) });
  cert.signature = algorithm;
  cert.issuer = rdn(spec.issuer);
  cert.subject = rdn(spec.subject);
  cert.notBefore = certificateTime(spec.notBefore);
  cert.notAfter = certificateTime(spec.notAfter);
  cert.subjectPublicKeyInfo = new pkijs.PublicKeyInfo({ schema: parseDer(spki) });
  cert.extensions = spec.ca
    ? [
        // keyCertSign, cRLSign
        extension(OIDS.keyUsage, true, Uint8Array.from([0x03, 0x02, 0x01, 0x06])),
        caBasicConstraintsExtension(),
        subjectKeyIdExtension(spki),
      ]
    : [
        // digitalSignature
        extension(OIDS.keyUsage, true, Uint8Array.from([0x03, 0x02, 0x07, 0x80])),
        extKeyUsageExtension([OIDS.timeStamping], true),
        subjectKeyIdExtension(spki),
        authorityKeyIdExtension(keyIdentifierOf(spec.issuerKey)),
      ];
  const tbs = new Uint8Array(cert.encodeTBS().toBER(false));
  return assembleCertificate(tbs, algorithm, await spec.signer.sign(tbs));
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
