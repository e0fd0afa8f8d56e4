import type { Response } from 'express';
import { certificatePem } from '../common/encoding';
import type { CaError } from '../common/errors';

/** Response bodies, shaped and framed byte for byte like Fulcio's grpc-gateway. */

export const PEM_CHAIN_TYPE = 'application/pem-certificate-chain';

export function send(res: Response, status: number, contentType: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  res.status(status);
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(bytes.length));
  res.end(bytes);
}

export function sendJson(res: Response, status: number, value: unknown): void {
  send(res, status, 'application/json', JSON.stringify(value));
}

export function sendError(res: Response, error: CaError): void {
  const { httpStatus, grpcCode } = error.mapping;
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
