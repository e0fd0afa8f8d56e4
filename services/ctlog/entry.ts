import { TlsReader, TlsWriter } from './tls';
import { hashLeaf, sha256 } from './merkle';

/**
 * The RFC 6962 structures a log signs and hashes, and the static-ct-api data-tile entry.
 *
 *   TimestampedEntry { uint64 timestamp; LogEntryType entry_type;
 *                      select(entry_type) { x509_entry: ASN.1Cert; precert_entry: PreCert };
 *                      CtExtensions extensions; }
 *   MerkleTreeLeaf   { Version v1; MerkleLeafType timestamped_entry; TimestampedEntry }
 *   TileLeaf         { TimestampedEntry; [precert: ASN.1Cert pre_certificate];
 *                      Fingerprint certificate_chain<0..2^16-1> }
 */

export const X509_ENTRY = 0;
export const PRECERT_ENTRY = 1;

export interface LogEntry {
  /** Milliseconds since the epoch: the SCT's timestamp. */
  readonly timestamp: number;
  readonly isPrecert: boolean;
  /** x509_entry: the certificate. precert_entry: the TBS with the poison removed. */
  readonly signedEntry: Buffer;
  /** precert_entry: SHA-256 of the issuer's DER SPKI. */
  readonly issuerKeyHash?: Buffer | undefined;
  /** precert_entry: the precertificate as submitted. */
  readonly preCertificate?: Buffer | undefined;
  /** SHA-256 of each issuer in the submitted chain (root included), in order. */
  readonly chain: readonly Buffer[];
  /** The index, 5 bytes in the leaf_index extension. */
  readonly index: number;
}

/** CtExtensions holding exactly the static-ct-api leaf_index extension (8 bytes). */
export function leafIndexExtensions(index: number): Buffer {
  return new TlsWriter().u8(0).u16(5).uint(index, 5).finish();
}

/** Reads the leaf_index out of CtExtensions; undefined when absent or malformed. */
export function parseLeafIndex(extensions: Buffer): number | undefined {
  try {
    const r = new TlsReader(extensions);
    let found: number | undefined;
    while (!r.done) {
      const type = r.uint(1);
      const data = r.vector(2);
      if (type === 0) {
        if (found !== undefined || data.length !== 5) return undefined;
        found = new TlsReader(data).uint(5);
      }
    }
    return found;
  } catch {
    return undefined;
  }
}

/** The signed_entry part as it appears in TimestampedEntry and in the SCT signature. */
function writeSignedEntry(
  w: TlsWriter,
  e: Pick<LogEntry, 'isPrecert' | 'signedEntry' | 'issuerKeyHash'>,
): void {
  if (e.isPrecert) {
    w.u16(PRECERT_ENTRY).bytes(e.issuerKeyHash!).vector(e.signedEntry, 3);
  } else {
    w.u16(X509_ENTRY).vector(e.signedEntry, 3);
  }
}

export function timestampedEntry(e: LogEntry): Buffer {
  const w = new TlsWriter().u64(e.timestamp);
  writeSignedEntry(w, e);
  w.vector(leafIndexExtensions(e.index), 2);
  return w.finish();
}

export function merkleTreeLeaf(e: LogEntry): Buffer {
  return Buffer.concat([Buffer.from([0, 0]), timestampedEntry(e)]);
}

export function leafHash(e: LogEntry): Buffer {
  return hashLeaf(merkleTreeLeaf(e));
}

/** RFC 6962 §3.2: the bytes the SCT signature covers (signature_type certificate_timestamp). */
export function sctSignatureInput(e: LogEntry): Buffer {
  const w = new TlsWriter().u8(0).u8(0).u64(e.timestamp);
  writeSignedEntry(w, e);
  w.vector(leafIndexExtensions(e.index), 2);
  return w.finish();
}

/** RFC 6962 §3.5: the bytes a tree head signature covers. */
export function treeHeadSignatureInput(timestamp: number, size: number, root: Buffer): Buffer {
  return new TlsWriter().u8(0).u8(1).u64(timestamp).u64(size).bytes(root).finish();
}

export function tileLeaf(e: LogEntry): Buffer {
  const w = new TlsWriter().bytes(timestampedEntry(e));
  if (e.isPrecert) w.vector(e.preCertificate!, 3);
  const chain = Buffer.concat(e.chain.map((f) => Buffer.from(f)));
  w.vector(chain, 2);
  return w.finish();
}

/** Parses one TileLeaf at the reader's position. */
export function readTileLeaf(r: TlsReader): LogEntry {
  const timestamp = r.uint(8);
  const type = r.uint(2);
  let signedEntry: Buffer;
  let issuerKeyHash: Buffer | undefined;
  if (type === X509_ENTRY) {
    signedEntry = r.vector(3);
  } else if (type === PRECERT_ENTRY) {
    issuerKeyHash = r.bytes(32);
    signedEntry = r.vector(3);
  } else {
    throw new Error(`unknown entry type ${type}`);
  }
  const index = parseLeafIndex(r.vector(2));
  if (index === undefined) throw new Error('entry without a leaf_index');
  const preCertificate = type === PRECERT_ENTRY ? r.vector(3) : undefined;
  const chainBytes = r.vector(2);
  if (chainBytes.length % 32 !== 0) throw new Error('bad chain fingerprints');
  const chain: Buffer[] = [];
  for (let i = 0; i < chainBytes.length; i += 32) chain.push(chainBytes.subarray(i, i + 32));
  return {
    timestamp,
    isPrecert: type === PRECERT_ENTRY,
    signedEntry,
    issuerKeyHash,
    preCertificate,
    chain,
    index,
  };
}

/** All entries of a data tile, in order. */
export function parseDataTile(tile: Buffer): LogEntry[] {
  const r = new TlsReader(tile);
  const out: LogEntry[] = [];
  while (!r.done) out.push(readTileLeaf(r));
  return out;
}

/** The byte length of the first `count` entries of a data tile (for partial tiles). */
export function dataTilePrefix(tile: Buffer, count: number): Buffer | undefined {
  const r = new TlsReader(tile);
  for (let i = 0; i < count; i++) {
    if (r.done) return undefined;
    readTileLeaf(r);
  }
  return tile.subarray(0, r.position);
}

/** RFC 6962 §4.6 extra_data for get-entries: the chain (and for precerts the precert). */
export function extraData(e: LogEntry, issuers: readonly Buffer[]): Buffer {
  const chain = new TlsWriter();
  for (const c of issuers) chain.vector(c, 3);
  const chainBytes = chain.finish();
  const w = new TlsWriter();
  if (e.isPrecert) w.vector(e.preCertificate!, 3);
  w.vector(chainBytes, 3);
  return w.finish();
}

export function fingerprint(der: Uint8Array): Buffer {
  return sha256(der);
}
