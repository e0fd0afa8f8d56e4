import { createHash } from 'node:crypto';
import {
  parseSctList,
  verifyPrecertSct,
  type CtLogKey,
  type Sct,
} from '../../../services/common/ct/sct';

/**
 * The soak's own reading of an embedded SCT (RFC 6962 §3.3): the SCT list extension is taken
 * out of the final certificate's TBS by walking the DER here (not with the CA's or the log's
 * code), which gives back the precertificate's TBS without the poison, the TBS the log
 * signed; the SCT is then verified with services/common/ct against the log's key. The final
 * check of each certificate's entry in the log's tree is done independently, by ct-go
 * (test/go/soak-ct-check).
 */

const SCT_LIST_OID = Buffer.from('060a2b06010401d679020402', 'hex'); // 1.3.6.1.4.1.11129.2.4.2

interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte, of the contents, and just past the element. */
  readonly start: number;
  readonly body: number;
  readonly end: number;
}

function tlv(der: Buffer, at: number): Tlv {
  if (at + 2 > der.length) throw new Error('truncated DER');
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-byte tags are not expected here');
  let len = der[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > der.length) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[body + i]!;
    body += n;
  }
  const end = body + len;
  if (end > der.length) throw new Error('DER element runs past its parent');
  return { tag, start: at, body, end };
}

function children(der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end;) {
    const c = tlv(der, at);
    out.push(c);
    at = c.end;
  }
  return out;
}

function header(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let v = length; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

function wrap(tag: number, parts: readonly Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([header(tag, body.length), body]);
}

export interface EmbeddedScts {
  /** The TLS SignedCertificateTimestampList of the extension. */
  readonly list: Buffer;
  /** The TBS without the SCT list extension: the precertificate's TBS without the poison. */
  readonly precertTbs: Buffer;
}

/** The SCT list of a final certificate, and its TBS without it; undefined without one. */
export function embeddedScts(certDer: Buffer): EmbeddedScts | undefined {
  const cert = tlv(certDer, 0);
  const tbs = children(certDer, cert)[0];
  if (!tbs || tbs.tag !== 0x30) throw new Error('no TBSCertificate');
  const fields = children(certDer, tbs);
  const extsField = fields.find((f) => f.tag === 0xa3);
  if (!extsField) return undefined;
  const extsSeq = children(certDer, extsField)[0];
  if (!extsSeq || extsSeq.tag !== 0x30) throw new Error('bad extensions field');
  const exts = children(certDer, extsSeq);
  const isSctList = (e: Tlv) => {
    const oid = children(certDer, e)[0];
    return !!oid && certDer.subarray(oid.start, oid.end).equals(SCT_LIST_OID);
  };
  const found = exts.filter(isSctList);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw new Error('two SCT list extensions');
  // Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }; the
  // extnValue holds an OCTET STRING whose contents are the TLS list (§3.3).
  const parts = children(certDer, found[0]!);
  const value = parts[parts.length - 1]!;
  if (value.tag !== 0x04) throw new Error('the SCT list extnValue is not an OCTET STRING');
  const inner = tlv(certDer, value.body);
  if (inner.tag !== 0x04 || inner.end !== value.end)
    throw new Error('the SCT list is not an OCTET STRING inside the extnValue');
  const kept = exts.filter((e) => !isSctList(e)).map((e) => certDer.subarray(e.start, e.end));
  const rebuilt = fields.map((f) =>
    f === extsField
      ? kept.length === 0
        ? Buffer.alloc(0) // RFC 5280: no empty extensions field
        : wrap(0xa3, [wrap(0x30, kept)])
      : certDer.subarray(f.start, f.end),
  );
  return {
    list: Buffer.from(certDer.subarray(inner.body, inner.end)),
    precertTbs: wrap(0x30, rebuilt),
  };
}

/** The static-ct-api leaf_index extension of an SCT (type 0, five bytes), if it has one. */
export function leafIndexOf(sct: Pick<Sct, 'extensions'>): number | undefined {
  const e = sct.extensions;
  if (e.length !== 8 || e[0] !== 0 || e.readUInt16BE(1) !== 5) return undefined;
  return e.readUIntBE(3, 5);
}

export interface VerifiedSct {
  readonly sct: Sct;
  readonly leafIndex: number;
}

/**
 * The log's SCT embedded in this certificate, verified over the precertificate entry; throws
 * with what is wrong (no SCT, another log, a bad signature, no leaf_index).
 */
export function verifyEmbeddedSct(
  certDer: Buffer,
  issuerSpkiDer: Buffer,
  log: CtLogKey,
): VerifiedSct {
  const embedded = embeddedScts(certDer);
  if (!embedded) throw new Error('no embedded SCT list');
  const scts = parseSctList(embedded.list).filter((s) => s.logId.equals(log.logId));
  if (scts.length !== 1) throw new Error(`${scts.length} SCTs of the soak's log embedded`);
  const sct = scts[0]!;
  const issuerKeyHash = createHash('sha256').update(issuerSpkiDer).digest();
  verifyPrecertSct(sct, log, issuerKeyHash, embedded.precertTbs);
  const leafIndex = leafIndexOf(sct);
  if (leafIndex === undefined) throw new Error('the SCT has no leaf_index extension');
  return { sct, leafIndex };
}
