/**
 * The little DER walking the log needs: find a certificate's TBSCertificate and its
 * extensions, and rebuild the TBS without the CT poison extension (RFC 6962 §3.2) while
 * leaving every other byte exactly as the CA signed it. Node's X509Certificate has already
 * parsed (and so vetted) the certificate before this runs; anything odd still throws.
 */

export class DerError extends Error {}

interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the value. */
  readonly valueStart: number;
  /** Offset after the value. */
  readonly end: number;
}

function readTlv(buf: Buffer, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('bad length');
    len = 0;
    for (let i = 0; i < n; i++) {
      if (p >= limit) throw new DerError('truncated');
      len = len * 256 + buf[p++]!;
    }
  }
  if (p + len > limit) throw new DerError('truncated');
  return { tag, start: offset, valueStart: p, end: p + len };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.valueStart;
  while (p < parent.end) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  let v = n;
  while (v > 0) {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function wrap(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

/** DER of 1.3.6.1.4.1.11129.2.4.3, the precertificate poison. */
const POISON_OID = Buffer.from('060a2b06010401d679020403', 'hex');

export function tbsOf(cert: Buffer): Buffer {
  const outer = readTlv(cert, 0);
  if (outer.tag !== 0x30 || outer.end !== cert.length) throw new DerError('not a certificate');
  const tbs = children(cert, outer)[0];
  if (!tbs || tbs.tag !== 0x30) throw new DerError('no TBSCertificate');
  return cert.subarray(tbs.start, tbs.end);
}

interface Poison {
  readonly present: boolean;
  readonly critical: boolean;
  readonly wellFormed: boolean;
}

interface TbsParts {
  readonly tbs: Buffer;
  readonly fields: Tlv[];
  readonly extensionsField: Tlv | undefined;
  readonly extensions: Tlv[];
}

function tbsParts(cert: Buffer): TbsParts {
  const tbs = tbsOf(cert);
  const top = readTlv(tbs, 0);
  const fields = children(tbs, top);
  const extensionsField = fields.find((f) => f.tag === 0xa3);
  let extensions: Tlv[] = [];
  if (extensionsField) {
    const seq = readTlv(tbs, extensionsField.valueStart, extensionsField.end);
    if (seq.tag !== 0x30) throw new DerError('bad extensions');
    extensions = children(tbs, seq);
  }
  return { tbs, fields, extensionsField, extensions };
}

function isPoison(tbs: Buffer, ext: Tlv): boolean {
  const parts = children(tbs, ext);
  const oid = parts[0];
  return !!oid && tbs.subarray(oid.start, oid.end).equals(POISON_OID);
}

/** Whether the certificate carries the poison extension, and how. */
export function poisonOf(cert: Buffer): Poison {
  const { tbs, extensions } = tbsParts(cert);
  const found = extensions.filter((e) => isPoison(tbs, e));
  if (found.length === 0) return { present: false, critical: false, wellFormed: true };
  const parts = children(tbs, found[0]!);
  const critical =
    parts.length === 3 &&
    parts[1]!.tag === 0x01 &&
    parts[1]!.end - parts[1]!.valueStart === 1 &&
    tbs[parts[1]!.valueStart] === 0xff;
  const value = parts[parts.length - 1]!;
  const wellFormed =
    found.length === 1 &&
    value.tag === 0x04 &&
    tbs.subarray(value.valueStart, value.end).equals(Buffer.from([0x05, 0x00]));
  return { present: true, critical, wellFormed };
}

/** The TBSCertificate with the poison extension removed (the precert entry's signed part). */
export function tbsWithoutPoison(cert: Buffer): Buffer {
  const { tbs, fields, extensionsField, extensions } = tbsParts(cert);
  if (!extensionsField) throw new DerError('no extensions');
  const kept = extensions.filter((e) => !isPoison(tbs, e));
  const body: Buffer[] = [];
  for (const f of fields) {
    if (f !== extensionsField) {
      body.push(tbs.subarray(f.start, f.end));
    } else if (kept.length > 0) {
      const seq = wrap(0x30, Buffer.concat(kept.map((e) => tbs.subarray(e.start, e.end))));
      body.push(wrap(0xa3, seq));
    }
  }
  return wrap(0x30, Buffer.concat(body));
}

/** The parts of a certificate that a signature check needs. */
export interface CertificateParts {
  /** The signed bytes (DER TBSCertificate). */
  readonly tbs: Buffer;
  /** DER AlgorithmIdentifier of the signature (outer; equal to the TBS's own). */
  readonly signatureAlgorithm: Buffer;
  /** The signature (the BIT STRING's content, no unused bits). */
  readonly signature: Buffer;
  /** DER Name of the issuer. */
  readonly issuer: Buffer;
  /** DER Name of the subject. */
  readonly subject: Buffer;
  readonly notAfter: Date;
}

const TIME = {
  utc: /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/,
  generalized: /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/,
};

function readTime(buf: Buffer, t: Tlv): Date {
  const text = buf.toString('latin1', t.valueStart, t.end);
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === 0x17 && (m = TIME.utc.exec(text))) {
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 §4.1.2.5.1
  } else if (t.tag === 0x18 && (m = TIME.generalized.exec(text))) {
    year = Number(m[1]);
  } else {
    throw new DerError('bad time');
  }
  const [mo, d, h, mi, s] = m.slice(2).map(Number) as [number, number, number, number, number];
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, s));
  if (
    date.getUTCMonth() !== mo - 1 ||
    date.getUTCDate() !== d ||
    date.getUTCHours() !== h ||
    date.getUTCMinutes() !== mi ||
    date.getUTCSeconds() !== s
  )
    throw new DerError('bad time');
  return date;
}

