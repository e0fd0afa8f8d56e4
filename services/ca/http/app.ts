import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { keyAlgorithmName, type AuditLog, type AuditRequest } from '../audit/audit-log';
import { CaError, isCaError } from '../common/errors';
import type { Logger } from '../../common/logger';
import { TokenRefusedError, type IssuerDescription } from '../identity/issuer-pool';
import type { Metrics } from '../metrics/metrics';
import type { RegistrationAuthority, SigningResult } from '../ra/registration-authority';
import { parseJsonBody, parseV1Request, parseV2Request } from './dto';
import { healthRoutes, type Health } from './health';
import {
  PEM_CHAIN_TYPE,
  pemChainBody,
  send,
  sendError,
  sendJson,
  trimmedPem,
  untrimmedPem,
} from './render';
import { requestContext } from './request-context';

/**
 * The only module that knows Express. It maps Fulcio's HTTP API onto the registration
 * authority and renders every answer the way Fulcio's grpc-gateway does.
 */

export interface ApiDeps {
  readonly ra: RegistrationAuthority;
  readonly trustBundle: () => readonly (readonly Uint8Array[])[];
  readonly issuers: () => readonly IssuerDescription[];
  readonly health: Health;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly maxRequestBytes: number;
  /** One line per signing request's outcome (issued, refused, failed). */
  readonly audit?: AuditLog;
  /** Bounded issuer names for metrics and the audit log (the identity's IssuerPool). */
  readonly issuerLookup?: IssuerLookup;
  /**
   * Proxies whose X-Forwarded-For is believed (Express "trust proxy" values: addresses,
   * CIDRs, `loopback`, `linklocal`, `uniquelocal`). Empty: the socket's peer is the client.
   */
  readonly trustedProxies?: readonly string[];
}

export interface IssuerLookup {
  /** The configured issuer (URL or meta-issuer pattern) an `iss` belongs to. */
  issuerLabel(iss: string): string | undefined;
  /** A token's unverified `iss`, only when it names a configured issuer. */
  claimedIssuer(token: string): string | undefined;
}

export const ROUTES = {
  v2SigningCert: '/api/v2/signingCert',
  v2TrustBundle: '/api/v2/trustBundle',
  v2Configuration: '/api/v2/configuration',
  v1SigningCert: '/api/v1/signingCert',
  v1RootCert: '/api/v1/rootCert',
} as const;

type Handler = (req: Request, res: Response) => Promise<void> | void;

/** Express 5 forwards rejected promises to the error handler; this keeps types plain. */
function route(handler: Handler) {
  return (req: Request, res: Response, next: NextFunction): void => {
    Promise.resolve(handler(req, res)).catch(next);
  };
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

export function createApiApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // grpc-gateway matches paths exactly.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', 'simple');
  // req.ip is then the socket's address, or the right-most X-Forwarded-For entry that was
  // not added by a trusted proxy; never whatever a client chose to write in the header.
  app.set('trust proxy', deps.trustedProxies?.length ? [...deps.trustedProxies] : false);

  app.use(requestContext(deps.logger));
  // While draining, every answer closes its connection, so that keep-alive clients move to
  // another replica instead of reusing a socket that is about to go away.
  app.use((_req, res, next) => {
    closeWhenDraining(deps, res);
    next();
  });
  app.use((req, res, next) => {
    observeRequest(deps, req, res, () => {
      const routePath = (req.route as { path?: string } | undefined)?.path;
      return typeof routePath === 'string' ? routePath : 'unmatched';
    });
    next();
  });
  // Fulcio's HTTP server allows any origin for GET, POST and HEAD (rs/cors defaults).
  app.use((req, res, next) => {
    allowAnyOrigin(req, res);
    if (req.method === 'OPTIONS' && req.get('access-control-request-method')) {
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, HEAD');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Accept, X-Requested-With');
      res.status(204).end();
      return;
    }
    next();
  });

  // The size cap applies before any parsing: the raw parser checks Content-Length up front
  // and stops reading a chunked body at the limit.
  const rawBody = rawBodyParser(deps);
  // The per-client-ip limit, before the body is read: refusing a flood costs no parsing.
  const clientLimit = (req: Request, _res: Response, next: NextFunction): void => {
    deps.ra.admitClient(req.ip).then(() => next(), next);
  };

  healthRoutes(app, deps.health);

  app.post(
    ROUTES.v2SigningCert,
    clientLimit,
    rawBody,
    route((req, res) =>
      answerSigning(deps, 'v2', req.body as Buffer | undefined, req.get('authorization'), {
        exchange: expressExchange(deps, req, res),
        res,
      }),
    ),
  );

  app.post(
    ROUTES.v1SigningCert,
    clientLimit,
    rawBody,
    route((req, res) =>
      answerSigning(deps, 'v1', req.body as Buffer | undefined, req.get('authorization'), {
        exchange: expressExchange(deps, req, res),
        res,
      }),
    ),
  );

  app.get(
    ROUTES.v2TrustBundle,
    route((_req, res) => {
      const chains = bundle(deps);
      sendJson(res, 200, {
        chains: chains.map((chain) => ({ certificates: chain.map(untrimmedPem) })),
      });
    }),
  );

  app.get(
    ROUTES.v1RootCert,
    route((_req, res) => {
      send(res, 200, PEM_CHAIN_TYPE, pemChainBody(bundle(deps).flat().map(untrimmedPem)));
    }),
  );

  app.get(
    ROUTES.v2Configuration,
    route((_req, res) => {
      sendJson(res, 200, { issuers: deps.issuers() });
    }),
  );

  // A known path with the wrong method gets grpc-gateway's 501.
  for (const path of Object.values(ROUTES)) {
    app.all(path, (_req, _res, next) =>
      next(new CaError('method_not_allowed', 'method not allowed')),
    );
  }
  app.use((_req, _res, next) => next(new CaError('not_found', 'no such route')));
  app.use(errorHandler(deps));
  return app;
}

