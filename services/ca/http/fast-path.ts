import type { IncomingMessage, RequestListener } from 'node:http';
import type express from 'express';
import { ROUTES, createApiApp, type ApiDeps } from './app';
import { signingHandler, type ApiVersion } from './signing';

/**
 * The API as a node:http request listener. The signing route, which carries nearly all of
 * the traffic, goes straight to its one handler (signing.ts); everything else goes to the
 * Express app. Express's routing and its request and response decoration cost about a third
 * of the cryptography per certificate, and the signing route needs none of it.
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
  const url = req.url ?? '';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  if (path === ROUTES.v2SigningCert) return { version: 'v2', path };
  if (path === ROUTES.v1SigningCert) return { version: 'v1', path };
  return undefined;
}

export function createApiHandler(deps: ApiDeps): ApiHandler {
  const signing = signingHandler({
    ra: deps.ra,
    metrics: deps.metrics,
    logger: deps.logger,
    maxRequestBytes: deps.maxRequestBytes,
    ready: deps.health.ready,
    ...(deps.trustedProxies ? { trustedProxies: deps.trustedProxies } : {}),
  });
  // The signing paths are mounted on Express too (same handler), for `express` alone; through
  // the listener they never reach it.
  const app = createApiApp(deps, signing);
  const handler: RequestListener = (req, res) => {
    const route = signingRoute(req);
    if (!route) {
      app(req, res);
      return;
    }
    signing(req, res, route.version, route.path).catch(() => res.destroy());
  };
  return Object.assign(handler, { express: app });
}