/**
 * Splits an X.509 certificate (RFC 5280 §4.1) into what a signature check needs, walking
 * the outer structure and the TBS's fields strictly (tags, order, definite lengths, nothing
 * after the certificate). It does not vet extensions or the public key: a caller that needs
 * the certificate vetted parses it with X509Certificate.
 */
export function certificateParts(cert: Buffer): CertificateParts {
  const outer = readTlv(cert, 0);
  if (outer.tag !== 0x30 || outer.end !== cert.length) throw new DerError('not a certificate');
  const top = children(cert, outer);
  if (top.length !== 3) throw new DerError('not a certificate');
  const [tbsTlv, alg, sig] = top as [Tlv, Tlv, Tlv];
  if (tbsTlv.tag !== 0x30 || alg.tag !== 0x30 || sig.tag !== 0x03)
    throw new DerError('not a certificate');
  if (sig.end - sig.valueStart < 2 || cert[sig.valueStart] !== 0)
    throw new DerError('bad signature bit string');
  const fields = children(cert, tbsTlv);
  let i = 0;
  if (fields[i]?.tag === 0xa0) i++; // version
  const [serial, innerAlg, issuer, validity, subject, spki] = fields.slice(i, i + 6);
  if (
    serial?.tag !== 0x02 ||
    innerAlg?.tag !== 0x30 ||
    issuer?.tag !== 0x30 ||
    validity?.tag !== 0x30 ||
    subject?.tag !== 0x30 ||
    spki?.tag !== 0x30
  )
    throw new DerError('bad TBSCertificate');
  let last = 0xa0;
  for (const f of fields.slice(i + 6)) {
    if (f.tag !== 0xa1 && f.tag !== 0xa2 && f.tag !== 0xa3)
      throw new DerError('bad TBSCertificate');
    if (f.tag <= last) throw new DerError('bad TBSCertificate');
    last = f.tag;
  }
  const algorithm = cert.subarray(alg.start, alg.end);
  if (!algorithm.equals(cert.subarray(innerAlg.start, innerAlg.end)))
    throw new DerError('the signature algorithms differ');
  const times = children(cert, validity);
  if (times.length !== 2) throw new DerError('bad validity');
  readTime(cert, times[0]!);
  return {
    tbs: cert.subarray(tbsTlv.start, tbsTlv.end),
    signatureAlgorithm: algorithm,
    signature: cert.subarray(sig.valueStart + 1, sig.end),
    issuer: cert.subarray(issuer.start, issuer.end),
    subject: cert.subarray(subject.start, subject.end),
    notAfter: readTime(cert, times[1]!),
  };
}