/**
 * The behaviour every API request shares, whichever router took it (the Express app, or the
 * node:http fast path of the signing routes in fast-path.ts): kept here, once.
 */

/** While draining, every answer closes its connection, so keep-alive clients move on. */
export function closeWhenDraining(deps: ApiDeps, res: ServerResponse): void {
  if (!deps.health.ready()) res.setHeader('Connection', 'close');
}

/** The request duration histogram, labelled with the route once the answer is sent. */
export function observeRequest(
  deps: ApiDeps,
  req: IncomingMessage,
  res: ServerResponse,
  routeOf: () => string,
): void {
  const end = deps.metrics.httpRequestDuration.startTimer({ method: req.method });
  res.on('finish', () => end({ route: routeOf(), code: String(res.statusCode) }));
}

/** Fulcio's HTTP server allows any origin (rs/cors defaults). */
export function allowAnyOrigin(req: IncomingMessage, res: ServerResponse): void {
  if (req.headers.origin) res.setHeader('Access-Control-Allow-Origin', '*');
}

/**
 * The body of a signing request, raw: the size cap applies before any parsing (the
 * Content-Length is checked up front and a chunked body stops at the limit).
 */
export function rawBodyParser(deps: ApiDeps) {
  return express.raw({ type: () => true, limit: deps.maxRequestBytes });
}

/** One signing request as the shared handlers see it, whichever router took it. */
export interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly log: Logger;
  /** Who asked, for the audit log. */
  readonly audit: () => AuditRequest;
  /** The configured issuer the token names (unverified; audit only). */
  claimedIssuer: string | undefined;
}

function expressExchange(deps: ApiDeps, req: Request, res: Response): Exchange {
  return {
    method: req.method,
    path: req.path,
    log: res.locals.log ?? deps.logger,
    audit: () => auditRequest(req, res),
    get claimedIssuer() {
      return res.locals.claimedIssuer;
    },
    set claimedIssuer(issuer) {
      res.locals.claimedIssuer = issuer;
    },
  };
}

/** Parses, signs and answers a signing request of either API version. */
export async function answerSigning(
  deps: ApiDeps,
  version: 'v1' | 'v2',
  body: Buffer | undefined,
  authorization: string | undefined,
  { exchange, res }: { exchange: Exchange; res: ServerResponse },
): Promise<void> {
  const parse = version === 'v2' ? parseV2Request : parseV1Request;
  const result = await signed(deps, exchange, parse(parseJsonBody(body), authorization));
  if (version === 'v1') {
    send(res, 201, PEM_CHAIN_TYPE, pemChainBody(chainPems(result)));
    return;
  }
  sendJson(res, 200, {
    signedCertificateDetachedSct: {
      chain: { certificates: chainPems(result) },
      signedCertificateTimestamp: '',
    },
  });
}

