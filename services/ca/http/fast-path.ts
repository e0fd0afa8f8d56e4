import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type express from 'express';
import type { ApiDeps } from './app';
import { healthAnswer } from './health';
import { sendJson } from './render';
import { requestIdentity } from './request-context';
import { ROUTES, pathOf } from './routes';
import { allowAnyOrigin, observeRequest, signingHandler, type ApiVersion } from './signing';

/**
 * The API as a node:http request listener. The signing route, which carries nearly all of
 * the traffic, goes straight to its one handler (signing.ts), and the health probes to
 * theirs; everything else goes to the Express app. Express's routing and its request and
 * response decoration cost about a third of the cryptography per certificate, and the
 * signing route needs none of it. Express itself (some 130 modules, 8 MB of resident
 * memory: bench/results/memory.md) is loaded on the first request that needs it: a CA that
 * only signs and answers probes never loads it.
 */

export interface ApiHandler extends RequestListener {
  /**
   * The Express app with the same signing handler mounted on its router: for comparisons
   * (bench/, tests) of what the Express router costs and that it changes no answer.
   */
  readonly express: express.Express;
}

/** The signing routes: POST on the exact path (any query string). */
function signingRoute(req: IncomingMessage): { version: ApiVersion; path: string } | undefined {
  if (req.method !== 'POST') return undefined;
  const path = pathOf(req.url);
  if (path === ROUTES.v2SigningCert) return { version: 'v2', path };
  if (path === ROUTES.v1SigningCert) return { version: 'v1', path };
  return undefined;
}

/**
 * /healthz and /readyz (GET, HEAD) as the Express app answers them: the same request id,
 * draining, metrics and CORS steps, then the health answer.
 */
function healthHandler(deps: ApiDeps) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = pathOf(req.url);
    const answer = healthAnswer(path, deps.health);
    if (!answer) return false;
    const incoming = req.headers['x-request-id'];
    requestIdentity(deps.logger, Array.isArray(incoming) ? incoming[0] : incoming, res);
    observeRequest(deps.metrics, req, res, () => path);
    allowAnyOrigin(req, res);
    sendJson(res, answer.status, answer.body);
    return true;
  };
}

export function createApiHandler(deps: ApiDeps): ApiHandler {
  const signing = signingHandler({
    ra: deps.ra,
    metrics: deps.metrics,
    logger: deps.logger,
    maxRequestBytes: deps.maxRequestBytes,
    ...(deps.trustedProxies ? { trustedProxies: deps.trustedProxies } : {}),
  });
  const health = healthHandler(deps);
  // The signing paths are mounted on Express too (same handler), for `express` alone; through
  // the listener they never reach it.
  let app: express.Express | undefined;
  const expressApp = (): express.Express => {
    if (!app) {
      const { createApiApp } =
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require('./app') as typeof import('./app');
      app = createApiApp(deps, signing);
    }
    return app;
  };
  const handler: RequestListener = (req, res) => {
    const route = signingRoute(req);
    if (route) {
      signing(req, res, route.version, route.path).catch(() => res.destroy());
      return;
    }
    if (health(req, res)) return;
    expressApp()(req, res);
  };
  return Object.defineProperty(handler, 'express', { get: expressApp }) as ApiHandler;
}
