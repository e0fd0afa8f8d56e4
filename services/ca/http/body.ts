import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { CaError } from '../common/errors';

/**
 * The signing route's request body, raw, as body-parser's `raw()` read it before (the same
 * limits, the same answers) without its 30-odd modules and mime-db's table, which the
 * signing route never needed (bench/results/memory.md):
 *
 * - no body (neither Transfer-Encoding nor a numeric Content-Length): undefined;
 * - a Content-Length over the limit is refused before anything is read;
 * - gzip, deflate and br bodies are inflated, the limit applying to the inflated size; any
 *   other Content-Encoding (but identity) is refused;
 * - a body cut short, longer or shorter than its Content-Length, or that does not inflate
 *   is refused as unreadable.
 *
 * After a refusal the rest of the request is read off (and dropped) before the answer, so
 * that a keep-alive connection stays usable; an unsupported encoding is answered at once.
 */

const TOO_LARGE = (): CaError => new CaError('request_too_large', 'request body over the limit');

const UNREADABLE = (reason: string): CaError =>
  new CaError('invalid_request', `body could not be read: ${reason}`, {
    clientMessage: 'The request body could not be parsed',
  });

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (
    req.headers['transfer-encoding'] !== undefined ||
    (length !== undefined && !Number.isNaN(Number(length)))
  );
}

function decompressor(encoding: string): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress {
  switch (encoding) {
    case 'gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      throw UNREADABLE('encoding.unsupported');
  }
}

/** Reads what is left of the request and drops it; resolves once the request is over. */
function drain(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (req.complete || req.destroyed) return resolve();
    req.once('end', () => resolve());
    req.once('close', () => resolve());
    req.once('error', () => resolve());
    req.resume();
  });
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  if (!hasBody(req)) return Promise.resolve(undefined);
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  let stream: Readable;
  let inflate: Duplex | undefined;
  let declared: number | undefined;
  try {
    if (encoding === 'identity') {
      stream = req;
      const header = req.headers['content-length'];
      declared = header === undefined ? undefined : Number.parseInt(header, 10);
      if (declared !== undefined && Number.isNaN(declared)) declared = undefined;
    } else {
      inflate = decompressor(encoding);
      req.pipe(inflate);
      stream = inflate;
    }
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return new Promise<Buffer | undefined>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const cleanup = () => {
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      req.removeListener('aborted', onAborted);
      req.removeListener('close', onClose);
    };
    const fail = (error: CaError) => {
      if (done) return;
      done = true;
      cleanup();
      if (inflate) {
        req.unpipe(inflate);
        inflate.on('error', () => undefined);
        inflate.destroy();
      }
      void drain(req).then(() => reject(error));
    };
    const onData = (chunk: Buffer) => {
      if (done) return;
      received += chunk.length;
      if (received > limit) {
        fail(TOO_LARGE());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      if (done) return;
      if (declared !== undefined && received !== declared) {
        fail(UNREADABLE('request.size.invalid'));
        return;
      }
      done = true;
      cleanup();
      if (inflate) {
        req.unpipe(inflate);
        inflate.on('error', () => undefined);
        inflate.destroy();
        req.resume();
      }
      resolve(Buffer.concat(chunks, received));
    };
    const onError = (err: Error & { code?: string }) => {
      fail(UNREADABLE(err.code ?? 'error'));
    };
    const onAborted = () => fail(UNREADABLE('request.aborted'));
    const onClose = () => {
      if (!req.complete) onAborted();
    };
    if (declared !== undefined && declared > limit) {
      fail(TOO_LARGE());
      return;
    }
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.on('error', onError);
    req.once('aborted', onAborted);
    req.once('close', onClose);
  });
}
