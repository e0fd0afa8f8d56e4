/**
 * A real RFC 3161 timestamp authority on 127.0.0.1 for end-to-end tests.
 *
 * @sigstore/mock ships a TSA (`initializeTSA` + `tsaHandler`), but its `mockTSA()` helper only
 * registers it with nock, which patches node:http in-process. We want sigstore-js to make real
 * HTTP requests over loopback (as it would against production), so this module serves the same
 * handler from a plain node:http server on an ephemeral port instead.
 */
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { initializeTSA, tsaHandler } from '@sigstore/mock';

export interface TimestampAuthorityOptions {
  /**
   * Fixed genTime for every timestamp (truncated to whole seconds). Leave unset to use the wall
   * clock; set it to test timestamps outside the signing certificate's validity.
   */
  clock?: Date;
}

export interface TimestampAuthority {
  /** Base URL without trailing slash, e.g. `http://127.0.0.1:41234`; pass as `tsaBaseURL`. */
  url: string;
  /** TSA certificate chain as PEM (trailing newline), signing certificate first, root last. */
  certChainPem: string[];
  /** The same chain as DER. */
  certChainDer: Buffer[];
  /** Stops the server and drops kept-alive client connections. */
  close(): Promise<void>;
}

/** Path of the real sigstore/timestamp-authority API that also serves the chain as PEM. */
const CERT_CHAIN_PATH = '/api/v1/timestamp/certchain';
/** The mock's handler rejects nothing by size, so cap request bodies ourselves. */
const MAX_BODY_BYTES = 64 * 1024;

export async function startTimestampAuthority(
  options: TimestampAuthorityOptions = {},
): Promise<TimestampAuthority> {
  // The mock converts the KeyObjects to WebCrypto keys and only knows the NIST curves.
  const keyPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  // The mock reads the `clock` Date object it is given on every request (`clock || new Date()`),
  // so we hand it one we own and set it just before each request. Why: the mock encodes genTime
  // with asn1js, which writes milliseconds minimally ("...52.08Z", "...52.1Z"), but
  // @sigstore/core only parses exactly three fractional digits and throws "invalid time" for the
  // ~10% of timestamps whose milliseconds end in 0. Whole seconds ("...52Z") always parse.
  const clock = new Date(0);
  const tsa = await initializeTSA(keyPair, clock);
  const handler = tsaHandler(tsa);

  // The mock's TSA signs with its "intermediate" certificate, so that one is the chain's leaf.
  const certChainDer = [toBuffer(tsa.intCertificate), toBuffer(tsa.rootCertificate)];
  const certChainPem = certChainDer.map((der) => new X509Certificate(der).toString());

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      // The handler catches its own errors; this only fires on transport-level failures.
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(err instanceof Error ? err.message : String(err));
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'GET' && path === CERT_CHAIN_PATH) {
      res.writeHead(200, { 'Content-Type': 'application/pem-certificate-chain' });
      res.end(certChainPem.join(''));
      return;
    }
    if (req.method !== 'POST' || path !== handler.path) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    const body = await readBody(req);
    // Same contract as the mock's nock adapter: the handler takes the body as a string (a JSON
    // TimestampRequest: artifactHash, hashAlgorithm, optional nonce/certificates/tsaPolicyOID).
    // No await between setting the clock and calling the handler: the mock reads genTime
    // synchronously at the start of the call, so concurrent requests cannot interleave here.
    clock.setTime(floorToSecond(options.clock?.getTime() ?? Date.now()));
    const { statusCode, response, contentType } = await handler.fn(body.toString('utf8'));
    res.writeHead(statusCode, { 'Content-Type': contentType ?? 'text/plain' });
    res.end(typeof response === 'string' ? response : toBuffer(response));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    certChainPem,
    certChainDer,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // make-fetch-happen keeps connections alive; without this close() waits for them to idle out.
        server.closeAllConnections();
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new Error('request body too large');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** Wraps a view without copying; `view.buffer` alone may be a larger pooled ArrayBuffer. */
function toBuffer(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Truncating never moves genTime before a certificate issued earlier: X.509 validity times are
 * whole seconds too, so floor(issuedAt) <= floor(timestampedAt).
 */
function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
