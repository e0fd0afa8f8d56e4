import { createHash, verify, type KeyObject } from 'node:crypto';

/**
 * RFC 6962 Signed Certificate Timestamps as the CA handles them: read from a log's JSON
 * answer (ct-go's AddChainResponse), verified for a precertificate entry, serialized
 * (§3.2) and listed for the X.509 extension 1.3.6.1.4.1.11129.2.4.2 (§3.3). Plain bytes in,
 * plain bytes out: no X.509 parsing here, so that any deployable can use it.
 */

export class SctError extends Error {}

export interface Sct {
  readonly version: number;
  /** SHA-256 of the log's DER SPKI. */
  readonly logId: Buffer;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly extensions: Buffer;
  /** TLS DigitallySigned: hash (1), signature algorithm (1), uint16-prefixed signature. */
  readonly signature: Buffer;
}

function uint(value: number, bytes: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 2 ** (8 * bytes))
    throw new SctError(`value ${value} does not fit in ${bytes} bytes`);
  const b = Buffer.alloc(bytes);
  let v = value;
  for (let i = bytes - 1; i >= 0; i--) {
    b[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return b;
}

function vector(b: Uint8Array, lengthBytes: number): Buffer {
  return Buffer.concat([uint(b.length, lengthBytes), b]);
}

const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function b64(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !STD_B64.test(value))
    throw new SctError(`"${field}" is not base64`);
  return Buffer.from(value, 'base64');
}

/** The JSON body of add-chain / add-pre-chain. Throws SctError on anything malformed. */
export function parseAddChainResponse(body: unknown): Sct {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new SctError('the answer is not a JSON object');
  const o = body as Record<string, unknown>;
  if (o.sct_version !== 0) throw new SctError('sct_version is not 0 (v1)');
  const logId = b64(o.id, 'id');
  if (logId.length !== 32) throw new SctError('the log ID is not 32 bytes');
  if (typeof o.timestamp !== 'number' || !Number.isSafeInteger(o.timestamp) || o.timestamp < 0)
    throw new SctError('timestamp is not a non-negative integer');
  const extensions = o.extensions === undefined ? Buffer.alloc(0) : b64(o.extensions, 'extensions');
  if (extensions.length > 0xffff) throw new SctError('extensions too long');
  const signature = b64(o.signature, 'signature');
  if (signature.length < 4 || signature.readUInt16BE(2) !== signature.length - 4)
    throw new SctError('signature is not a TLS DigitallySigned');
  return { version: 0, logId, timestamp: o.timestamp, extensions, signature };
}

/** RFC 6962 §3.2 SignedCertificateTimestamp, serialized. */
export function serializeSct(sct: Sct): Buffer {
  return Buffer.concat([
    uint(sct.version, 1),
    sct.logId,
    uint(sct.timestamp, 8),
    vector(sct.extensions, 2),
    sct.signature,
  ]);
}

/** The TLS SignedCertificateTimestampList: uint16-prefixed list of uint16-prefixed SCTs. */
export function sctList(scts: readonly Sct[]): Buffer {
  if (scts.length === 0) throw new SctError('an SCT list cannot be empty');
  return vector(Buffer.concat(scts.map((s) => vector(serializeSct(s), 2))), 2);
}

/** Reads a SignedCertificateTimestampList back (for tests and verifiers of our output). */
export function parseSctList(list: Uint8Array): Sct[] {
  const buf = Buffer.from(list);
  if (buf.length < 2 || buf.readUInt16BE(0) !== buf.length - 2)
    throw new SctError('bad SCT list length');
  const out: Sct[] = [];
  let at = 2;
  while (at < buf.length) {
    if (at + 2 > buf.length) throw new SctError('truncated SCT list');
    const len = buf.readUInt16BE(at);
    const s = buf.subarray(at + 2, at + 2 + len);
    if (s.length !== len || len < 47) throw new SctError('truncated SCT');
    const extLen = s.readUInt16BE(41);
    const signature = s.subarray(43 + extLen);
    if (signature.length < 4 || signature.readUInt16BE(2) !== signature.length - 4)
      throw new SctError('bad SCT signature');
    out.push({
      version: s[0]!,
      logId: Buffer.from(s.subarray(1, 33)),
      timestamp: Number(s.readBigUInt64BE(33)),
      extensions: Buffer.from(s.subarray(43, 43 + extLen)),
      signature: Buffer.from(signature),
    });
    at += 2 + len;
  }
  return out;
}

/**
 * §3.2 digitally-signed struct of a precert entry: version, certificate_timestamp (0),
 * timestamp, precert_entry (1), issuer_key_hash, TBS (uint24) and the extensions.
 */
export function precertSignatureInput(
  sct: Pick<Sct, 'version' | 'timestamp' | 'extensions'>,
  issuerKeyHash: Uint8Array,
  tbs: Uint8Array,
): Buffer {
  return Buffer.concat([
    uint(sct.version, 1),
    uint(0, 1),
    uint(sct.timestamp, 8),
    uint(1, 2),
    issuerKeyHash,
    vector(tbs, 3),
    vector(sct.extensions, 2),
  ]);
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** A log as a verifier knows it: its key, and the log ID derived from it. */
export interface CtLogKey {
  readonly publicKey: KeyObject;
  readonly logId: Buffer;
}

export function ctLogKey(publicKey: KeyObject): CtLogKey {
  const type = publicKey.asymmetricKeyType;
  if (type !== 'ec' && type !== 'rsa')
    throw new SctError('a CT log key is ECDSA or RSA (RFC 6962 §2.1.4)');
  return { publicKey, logId: sha256(publicKey.export({ type: 'spki', format: 'der' })) };
}

/**
 * Throws SctError unless the SCT was signed by this log over this precert entry
 * (`tbs` is the precertificate's TBS with the poison extension removed).
 */
export function verifyPrecertSct(
  sct: Sct,
  log: CtLogKey,
  issuerKeyHash: Uint8Array,
  tbs: Uint8Array,
): void {
  if (sct.version !== 0) throw new SctError('not a v1 SCT');
  if (!sct.logId.equals(log.logId)) throw new SctError('the SCT names another log');
  const hash = sct.signature[0];
  const alg = sct.signature[1];
  const wantAlg = log.publicKey.asymmetricKeyType === 'ec' ? 3 : 1;
  if (hash !== 4 || alg !== wantAlg)
    throw new SctError(`unexpected signature algorithm (hash ${hash}, signature ${alg})`);
  const signature = sct.signature.subarray(4);
  let ok = false;
  try {
    ok = verify('sha256', precertSignatureInput(sct, issuerKeyHash, tbs), log.publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new SctError('the SCT signature does not verify');
}
