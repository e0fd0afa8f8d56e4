import type { RequestListener } from 'node:http';
import type { Registry } from 'prom-client';
import { healthAnswer, type Health } from './health';
import { send, sendJson } from './render';
import { pathOf } from './routes';

/**
 * The metrics listener (default port 2112, apart from the API): GET /metrics from the app's
 * own registry, and the same /healthz and /readyz as the API port, so probes and scrapes
 * can use one port that is never exposed to clients. Plain node:http: three fixed paths need
 * no router, and Prometheus scraping it every few seconds would otherwise keep Express
 * loaded in a CA that never uses it elsewhere (fast-path.ts).
 */
export function createMetricsApp(deps: { registry: Registry; health: Health }): RequestListener {
  return (req, res) => {
    const path = pathOf(req.url);
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/metrics') {
        deps.registry.metrics().then(
          (text) => send(res, 200, deps.registry.contentType, text),
          () => send(res, 500, 'text/plain; charset=utf-8', 'Internal Server Error\n'),
        );
        return;
      }
      const answer = healthAnswer(path, deps.health);
      if (answer) {
        sendJson(res, answer.status, answer.body);
        return;
      }
    }
    send(res, 404, 'text/plain; charset=utf-8', 'Not Found\n');
  };
}
