import { constants, verify, type KeyObject } from 'node:crypto';
import { FULCIO_OID, type CertificateIdentity } from '../certificate-identity/certificate-identity';
import type { SignatureHash } from '../../common/signer/signer';
import {
  DerError,
  TAG,
  bytesOf,
  children,
  contentOf,
  expectTlv,
  oid,
  sameBytes,
  type Tlv,
} from './der-codec';

/**
 * The last gate before a certificate leaves: the signed DER is read back, field by field,
 * with a strict DER reader that shares nothing with the template that wrote it (it decodes
 * values and compares them with the request, not with the builder's bytes), and its
 * signature is verified with the issuing certificate's public key. A mismatch is a CA bug
 * and the certificate is discarded.
 *
 * This replaced a parse with X509Certificate (OpenSSL), which cost about five times the
 * signature check it wraps; OpenSSL's acceptance of the profile is proven by the tests.
 */

export interface LintIssuer {
  /** DER Name of the issuing certificate's subject. */
  readonly name: Uint8Array;
  /** The issuing certificate's key identifier (the leaf's AKI). */
  readonly keyId: Uint8Array;
  /** The issuing certificate's public key: the signature must verify with it. */
  readonly publicKey: KeyObject;
  /** The hash the CA signs with (null: Ed25519). */
  readonly hash: SignatureHash;
  /** DER AlgorithmIdentifier the CA signs with. */
  readonly signatureAlgorithm: Uint8Array;
  readonly notAfter: Date;
}

export interface LintExpectation {
  readonly identity: CertificateIdentity;
  readonly spki: Uint8Array;
  /** The key identifier the CA computed from its read of `spki`. */
  readonly subjectKeyId: Uint8Array;
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuer: LintIssuer;
  /**
   * Certificate Transparency: a precertificate carries the critical poison (ASN.1 NULL),
   * a final certificate exactly this SCT list (non-critical); neither: no CT extension.
   */
  readonly ct?: { readonly poison: true } | { readonly sctList: Uint8Array };
}

const OIDS = {
  keyUsage: oid('2.5.29.15'),
  extKeyUsage: oid('2.5.29.37'),
  subjectKeyIdentifier: oid('2.5.29.14'),
  authorityKeyIdentifier: oid('2.5.29.35'),
  subjectAltName: oid('2.5.29.17'),
  codeSigning: oid('1.3.6.1.5.5.7.3.3'),
  otherNameSan: oid(FULCIO_OID.otherNameSan),
  ctPoison: oid('1.3.6.1.4.1.11129.2.4.3'),
  ctSctList: oid('1.3.6.1.4.1.11129.2.4.2'),
};
const KU_DIGITAL_SIGNATURE = Buffer.from([0x03, 0x02, 0x07, 0x80]);

function digits(text: string, from: number, count: number): number {
  const part = text.slice(from, from + count);
  if (!/^\d+$/.test(part) || part.length !== count) throw new DerError(`bad time ${text}`);
  return Number(part);
}

/** UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (the only DER forms). */
function readTime(der: Uint8Array, t: Tlv): number {
  const text = Buffer.from(contentOf(der, t)).toString('latin1');
  let year: number;
  let at: number;
  if (t.tag === TAG.utcTime && text.length === 13) {
    const yy = digits(text, 0, 2);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    at = 2;
  } else if (t.tag === TAG.generalizedTime && text.length === 15) {
    year = digits(text, 0, 4);
    at = 4;
  } else {
    throw new DerError(`bad time ${text}`);
  }
  if (!text.endsWith('Z')) throw new DerError(`time ${text} is not UTC`);
  return Date.UTC(
    year,
    digits(text, at, 2) - 1,
    digits(text, at + 2, 2),
    digits(text, at + 4, 2),
    digits(text, at + 6, 2),
    digits(text, at + 8, 2),
  );
}

