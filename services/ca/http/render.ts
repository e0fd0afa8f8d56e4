import type { ServerResponse } from 'node:http';
import { certificatePem } from '../../common/encoding';
import type { CaError } from '../common/errors';

/** Response bodies, shaped and framed byte for byte like Fulcio's grpc-gateway. */

export const PEM_CHAIN_TYPE = 'application/pem-certificate-chain';

// Plain node:http responses (an Express response is one too), for the fast path's sake.
export function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(bytes.length));
  res.end(bytes);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', JSON.stringify(value));
}

export function sendError(res: ServerResponse, error: CaError): void {
  const { httpStatus, grpcCode } = error.mapping;
  if (error.retryAfterSeconds !== undefined)
    res.setHeader('Retry-After', String(error.retryAfterSeconds));
  const limit = error.rateLimit;
  if (limit) {
    // draft-ietf-httpapi-ratelimit-headers: a structured-field list item per policy.
    const name = JSON.stringify(limit.policy);
    res.setHeader('RateLimit-Policy', `${name};q=${limit.quota};w=${limit.windowSeconds}`);
    res.setHeader('RateLimit', `${name};r=${limit.remaining};t=${limit.resetSeconds}`);
  }
  sendJson(res, httpStatus, { code: grpcCode, message: error.clientMessage, details: [] });
}

/** The leaf and chain in v2 responses: PEM with surrounding white space trimmed. */
export function trimmedPem(der: Uint8Array): string {
  return certificatePem(der).trim();
}

/** Trust-bundle PEMs keep their trailing newline (Fulcio marshals them untrimmed). */
export function untrimmedPem(der: Uint8Array): string {
  return certificatePem(der);
}

/** Fulcio's legacy concatenation: each PEM plus a newline, then the whole body trimmed. */
export function pemChainBody(pems: readonly string[]): string {
  return pems
    .map((p) => `${p}\n`)
    .join('')
    .trim();
}
