import { treeHeadSignatureInput } from './entry';
import { digitallySign, type LogKey } from './log-key';
import { sha256 } from './merkle';
import { TlsReader, TlsWriter } from './tls';

/**
 * The c2sp.org/tlog-checkpoint note, signed with the static-ct-api's RFC6962NoteSignature:
 * key ID = SHA-256(origin || 0x0A || 0x05 || log ID)[:4], signature body = uint64 timestamp
 * || TreeHeadSignature (an RFC 6962 digitally-signed struct). A get-sth response is the same
 * signature in another shape.
 */

export interface SignedTreeHead {
  readonly size: number;
  readonly root: Buffer;
  readonly timestamp: number;
  /** DigitallySigned TreeHeadSignature. */
  readonly signature: Buffer;
}

export function noteKeyId(origin: string, logId: Buffer): Buffer {
  return sha256(Buffer.from(`${origin}\n`), Buffer.from([0x05]), logId).subarray(0, 4);
}

export async function signTreeHead(
  key: LogKey,
  size: number,
  root: Buffer,
  timestamp: number,
): Promise<SignedTreeHead> {
  const signature = await digitallySign(key, treeHeadSignatureInput(timestamp, size, root));
  return { size, root, timestamp, signature };
}

export function checkpointBody(origin: string, size: number, root: Buffer): string {
  return `${origin}\n${size}\n${root.toString('base64')}\n`;
}

export function checkpointNote(origin: string, logId: Buffer, sth: SignedTreeHead): string {
  const sig = Buffer.concat([
    noteKeyId(origin, logId),
    new TlsWriter().u64(sth.timestamp).bytes(sth.signature).finish(),
  ]);
  return `${checkpointBody(origin, sth.size, sth.root)}\n\u2014 ${origin} ${sig.toString('base64')}\n`;
}

/** Encodes a tree head for storage: u64 size, root, u64 timestamp, signature. */
export function encodeTreeHead(sth: SignedTreeHead): Buffer {
  return new TlsWriter()
    .u64(sth.size)
    .bytes(sth.root)
    .u64(sth.timestamp)
    .vector(sth.signature, 2)
    .finish();
}

export function decodeTreeHead(b: Buffer): SignedTreeHead {
  const r = new TlsReader(b);
  return {
    size: r.uint(8),
    root: Buffer.from(r.bytes(32)),
    timestamp: r.uint(8),
    signature: Buffer.from(r.vector(2)),
  };
}