/** The serial's value as unsigned big-endian octets without leading zeros. */
function magnitude(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

function sanValue(
  der: Uint8Array,
  extnValue: Tlv,
): { type: string; value: Uint8Array } | undefined {
  const sequence = expectTlv(der, extnValue.contentStart, TAG.sequence, extnValue.end);
  if (sequence.end !== extnValue.end) return undefined;
  const names = children(der, sequence);
  if (names.length !== 1) return undefined;
  const name = names[0]!;
  if (name.tag === TAG.implicit1 || name.tag === TAG.implicit6) {
    return {
      type: name.tag === TAG.implicit1 ? 'email' : 'uri',
      value: contentOf(der, name),
    };
  }
  if (name.tag !== TAG.context0) return undefined;
  const [typeId, wrapped, extra] = children(der, name);
  if (!typeId || !wrapped || extra || !sameBytes(bytesOf(der, typeId), OIDS.otherNameSan))
    return undefined;
  if (wrapped.tag !== TAG.context0) return undefined;
  const [text, more] = children(der, wrapped);
  if (!text || more || text.tag !== TAG.utf8String) return undefined;
  return { type: 'otherName', value: contentOf(der, text) };
}

interface Extension {
  readonly critical: boolean;
  /** The OCTET STRING holding the value. */
  readonly value: Tlv;
}

function readExtensions(der: Uint8Array, wrapper: Tlv): Map<string, Extension> | string {
  const [list, extra] = children(der, wrapper);
  if (!list || extra || list.tag !== TAG.sequence) return 'extensions are malformed';
  const found = new Map<string, Extension>();
  for (const ext of children(der, list)) {
    if (ext.tag !== TAG.sequence) return 'an extension is malformed';
    const parts = children(der, ext);
    const id = parts[0];
    if (!id || id.tag !== TAG.oid) return 'an extension has no OID';
    let critical = false;
    let value = parts[1];
    if (value?.tag === TAG.boolean) {
      // DER: a default FALSE is left out, TRUE is 0xff.
      const flag = contentOf(der, value);
      if (flag.length !== 1 || flag[0] !== 0xff) return 'an extension has a non-DER critical flag';
      critical = true;
      value = parts[2];
    }
    if (!value || value.tag !== TAG.octetString || parts.length !== (critical ? 3 : 2))
      return 'an extension is malformed';
    const key = Buffer.from(bytesOf(der, id)).toString('hex');
    if (found.has(key)) return 'an extension appears twice';
    found.set(key, { critical, value });
  }
  return found;
}

/** AlgorithmIdentifier with id-RSASSA-PSS (an RSA CA key in an HSM that signs with PSS). */
function isRsaPss(algorithm: Uint8Array): boolean {
  return Buffer.from(algorithm).includes(Buffer.from('06092a864886f70d01010a', 'hex'));
}

function signatureVerifies(tbs: Uint8Array, signature: Uint8Array, issuer: LintIssuer): boolean {
  try {
    switch (issuer.publicKey.asymmetricKeyType) {
      case 'ec':
        return verify(issuer.hash, tbs, { key: issuer.publicKey, dsaEncoding: 'der' }, signature);
      case 'rsa':
        return verify(
          issuer.hash,
          tbs,
          isRsaPss(issuer.signatureAlgorithm)
            ? {
                key: issuer.publicKey,
                padding: constants.RSA_PKCS1_PSS_PADDING,
                saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
              }
            : { key: issuer.publicKey, padding: constants.RSA_PKCS1_PADDING },
          signature,
        );
      default:
        return verify(null, tbs, issuer.publicKey, signature);
    }
  } catch {
    return false;
  }
}

export function lintCertificate(der: Uint8Array, expected: LintExpectation): string[] {
  try {
    return lint(der, expected);
  } catch (err) {
    return [`certificate does not parse: ${(err as Error).message}`];
  }
}

function lint(der: Uint8Array, expected: LintExpectation): string[] {
  const problems: string[] = [];
  const { issuer } = expected;
  const certificate = expectTlv(der, 0, TAG.sequence);
  if (certificate.end !== der.length) return ['trailing bytes after the certificate'];
  const [tbs, outerAlgorithm, signatureBits, extra] = children(der, certificate);
  if (!tbs || !outerAlgorithm || !signatureBits || extra)
    return ['certificate is not three fields'];
  if (tbs.tag !== TAG.sequence || signatureBits.tag !== TAG.bitString)
    return ['certificate fields have the wrong types'];
  const bits = contentOf(der, signatureBits);
  if (bits[0] !== 0) return ['signature has unused bits'];
  if (!signatureVerifies(bytesOf(der, tbs), bits.subarray(1), issuer))
    problems.push('signature does not verify with the issuing key');
  if (!sameBytes(bytesOf(der, outerAlgorithm), issuer.signatureAlgorithm))
    problems.push('signature algorithm is not the CA’s');

  const fields = children(der, tbs);
  if (fields.length !== 8) return [...problems, `TBS has ${fields.length} fields, want 8`];
  const [version, serial, algorithm, issuerName, validity, subject, spki, extensions] = fields as [
    Tlv,
    Tlv,
    Tlv,
    Tlv,
    Tlv,
    Tlv,
    Tlv,
    Tlv,
  ];
  if (!sameBytes(bytesOf(der, version), Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02])))
    problems.push('not a version 3 certificate');
  if (
    serial.tag !== TAG.integer ||
    !sameBytes(magnitude(contentOf(der, serial)), magnitude(expected.serial)) ||
    (contentOf(der, serial)[0]! & 0x80) !== 0
  )
    problems.push('serial differs from the request');
  if (!sameBytes(bytesOf(der, algorithm), bytesOf(der, outerAlgorithm)))
    problems.push('inner and outer signature algorithms differ');
  if (!sameBytes(bytesOf(der, issuerName), issuer.name))
    problems.push('issuer name does not match the issuing certificate');
  const times = validity.tag === TAG.sequence ? children(der, validity) : [];
  if (times.length !== 2) problems.push('validity is malformed');
  else {
    const notBefore = readTime(der, times[0]!);
    const notAfter = readTime(der, times[1]!);
    if (notBefore !== expected.notBefore.getTime())
      problems.push('notBefore differs from the request');
    if (notAfter !== expected.notAfter.getTime())
      problems.push('notAfter differs from the request');
    if (notAfter > issuer.notAfter.getTime()) problems.push('outlives the issuing certificate');
  }
  if (subject.tag !== TAG.sequence || subject.end !== subject.contentStart)
    problems.push('subject is not empty');
  if (!sameBytes(bytesOf(der, spki), expected.spki))
    problems.push('public key differs from the request');
  if (extensions.tag !== TAG.context3) return [...problems, 'extensions are missing'];
  const found = readExtensions(der, extensions);
  if (typeof found === 'string') return [...problems, found];
  problems.push(...checkExtensions(der, found, expected));
  return problems;
}