/** Who asked, for the audit log: the request id, the route and the client's address. */
function auditRequest(req: Request, res: Response): AuditRequest {
  return {
    requestId: res.locals.requestId,
    route: req.path,
    clientIp: req.socket.remoteAddress,
    forwardedFor: req.ip,
  };
}

async function signed(
  deps: ApiDeps,
  exchange: Exchange,
  request: Parameters<RegistrationAuthority['createSigningCertificate']>[0],
) {
  let result;
  try {
    result = await deps.ra.createSigningCertificate(request);
  } catch (err) {
    // For the audit line of a refusal (read only then: it costs a token decode); the token
    // itself is never kept.
    exchange.claimedIssuer = deps.issuerLookup?.claimedIssuer(request.token);
    throw err;
  }
  const { principal } = result;
  deps.metrics.certificatesIssued.inc({
    issuer: deps.issuerLookup?.issuerLabel(principal.issuer) ?? 'unknown',
    issuer_type: principal.issuerType,
  });
  deps.audit?.issued(exchange.audit(), {
    der: result.der,
    publicKey: {
      spki: result.publicKey.spki,
      algorithm: keyAlgorithmName(result.publicKey.algorithm),
    },
    serial: result.serial,
    identity: principal.certificateIdentity(),
    issuer: principal.issuer,
    issuerType: principal.issuerType,
    subject: principal.subject,
    notBefore: result.notBefore,
    notAfter: result.notAfter,
  });
  exchange.log.info(
    {
      issuer: result.principal.issuer,
      issuerType: result.principal.issuerType,
      notAfter: result.notAfter.toISOString(),
    },
    'signing certificate issued',
  );
  return result;
}

function bundle(deps: ApiDeps): readonly (readonly Uint8Array[])[] {
  try {
    return deps.trustBundle();
  } catch (err) {
    throw new CaError('trust_bundle', `trust bundle unavailable: ${(err as Error).message}`);
  }
}

const SIGNING_ROUTES: ReadonlySet<string> = new Set([ROUTES.v2SigningCert, ROUTES.v1SigningCert]);

const REFUSAL_REASON: Partial<Record<CaError['code'], string>> = {
  invalid_token: 'token',
  invalid_public_key: 'key',
  insecure_public_key: 'key',
  invalid_signature: 'proof',
  invalid_csr: 'csr',
  unsupported_signature_algorithm: 'csr',
  algorithm_not_permitted: 'algorithm',
  identity_validation: 'identity',
  invalid_request: 'request',
  request_too_large: 'request',
  rate_limited: 'rate_limit',
};

function toCaError(err: unknown): CaError {
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

function errorHandler(deps: ApiDeps) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    answerFailure(deps, err, { exchange: expressExchange(deps, req, res), res });
  };
}

/** Logs, counts, audits and answers a failed request (the one error path of the API). */
export function answerFailure(
  deps: ApiDeps,
  err: unknown,
  { exchange, res }: { exchange: Exchange; res: ServerResponse },
): void {
  const error = toCaError(err);
  const { log, path } = exchange;
  const status = error.mapping.httpStatus;
  if (status >= 500) log.error({ code: error.code, detail: error.detail, path }, 'request failed');
  else if (status !== 404 && status !== 501)
    log.warn({ code: error.code, detail: error.detail, path }, 'request refused');
  if (path.endsWith('/signingCert')) {
    const reason = REFUSAL_REASON[error.code];
    if (reason) deps.metrics.refusals.inc({ reason });
    if (exchange.method === 'POST' && SIGNING_ROUTES.has(path)) {
      const issuer = exchange.claimedIssuer;
      if (status >= 500) deps.audit?.failed(exchange.audit(), { code: error.code, status, issuer });
      else
        deps.audit?.refused(exchange.audit(), {
          reason: reason ?? error.code,
          code: error.code,
          status,
          tokenFailure: error instanceof TokenRefusedError ? error.reason : undefined,
          issuer,
        });
    }
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendError(res, error);
}
