import express, { type NextFunction, type Request, type Response } from 'express';
import { CaError, isCaError } from '../common/errors';
import type { Logger } from '../common/logger';
import type { IssuerDescription } from '../identity/issuer-pool';
import type { Metrics } from '../metrics/metrics';
import type { RegistrationAuthority, SigningResult } from '../ra/registration-authority';
import { parseJsonBody, parseV1Request, parseV2Request } from './dto';
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
  readonly health: { ready(): boolean };
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly maxRequestBytes: number;
}

const ROUTES = {
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

function chainPems(result: SigningResult): string[] {
  return [result.der, ...result.chain].map(trimmedPem);
}

export function createApiApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // grpc-gateway matches paths exactly.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', 'simple');

  app.use(requestContext(deps.logger));
  app.use((req, res, next) => {
    const end = deps.metrics.httpRequestDuration.startTimer({ method: req.method });
    res.on('finish', () => {
      const routePath = (req.route as { path?: string } | undefined)?.path;
      end({
        route: typeof routePath === 'string' ? routePath : 'unmatched',
        code: String(res.statusCode),
      });
    });
    next();
  });
  // Fulcio's HTTP server allows any origin for GET, POST and HEAD (rs/cors defaults).
  app.use((req, res, next) => {
    if (req.get('origin')) res.setHeader('Access-Control-Allow-Origin', '*');
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
  const rawBody = express.raw({ type: () => true, limit: deps.maxRequestBytes });

  app.get('/healthz', (_req, res) => sendJson(res, 200, { status: 'SERVING' }));
  app.get('/readyz', (_req, res) =>
    deps.health.ready()
      ? sendJson(res, 200, { status: 'SERVING' })
      : sendJson(res, 503, { status: 'NOT_SERVING' }),
  );

  app.post(
    ROUTES.v2SigningCert,
    rawBody,
    route(async (req, res) => {
      const request = parseV2Request(
        parseJsonBody(req.body as Buffer | undefined),
        req.get('authorization'),
      );
      const result = await signed(deps, res, request);
      sendJson(res, 200, {
        signedCertificateDetachedSct: {
          chain: { certificates: chainPems(result) },
          signedCertificateTimestamp: '',
        },
      });
    }),
  );

  app.post(
    ROUTES.v1SigningCert,
    rawBody,
    route(async (req, res) => {
      const request = parseV1Request(
        parseJsonBody(req.body as Buffer | undefined),
        req.get('authorization'),
      );
      const result = await signed(deps, res, request);
      send(res, 201, PEM_CHAIN_TYPE, pemChainBody(chainPems(result)));
    }),
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

async function signed(
  deps: ApiDeps,
  res: Response,
  request: Parameters<RegistrationAuthority['createSigningCertificate']>[0],
) {
  const result = await deps.ra.createSigningCertificate(request);
  deps.metrics.certificatesIssued.inc({ issuer_type: result.principal.issuerType });
  res.locals.log.info(
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
  const typed = err as { type?: string; status?: number } | undefined;
  // body-parser's errors: the size cap, or a body cut short.
  if (typed?.type === 'entity.too.large')
    return new CaError('request_too_large', 'request body over the limit');
  if (typed?.type && typed.status !== undefined && typed.status < 500) {
    return new CaError('invalid_request', `body could not be read: ${typed.type}`, {
      clientMessage: 'The request body could not be parsed',
    });
  }
  return new CaError(
    'internal',
    `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
}

function errorHandler(deps: ApiDeps) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const error = toCaError(err);
    const log = res.locals.log ?? deps.logger;
    const status = error.mapping.httpStatus;
    if (status >= 500)
      log.error({ code: error.code, detail: error.detail, path: req.path }, 'request failed');
    else if (status !== 404 && status !== 501)
      log.warn({ code: error.code, detail: error.detail, path: req.path }, 'request refused');
    if (req.path.endsWith('/signingCert')) {
      const reason = REFUSAL_REASON[error.code];
      if (reason) deps.metrics.refusals.inc({ reason });
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendError(res, error);
  };
}