/** A DER definite length (the SCT list may pass 127 bytes). */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function checkExtensions(
  der: Uint8Array,
  found: Map<string, Extension>,
  expected: LintExpectation,
): string[] {
  const problems: string[] = [];
  const take = (id: Uint8Array): Extension | undefined => {
    const key = Buffer.from(id).toString('hex');
    const ext = found.get(key);
    found.delete(key);
    return ext;
  };
  const valueOf = (ext: Extension) => contentOf(der, ext.value);

  const ku = take(OIDS.keyUsage);
  if (!ku?.critical || !sameBytes(valueOf(ku), KU_DIGITAL_SIGNATURE))
    problems.push('KeyUsage is not exactly digitalSignature (critical)');
  const eku = take(OIDS.extKeyUsage);
  const ekuWant = Buffer.concat([
    Buffer.from([TAG.sequence, OIDS.codeSigning.length]),
    OIDS.codeSigning,
  ]);
  if (!eku || !sameBytes(valueOf(eku), ekuWant)) problems.push('EKU is not exactly codeSigning');
  const ski = take(OIDS.subjectKeyIdentifier);
  const keyId = expected.subjectKeyId;
  const skiWant = Buffer.concat([Buffer.from([TAG.octetString, keyId.length]), keyId]);
  if (!ski || !sameBytes(valueOf(ski), skiWant)) problems.push('SubjectKeyIdentifier is wrong');
  const aki = take(OIDS.authorityKeyIdentifier);
  const akiId = expected.issuer.keyId;
  const akiWant = Buffer.concat([
    Buffer.from([TAG.sequence, akiId.length + 2, TAG.implicit0, akiId.length]),
    akiId,
  ]);
  if (!aki || !sameBytes(valueOf(aki), akiWant)) problems.push('AuthorityKeyIdentifier is wrong');
  const san = take(OIDS.subjectAltName);
  const sanFound = san && san.critical ? sanValue(der, san.value) : undefined;
  if (
    sanFound?.type !== expected.identity.san.type ||
    !sameBytes(sanFound.value, Buffer.from(expected.identity.san.value, 'utf8'))
  )
    problems.push('SAN differs from the identity');
  for (const e of expected.identity.extensions) {
    if (e.value.length === 0) continue;
    const ext = take(oid(e.oid));
    if (!ext || ext.critical) {
      problems.push(`extension ${e.oid} is missing`);
      continue;
    }
    let bytes: Uint8Array | undefined = valueOf(ext);
    if (e.encoding === 'utf8') {
      const inner = expectTlv(der, ext.value.contentStart, TAG.utf8String, ext.value.end);
      bytes = inner.end === ext.value.end ? contentOf(der, inner) : undefined;
    }
    if (!bytes || !sameBytes(bytes, Buffer.from(e.value, 'utf8')))
      problems.push(`extension ${e.oid} differs from the identity`);
  }
  const ct = expected.ct;
  if (ct && 'poison' in ct) {
    const poison = take(OIDS.ctPoison);
    if (!poison?.critical || !sameBytes(valueOf(poison), Buffer.from([0x05, 0x00])))
      problems.push('the CT poison is not critical ASN.1 NULL');
  } else if (ct) {
    const list = take(OIDS.ctSctList);
    const want = Buffer.concat([
      Buffer.from([TAG.octetString]),
      derLength(ct.sctList.length),
      ct.sctList,
    ]);
    if (!list || list.critical || !sameBytes(valueOf(list), want))
      problems.push('the SCT list differs from the SCTs obtained');
  }
  // Anything else (BasicConstraints above all: a leaf is never a CA) was not asked for.
  if (found.size > 0) problems.push(`${found.size} unexpected extension(s)`);
  return problems;
}
