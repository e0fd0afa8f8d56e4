import express from 'express';
import type { Registry } from 'prom-client';
import { healthRoutes, type Health } from './health';

/**
 * The metrics listener (default port 2112, apart from the API): GET /metrics from the app's
 * own registry, and the same /healthz and /readyz as the API port, so probes and scrapes
 * can use one port that is never exposed to clients.
 */
export function createMetricsApp(deps: { registry: Registry; health: Health }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.get('/metrics', (_req, res, next) => {
    deps.registry
      .metrics()
      .then((text) => {
        res.setHeader('Content-Type', deps.registry.contentType);
        res.end(text);
      })
      .catch(next);
  });
  healthRoutes(app, deps.health);
  return app;
}
