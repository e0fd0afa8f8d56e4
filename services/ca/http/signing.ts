import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Histogram } from 'prom-client';
import proxyaddr from 'proxy-addr';
import { CaError, isCaError } from '../common/errors';
import type { Logger } from '../../common/logger';
import type { RegistrationAuthority, SigningResult } from '../ra/registration-authority';
import { readBody } from './body';
import { parseJsonBody, parseV1Request, parseV2Request } from './dto';
import { PEM_CHAIN_TYPE, pemChainBody, send, sendError, sendJson, trimmedPem } from './render';
import { requestIdentity } from './request-context';

/**
 * The signing route (POST /api/v2/signingCert and /api/v1/signingCert), declared once: one
 * handler on plain node:http, whichever server or router hands it the request. The steps,
 * in order:
 *
 *   1. request id (X-Request-Id, echoed) and the request's logger
 *   2. `Connection: close` while draining
 *   3. the request duration histogram, under the route's label
 *   4. CORS (any origin, as Fulcio)
 *   5. the registration authority's handler: the per-client-ip limit, then the body
 *      (size cap before any parsing) and its DTO, then the signing flow; it reports every
 *      decision (metrics, audit) itself, so a gRPC transport calling it is reported alike
 *   6. the answer: Fulcio's JSON (v2) or PEM chain (v1), or Fulcio's error body
 *
 * Everything here is node:http: Express routes the other paths (app.ts) and, for
 * comparisons, may mount this same handler (express is never needed for it).
 */

export type ApiVersion = 'v1' | 'v2';

/** The metric HTTP keeps itself (the CA's metrics module is injected by the composition root). */
export interface HttpMetrics {
  readonly httpRequestDuration: Histogram<'route' | 'method' | 'code'>;
}

export interface SigningRouteDeps {
  readonly ra: Pick<RegistrationAuthority, 'handle'>;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
  readonly maxRequestBytes: number;
  /**
   * Proxies whose X-Forwarded-For is believed (proxy-addr values: addresses, CIDRs,
   * `loopback`, `linklocal`, `uniquelocal`). Empty: the socket's peer is the client.
   */
  readonly trustedProxies?: readonly string[];
}

export type SigningHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  version: ApiVersion,
  path: string,
) => Promise<void>;

/** The request duration histogram, labelled with the route once the answer is sent. */
export function observeRequest(
  metrics: HttpMetrics,
  req: IncomingMessage,
  res: ServerResponse,
  routeOf: () => string,
): void {
  const end = metrics.httpRequestDuration.startTimer({ method: req.method });
  res.on('finish', () => end({ route: routeOf(), code: String(res.statusCode) }));
}

/** Fulcio's HTTP server allows any origin (rs/cors defaults). */
export function allowAnyOrigin(req: IncomingMessage, res: ServerResponse): void {
  if (req.headers.origin) res.setHeader('Access-Control-Allow-Origin', '*');
}

/** Any failure as the CaError it answers with (body-parser's errors, on Express's routes, are client errors). */
export function toCaError(err: unknown): CaError {
  if (isCaError(err)) return err;
  const typed = err as { type?: string; code?: string; status?: number } | undefined;
  // body-parser's errors: the size cap, or a body cut short. A Content-Encoding the body
  // does not match (gzip that is not gzip) is a client error too, though body-parser gives
  // it no `type`: it wraps the zlib error (code Z_DATA_ERROR, ...) with status 400.
  if (typed?.type === 'entity.too.large')
    return new CaError('request_too_large', 'request body over the limit');
  if (typed?.status !== undefined && typed.status >= 400 && typed.status < 500) {
    return new CaError(
      'invalid_request',
      `body could not be read: ${typed.type ?? typed.code ?? 'error'}`,
      { clientMessage: 'The request body could not be parsed' },
    );
  }
  return new CaError(
    'internal',
    `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
}

/** Logs and answers a failed request (the one error path of the API). */
export function answerFailure(
  err: unknown,
  { log, path, res }: { log: Logger; path: string; res: ServerResponse },
): void {
  const error = toCaError(err);
  const status = error.mapping.httpStatus;
  if (status >= 500) log.error({ code: error.code, detail: error.detail, path }, 'request failed');
  else if (status !== 404 && status !== 501)
    log.warn({ code: error.code, detail: error.detail, path }, 'request refused');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendError(res, error);
}

/** The client address: the TCP peer, or the right-most X-Forwarded-For hop not trusted. */
function clientAddressOf(trustedProxies: readonly string[] | undefined) {
  const trust = trustedProxies?.length ? proxyaddr.compile([...trustedProxies]) : () => false;
  return (req: IncomingMessage): string => proxyaddr(req, trust);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

/** The CA chain's PEMs, encoded once per chain (a chain is replaced whole on a CA reload). */
const chainPemCache = new WeakMap<readonly Uint8Array[], readonly string[]>();

function chainPems(result: SigningResult): string[] {
  let chain = chainPemCache.get(result.chain);
  if (!chain) {
    chain = result.chain.map(trimmedPem);
    chainPemCache.set(result.chain, chain);
  }
  return [trimmedPem(result.der), ...chain];
}

function answerSigned(res: ServerResponse, version: ApiVersion, result: SigningResult): void {
  if (version === 'v1') {
    send(res, 201, PEM_CHAIN_TYPE, pemChainBody(chainPems(result)));
    return;
  }
  // With CT the SCTs are in the certificate and v1 sends no SCT header (as Fulcio).
  if (result.embeddedScts) {
    sendJson(res, 200, {
      signedCertificateEmbeddedSct: { chain: { certificates: chainPems(result) } },
    });
    return;
  }
  sendJson(res, 200, {
    signedCertificateDetachedSct: {
      chain: { certificates: chainPems(result) },
      signedCertificateTimestamp: '',
    },
  });
}

export function signingHandler(deps: SigningRouteDeps): SigningHandler {
  const clientAddress = clientAddressOf(deps.trustedProxies);
  return async (req, res, version, path) => {
    const { requestId, log } = requestIdentity(deps.logger, header(req, 'x-request-id'), res);
    observeRequest(deps.metrics, req, res, () => path);
    allowAnyOrigin(req, res);
    try {
      const address = clientAddress(req);
      const origin = {
        requestId,
        route: path,
        clientIp: req.socket.remoteAddress,
        clientAddress: address,
        forwardedFor: address,
        log,
      };
      const parse = version === 'v2' ? parseV2Request : parseV1Request;
      const result = await deps.ra.handle(origin, async () =>
        parse(
          parseJsonBody(await readBody(req, deps.maxRequestBytes)),
          header(req, 'authorization'),
        ),
      );
      answerSigned(res, version, result);
    } catch (err) {
      answerFailure(err, { log, path, res });
    }
  };
}
