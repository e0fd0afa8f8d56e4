import express, { type NextFunction, type Request, type Response } from 'express';
import { CaError } from '../common/errors';
import type { Logger } from '../../common/logger';
import type { RegistrationAuthority } from '../ra/registration-authority';
import { healthRoutes, type Health } from './health';
import { PEM_CHAIN_TYPE, pemChainBody, send, sendJson, untrimmedPem } from './render';
import { requestContext } from './request-context';
import { ROUTES } from './routes';
import {
  allowAnyOrigin,
  answerFailure,
  observeRequest,
  type HttpMetrics,
  type SigningHandler,
} from './signing';

/**
 * The only module that knows Express: every route but the signing route (signing.ts, plain
 * node:http), rendered the way Fulcio's grpc-gateway renders them.
 */

export { ROUTES };

export interface ApiDeps {
  readonly ra: Pick<RegistrationAuthority, 'handle'>;
  readonly trustBundle: () => readonly (readonly Uint8Array[])[];
  /** The configured issuers as Fulcio lists them (rendered as they are). */
  readonly issuers: () => readonly object[];
  readonly health: Health;
  readonly metrics: HttpMetrics;
  readonly logger: Logger;
  readonly maxRequestBytes: number;
  /**
   * Proxies whose X-Forwarded-For is believed (proxy-addr values: addresses, CIDRs,
   * `loopback`, `linklocal`, `uniquelocal`). Empty: the socket's peer is the client.
   */
  readonly trustedProxies?: readonly string[];
}

type Handler = (req: Request, res: Response) => Promise<void> | void;

/** Express 5 forwards rejected promises to the error handler; this keeps types plain. */
function route(handler: Handler) {
  return (req: Request, res: Response, next: NextFunction): void => {
    Promise.resolve(handler(req, res)).catch(next);
  };
}

/**
 * The Express app: health, trust bundle, configuration, and Fulcio's 404/501 answers. Given
 * the signing handler, Express also routes the signing paths to it (the same handler the
 * node:http listener calls first; bench/ uses this to measure what Express routing costs).
 */
export function createApiApp(deps: ApiDeps, signing?: SigningHandler): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  // grpc-gateway matches paths exactly.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', 'simple');
  app.set('trust proxy', false);

  if (signing) {
    // Before any middleware: the handler runs every step of the route itself.
    for (const [version, path] of [
      ['v2', ROUTES.v2SigningCert],
      ['v1', ROUTES.v1SigningCert],
    ] as const) {
      app.post(path, (req, res) => {
        signing(req, res, version, path).catch(() => res.destroy());
      });
    }
  }

  app.use(requestContext(deps.logger));
  app.use((req, res, next) => {
    observeRequest(deps.metrics, req, res, () => {
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

  // /healthz and /readyz are answered before Express (fast-path.ts); mounted here too for
  // the Express app alone.
  healthRoutes(app, deps.health);

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

function bundle(deps: ApiDeps): readonly (readonly Uint8Array[])[] {
  try {
    return deps.trustBundle();
  } catch (err) {
    throw new CaError('trust_bundle', `trust bundle unavailable: ${(err as Error).message}`);
  }
}

function errorHandler(deps: ApiDeps) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    answerFailure(err, { log: res.locals.log ?? deps.logger, path: req.path, res });
  };
}
