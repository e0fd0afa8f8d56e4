import type { SignedTreeHead } from '../checkpoint';
import { TlsReader, TlsWriter } from '../tls';

/**
 * Where the log keeps everything: pending submissions, the dedup index, tiles, data tiles,
 * issuers, the latest signed tree head, and a few settings (the development key, the
 * temporal interval). Two backends implement it (a directory, PostgreSQL) and run the same
 * contract tests (test/unit/ctlog/storage-contract.ts).
 *
 * The one write that matters is `commit`: it publishes a batch (its tiles, data tiles,
 * issuers, dedup records and new tree head) atomically, and only if the stored tree head is
 * still the one the batch was built on (`previous`): a deposed sequencer cannot overwrite
 * its successor's work. Once `commit` resolves, the batch is durable.
 */

/** A submission waiting to be sequenced. */
export interface PendingEntry {
  /** The dedup key: the same certificate, or the same precert TBS and issuer, share it. */
  readonly key: Buffer;
  readonly isPrecert: boolean;
  readonly signedEntry: Buffer;
  readonly issuerKeyHash?: Buffer | undefined;
  readonly preCertificate?: Buffer | undefined;
  /** DER of each issuer in the submitted chain, root included. */
  readonly issuers: readonly Buffer[];
}

/** What the log remembers about a sequenced submission, enough to re-issue its SCT. */
export interface SequencedRecord {
  readonly key: Buffer;
  readonly leafHash: Buffer;
  readonly index: number;
  readonly timestamp: number;
  /** The SCT's DigitallySigned signature. */
  readonly signature: Buffer;
}

export interface TileWrite {
  readonly level: number;
  readonly index: number;
  readonly data: Buffer;
}

export interface DataTileWrite {
  readonly index: number;
  /** The tile's whole content so far. */
  readonly data: Buffer;
  /**
   * How many leading bytes of `data` an earlier commit already stored (they are unchanged):
   * a backend may store only the rest. Absent: store all of it.
   */
  readonly appendFrom?: number | undefined;
  /** The tile holds all its 256 entries now and will never change again. */
  readonly complete?: boolean | undefined;
}

export interface Commit {
  /** The tree head this batch extends (undefined for the first commit of a new log). */
  readonly previous: SignedTreeHead | undefined;
  readonly treeHead: SignedTreeHead;
  readonly tiles: readonly TileWrite[];
  readonly dataTiles: readonly DataTileWrite[];
  readonly issuers: readonly Buffer[];
  readonly records: readonly SequencedRecord[];
  /** The pending submissions this batch sequenced (or found already sequenced). */
  readonly done: readonly Buffer[];
}

export class CommitConflictError extends Error {
  constructor() {
    super('the stored tree head moved: another sequencer committed');
    this.name = 'CommitConflictError';
  }
}

export interface LogStorage {
  readonly kind: 'directory' | 'postgres';
  /** Returns the stored setting, or stores `value` if there is none (first writer wins). */
  setting(name: string, value: () => Buffer): Promise<Buffer>;

  // Front ends.
  /** Records of the keys already sequenced, by hex key. */
  sequenced(keys: readonly Buffer[]): Promise<Map<string, SequencedRecord>>;
  /**
   * Durably queues submissions, in one write; a key already queued (or twice in `entries`)
   * is left as it is.
   */
  enqueue(entries: readonly PendingEntry[]): Promise<void>;
  /** The index of the entry with this Merkle leaf hash. */
  indexOfLeafHash(hash: Buffer): Promise<number | undefined>;

  // Reads.
  treeHead(): Promise<SignedTreeHead | undefined>;
  /** The stored hashes of a tile (its whole stored width, which may be partial). */
  tile(level: number, index: number): Promise<Buffer | undefined>;
  dataTile(index: number): Promise<Buffer | undefined>;
  issuer(fingerprint: Buffer): Promise<Buffer | undefined>;

  // The sequencer.
  /** Tries to become (or stay) the only sequencer; true while this instance leads. */
  lead(): Promise<boolean>;
  /** Pending submissions not sequenced yet, oldest first (empty unless this instance leads). */
  pending(limit: number): Promise<PendingEntry[]>;
  commit(commit: Commit): Promise<void>;

  /** Stops leading and releases connections and locks. */
  close(): Promise<void>;
}

export function encodePending(e: PendingEntry): Buffer {
  const w = new TlsWriter()
    .bytes(e.key)
    .u8(e.isPrecert ? 1 : 0)
    .vector(e.signedEntry, 3);
  if (e.isPrecert) w.bytes(e.issuerKeyHash!).vector(e.preCertificate!, 3);
  w.u8(e.issuers.length);
  for (const c of e.issuers) w.vector(c, 3);
  return w.finish();
}

export function decodePending(b: Buffer): PendingEntry {
  const r = new TlsReader(b);
  const key = Buffer.from(r.bytes(32));
  const isPrecert = r.uint(1) === 1;
  const signedEntry = Buffer.from(r.vector(3));
  let issuerKeyHash: Buffer | undefined;
  let preCertificate: Buffer | undefined;
  if (isPrecert) {
    issuerKeyHash = Buffer.from(r.bytes(32));
    preCertificate = Buffer.from(r.vector(3));
  }
  const n = r.uint(1);
  const issuers: Buffer[] = [];
  for (let i = 0; i < n; i++) issuers.push(Buffer.from(r.vector(3)));
  return { key, isPrecert, signedEntry, issuerKeyHash, preCertificate, issuers };
}

export function encodeRecord(rec: SequencedRecord): Buffer {
  return new TlsWriter()
    .bytes(rec.key)
    .bytes(rec.leafHash)
    .u64(rec.index)
    .u64(rec.timestamp)
    .vector(rec.signature, 2)
    .finish();
}

export function readRecord(r: TlsReader): SequencedRecord {
  return {
    key: Buffer.from(r.bytes(32)),
    leafHash: Buffer.from(r.bytes(32)),
    index: r.uint(8),
    timestamp: r.uint(8),
    signature: Buffer.from(r.vector(2)),
  };
}

/** The store cannot be reached right now (a 503 for clients; nothing was changed). */
export class StorageUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageUnavailableError';
  }
}
