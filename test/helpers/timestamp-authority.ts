/**
 * A real RFC 3161 timestamp authority on 127.0.0.1 for end-to-end tests.
 *
 * @sigstore/mock ships a TSA (`initializeTSA` + `tsaHandler`), but its `mockTSA()` helper only
 * registers it with nock, which patches node:http in-process. We want sigstore-js to make real
 * HTTP requests over loopback (as it would against production), so this module serves the same
 * handler from a plain node:http server on an ephemeral port instead.
 *
 * Like sigstore/timestamp-authority, `POST /api/v1/timestamp` takes both request encodings:
 * - `application/json` (what sigstore-js sends): handed to the mock's own handler;
 * - `application/timestamp-query`, a DER RFC 3161 TimeStampReq (what cosign and other Go
 *   clients send): the mock's handler only parses JSON, so we decode the DER ourselves and call
 *   the mock's `tsa.timestamp()` with the same fields. See `derTimestamp` below.
 */
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { initializeTSA, tsaHandler } from '@sigstore/mock';
import * as pkijs from 'pkijs';

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
  /** Timestamp requests answered with a token, by request encoding (see the module comment). */
  readonly issued: { json: number; der: number };
  /** Stops the server and drops kept-alive client connections. */
  close(): Promise<void>;
}

/** The mock's TSA object (its type is not exported from the package root). */
type TSA = Awaited<ReturnType<typeof initializeTSA>>;

/** Path of the real sigstore/timestamp-authority API that also serves the chain as PEM. */
const CERT_CHAIN_PATH = '/api/v1/timestamp/certchain';
/** The mock's handler rejects nothing by size, so cap request bodies ourselves. */
const MAX_BODY_BYTES = 64 * 1024;
/** Content types of RFC 3161 over HTTP (RFC 3161 §3.4). */
const TIMESTAMP_QUERY_TYPE = 'application/timestamp-query';
const TIMESTAMP_REPLY_TYPE = 'application/timestamp-reply';
/** The policy the mock (and Sigstore's public TSA) puts in TSTInfo when the request names none. */
const DEFAULT_POLICY_OID = '1.3.6.1.4.1.57264.2';

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
  echoBigNonces(tsa);
  const handler = tsaHandler(tsa);
  const issued = { json: 0, der: 0 };

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
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (contentType === TIMESTAMP_QUERY_TYPE) {
      clock.setTime(floorToSecond(options.clock?.getTime() ?? Date.now()));
      let reply: Buffer;
      try {
        reply = await derTimestamp(tsa, body);
      } catch (err) {
        // A request we cannot read is the client's fault; anything else is the mock's.
        res.writeHead(err instanceof BadTimestampRequest ? 400 : 500, {
          'Content-Type': 'text/plain',
        });
        res.end(err instanceof Error ? err.message : String(err));
        return;
      }
      issued.der++;
      // sigstore/timestamp-authority answers 201 Created with the DER TimeStampResp.
      res.writeHead(201, { 'Content-Type': TIMESTAMP_REPLY_TYPE });
      res.end(reply);
      return;
    }
    // Same contract as the mock's nock adapter: the handler takes the body as a string (a JSON
    // TimestampRequest: artifactHash, hashAlgorithm, optional nonce/certificates/tsaPolicyOID).
    // No await between setting the clock and calling the handler: the mock reads genTime
    // synchronously at the start of the call, so concurrent requests cannot interleave here.
    clock.setTime(floorToSecond(options.clock?.getTime() ?? Date.now()));
    const {
      statusCode,
      response,
      contentType: replyType,
    } = await handler.fn(body.toString('utf8'));
    if (statusCode < 300) issued.json++;
    res.writeHead(statusCode, { 'Content-Type': replyType ?? 'text/plain' });
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
    issued,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // make-fetch-happen keeps connections alive; without this close() waits for them to idle out.
        server.closeAllConnections();
      }),
  };
}

/**
 * Answers a DER TimeStampReq (RFC 3161 §2.4.1) with the mock TSA: same hash, hash algorithm,
 * nonce, policy and certReq as asked. The mock then signs the TSTInfo exactly as it does for
 * JSON requests. The reply is decoded again and checked to echo the request, so a mock change
 * shows up here and not as an obscure verification failure in a client.
 */
