import { readFile } from 'node:fs/promises';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { certificatePem } from '../common/encoding';
import type { Logger } from '../common/logger';
import { errorBody, errorContentType, TsaError, type TsaErrorCode } from './errors';
import type { TsaMetrics } from './metrics';
import { MAX_DER_REQUEST_BYTES } from './request';
import { encodingOf, type TimestampService } from './service';

/**
 * The TSA's HTTP surface, on node:http alone (no framework: two routes and the probes).
 * Status codes, media types and error bodies are the reference server's:
 *
 * - `POST /api/v1/timestamp`: 201 `application/timestamp-reply`, the DER TimeStampResp;
 * - `GET /api/v1/timestamp/certchain`: 200 `application/pem-certificate-chain`;
 * - refusals: `{"code":…,"message":…}`, labelled as the reference labels them (errors.ts).
 *
 * Besides: `/ping` (the reference's heartbeat), `/healthz`, `/readyz`, and, when files are
 * configured, the trusted root and signing config at `/api/v1/trustedRoot` and
 * `/api/v1/signingConfig` (read-only).
 */

export const ROUTES = {
  timestamp: '/api/v1/timestamp',
  certchain: '/api/v1/timestamp/certchain',
  trustedRoot: '/api/v1/trustedRoot',
  signingConfig: '/api/v1/signingConfig',
} as const;

const CONSUMES = ['application/timestamp-query', 'application/json'];
/** Read at most this much of a body; anything larger is refused without reading on. */
const BODY_LIMIT = MAX_DER_REQUEST_BYTES + 1;

export interface HttpDeps {
  readonly service: TimestampService;
  readonly metrics: TsaMetrics;
  readonly logger: Logger;
  /** Readiness: not draining, clock within its bound. */
  readonly readiness: () => readonly string[];
  /** The per-address limit; resolves false when the address is over it. */
  readonly allow?: (address: string) => Promise<boolean>;
  readonly trustedRootFile?: string | undefined;
  readonly signingConfigFile?: string | undefined;
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(typeof body === 'string' ? Buffer.byteLength(body) : body.length),
    ...headers,
  });
  res.end(body);
}

function sendError(res: ServerResponse, code: TsaErrorCode, message?: string): void {
  const { httpStatus } = new TsaError(code).mapping;
  send(res, httpStatus, errorContentType(code), errorBody(code, message));
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** go-openapi's HasBody: a declared length above zero, or a chunked body. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

export function createTsaHandler(deps: HttpDeps): RequestListener {
  const chainPem = deps.service.chain.map((der) => certificatePem(der)).join('');
  const { metrics, logger } = deps;

  async function timestamp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!hasBody(req)) return sendError(res, 'empty_body');
    const encoding = encodingOf(req.headers['content-type']);
    if (!encoding) {
      const media = (req.headers['content-type'] ?? 'application/octet-stream')
        .split(';')[0]!
        .trim();
      req.resume();
      return sendError(
        res,
        'unsupported_media_type',
        `unsupported media type ${JSON.stringify(media)}, only [${CONSUMES.join(' ')}] are allowed`,
      );
    }
    if (deps.allow && !(await deps.allow(req.socket.remoteAddress ?? ''))) {
      metrics.rateLimited.inc();
      req.resume();
      return sendError(res, 'rate_limited');
    }
    let body: Buffer;
    try {
      body = await readBody(req, BODY_LIMIT);
    } catch (err) {
      if (err instanceof BodyTooLarge) throw new TsaError('too_large');
      throw err;
    }
    const der = await deps.service.timestamp(body, encoding);
    send(res, 201, 'application/timestamp-reply', der, {
      'Cache-Control': 'no-cache, no-store, must-revalidate',
    });
  }

  async function servedFile(res: ServerResponse, file: string | undefined): Promise<void> {
    if (!file) return sendError(res, 'not_found', 'path not found');
    const text = await readFile(file);
    send(res, 200, 'application/json', text, { 'Cache-Control': 'max-age=300' });
  }

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    switch (path) {
      case ROUTES.timestamp:
        if (method !== 'POST') {
          return sendError(
            res,
            'method_not_allowed',
            `method ${method} is not allowed, but [POST] are`,
          );
        }
        return timestamp(req, res);
      case ROUTES.certchain:
        if (method !== 'GET') {
          return sendError(
            res,
            'method_not_allowed',
            `method ${method} is not allowed, but [GET] are`,
          );
        }
        return send(res, 200, 'application/pem-certificate-chain', chainPem, {
          'Cache-Control': 'max-age=86400, immutable',
        });
      case ROUTES.trustedRoot:
        return servedFile(res, deps.trustedRootFile);
      case ROUTES.signingConfig:
        return servedFile(res, deps.signingConfigFile);
      case '/ping':
        return send(res, 200, 'text/plain', '.');
      case '/healthz':
        return send(res, 200, 'application/json', '{"status":"SERVING"}');
      case '/readyz': {
        const failing = deps.readiness();
        return failing.length === 0
          ? send(res, 200, 'application/json', '{"status":"SERVING"}')
          : send(res, 503, 'application/json', JSON.stringify({ status: 'NOT_SERVING', failing }));
      }
      default:
        return sendError(res, 'not_found', `path ${path} was not found`);
    }
  }

  return (req, res) => {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const known = (Object.values(ROUTES) as string[]).includes(path);
    res.on('finish', () => {
      metrics.httpRequestDuration.observe(
        { route: known ? path : 'other', method: req.method ?? '', code: String(res.statusCode) },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    });
    route(req, res, path).catch((err: unknown) => {
      const code: TsaErrorCode = err instanceof TsaError ? err.code : 'internal';
      metrics.refusals.inc({ reason: code });
      if (code === 'internal') {
        logger.error({ err: (err as Error).message, path }, 'timestamp request failed');
      } else {
        logger.debug({ reason: code, detail: (err as TsaError).detail, path }, 'request refused');
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Whatever of the body is left is not read: close the connection after answering.
      if (!req.complete) res.setHeader('Connection', 'close');
      sendError(res, code);
    });
  };
}
