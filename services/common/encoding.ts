/**
 * Encoding helpers shared by every module: lenient base64 the way protojson reads `bytes`
 * fields, and PEM framing.
 */

const STD_B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_B64 = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Decodes base64 as protojson does for `bytes`: standard or URL-safe alphabet, padded or
 * not. Returns undefined for anything else (Node's decoder silently skips bad characters,
 * which would turn garbage into bytes).
 */
export function decodeBase64Lenient(text: string): Buffer | undefined {
  if (text.length % 4 === 1) return undefined;
  if (STD_B64.test(text)) return Buffer.from(text, 'base64');
  if (URL_B64.test(text)) return Buffer.from(text, 'base64url');
  return undefined;
}

/** Strict unpadded base64url, as JWT segments must be (Go's RawURLEncoding). */
export function decodeBase64UrlStrict(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  return Buffer.from(text, 'base64url');
}

export interface PemBlock {
  readonly type: string;
  readonly der: Buffer;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n((?:[^\n]*\r?\n)*?)-----END \1-----/g;

/** All PEM blocks in the text, in order. Blocks with headers (RFC 1423) are skipped. */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const type = match[1] ?? '';
    const body = (match[2] ?? '').replace(/\r?\n/g, '');
    if (body.includes(':')) continue;
    const der = decodeBase64Lenient(body);
    if (der === undefined || der.length === 0) continue;
    blocks.push({ type, der });
  }
  return blocks;
}

/** PEM with 64-column lines and a trailing newline, like Go's pem.Encode. */
export function encodePem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  // Sliced by hand: a quarter of the cost of b64.match(/.{1,64}/g) (it runs for every leaf).
  let body = b64.length === 0 ? '\n' : '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${type}-----\n${body}-----END ${type}-----\n`;
}

export function certificatePem(der: Uint8Array): string {
  return encodePem('CERTIFICATE', der);
}

/** Copies any byte view into a standalone ArrayBuffer (what asn1js/pkijs want). */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(out).set(bytes);
  return out;
}