async function derTimestamp(tsa: TSA, body: Buffer): Promise<Buffer> {
  let request: pkijs.TimeStampReq;
  try {
    request = pkijs.TimeStampReq.fromBER(body);
  } catch (err) {
    throw new BadTimestampRequest(
      `not a DER TimeStampReq: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (request.version !== 1) {
    throw new BadTimestampRequest(`unsupported TimeStampReq version ${request.version}`);
  }
  const nonce = request.nonce?.toBigInt();
  if (nonce !== undefined && nonce < 0n) throw new BadTimestampRequest('negative nonce');
  const artifactHash = Buffer.from(request.messageImprint.hashedMessage.valueBlock.valueHexView);
  const hashAlgorithmOID = request.messageImprint.hashAlgorithm.algorithmId;
  const timestampRequest: BigNonceRequest = {
    artifactHash,
    hashAlgorithmOID,
    // The mock's TimestampRequest.nonce is a JS number, too small for the up-to-160-bit nonces
    // Go clients send; the real value travels in `bigNonce` (see echoBigNonces).
    nonce: 0,
    bigNonce: nonce,
    policyOID: request.reqPolicy ?? DEFAULT_POLICY_OID,
    certReq: request.certReq ?? false,
  };
  const reply = toBuffer(await tsa.timestamp(timestampRequest));

  const info = tstInfoOf(reply);
  const echoed =
    Buffer.from(info.messageImprint.hashedMessage.valueBlock.valueHexView).equals(artifactHash) &&
    info.messageImprint.hashAlgorithm.algorithmId === hashAlgorithmOID &&
    info.nonce?.toBigInt() === nonce;
  if (!echoed) throw new Error('mock TSA reply does not echo the request (hash or nonce)');
  return reply;
}

/** A DER request the TSA cannot serve (answered 400, like timestamp-authority does). */
class BadTimestampRequest extends Error {}

interface BigNonceRequest {
  artifactHash: Buffer;
  hashAlgorithmOID: string;
  nonce: number;
  /** The request's nonce, or undefined for none. */
  bigNonce: bigint | undefined;
  policyOID: string;
  certReq: boolean;
}

/** The TSTInfo structure of the mock's TSA (its own bundled pkijs 3 / asn1js 3 objects). */
interface MockTstInfo {
  nonce?: { constructor: unknown };
}

/**
 * The mock builds TSTInfo.nonce as `new asn1js.Integer({ value: req.nonce })` from a JS number:
 * large values encode as an empty INTEGER, and a request without a nonce still gets one. This
 * wraps its (unexported) `tstInfo` step so that a request carrying `bigNonce` gets exactly its
 * nonce back, encoded with the mock's own asn1js `Integer.fromBigInt`, and a DER request without
 * a nonce gets none (RFC 3161 §2.4.2). JSON requests are untouched. Fails loudly if the mock's
 * internals change.
 */
function echoBigNonces(tsa: TSA): void {
  const impl = tsa as unknown as { tstInfo?: (req: unknown) => MockTstInfo };
  const original = impl.tstInfo;
  if (typeof original !== 'function') {
    throw new Error('@sigstore/mock TSA has no tstInfo() step any more; update echoBigNonces');
  }
  impl.tstInfo = (req: unknown): MockTstInfo => {
    const info = original.call(tsa, req);
    if (typeof req !== 'object' || req === null || !('bigNonce' in req)) return info;
    const { bigNonce } = req as BigNonceRequest;
    const integer = info.nonce?.constructor as
      { fromBigInt?: (value: bigint) => { constructor: unknown } } | undefined;
    if (typeof integer?.fromBigInt !== 'function') {
      throw new Error(
        '@sigstore/mock TSTInfo.nonce is not an asn1js Integer; update echoBigNonces',
      );
    }
    info.nonce = bigNonce === undefined ? undefined : integer.fromBigInt(bigNonce);
    return info;
  };
}

/** Decodes TimeStampResp → SignedData → TSTInfo (only to check the mock's reply). */
function tstInfoOf(reply: Buffer): pkijs.TSTInfo {
  const response = pkijs.TimeStampResp.fromBER(reply);
  if (response.status.status !== pkijs.PKIStatus.granted || !response.timeStampToken) {
    throw new Error(`mock TSA refused: status ${response.status.status}`);
  }
  const signedData = new pkijs.SignedData({ schema: response.timeStampToken.content });
  const eContent = signedData.encapContentInfo.eContent;
  if (!eContent) throw new Error('mock TSA reply has no TSTInfo');
  return pkijs.TSTInfo.fromBER(eContent.getValue());
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
