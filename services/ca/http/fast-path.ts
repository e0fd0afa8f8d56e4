import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type express from 'express';
import proxyaddr from 'proxy-addr';
import type { AuditRequest } from '../audit/audit-log';
import {
  ROUTES,
  allowAnyOrigin,
  answerFailure,
  answerSigning,
  closeWhenDraining,
  createApiApp,
  observeRequest,
  rawBodyParser,
  type ApiDeps,
  type Exchange,
} from './app';
import { requestIdentity } from './request-context';

/**
 * The API as a node:http request listener. The two signing routes, which carry nearly all
 * of the traffic, are served straight from node:http; everything else (and any signing
 * request in an unusual shape) goes to the Express app. Express's routing and its request
 * and response decoration cost about a third of the cryptography per certificate; the
 * behaviour is the same either way because both routers call the same functions in app.ts
 * (request id, draining, metrics, CORS, per-client limit, body reader, signing, errors).
 */

export interface ApiHandler extends RequestListener {
  /** The Express app alone (everything through Express): for comparisons in bench/. */
  readonly express: express.Express;
}

/** The signing routes the fast path serves: POST on the exact path (any query string). */
function signingVersion(req: IncomingMessage): { version: 'v1' | 'v2'; path: string } | undefined {
  if (req.method !== 'POST') return undefined;
  const url = req.url ?? '';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  if (path === ROUTES.v2SigningCert) return { version: 'v2', path };
  if (path === ROUTES.v1SigningCert) return { version: 'v1', path };
  return undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

export function createApiHandler(deps: ApiDeps): ApiHandler {
  const app = createApiApp(deps);
  // Express's compiled "trust proxy" setting, so that the client address is Express's req.ip.
  const trust = app.get('trust proxy fn') as (address: string, hop: number) => boolean;
  const readBody = rawBodyParser(deps);
  const bodyOf = (req: IncomingMessage, res: ServerResponse): Promise<Buffer | undefined> =>
    new Promise((resolve, reject) => {
      readBody(req as never, res as never, (err?: unknown) => {
        if (err) reject(err);
        else resolve((req as { body?: Buffer }).body);
      });
    });

  const serve = async (
    req: IncomingMessage,
    res: ServerResponse,
    version: 'v1' | 'v2',
    path: string,
  ): Promise<void> => {
    // The same steps, in the same order, as the Express middleware chain.
    const { requestId, log } = requestIdentity(deps.logger, header(req, 'x-request-id'), res);
    closeWhenDraining(deps, res);
    observeRequest(deps, req, res, () => path);
    allowAnyOrigin(req, res);
    const ip = proxyaddr(req, trust);
    const audit = (): AuditRequest => ({
      requestId,
      route: path,
      clientIp: req.socket.remoteAddress,
      forwardedFor: ip,
    });
    const exchange: Exchange = { method: 'POST', path, log, audit, claimedIssuer: undefined };
    try {
      await deps.ra.admitClient(ip);
      const body = await bodyOf(req, res);
      await answerSigning(deps, version, body, header(req, 'authorization'), { exchange, res });
    } catch (err) {
      answerFailure(deps, err, { exchange, res });
    }
  };

  const handler: RequestListener = (req, res) => {
    const route = signingVersion(req);
    if (!route) {
      app(req, res);
      return;
    }
    serve(req, res, route.version, route.path).catch(() => res.destroy());
  };
  return Object.assign(handler, { express: app });
}
