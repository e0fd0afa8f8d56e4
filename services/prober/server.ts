import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/** The prober's metrics listener: GET /metrics, and /healthz and /readyz (it answers). */
export function metricsServer(registry: Registry): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
        .catch((err: unknown) =>
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
        );
      return;
    }
    if (req.method === 'GET' && (path === '/healthz' || path === '/readyz')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"SERVING"}');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
}
