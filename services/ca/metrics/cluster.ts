import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, type Registry } from 'prom-client';

/**
 * Metrics of a node cluster: each worker answers the primary's requests with its own
 * registry, and the primary serves the sum (or min/max/first, as each metric says) on the
 * metrics port. Counters and histograms add up across workers; the process metrics of each
 * worker are aggregated as prom-client defines.
 */

/** In a worker: report this registry (not prom-client's global one) to the primary. */
export function reportToPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // The constructor installs the worker's message listener (idempotent).
  new AggregatorRegistry();
}

/** In the primary: an HTTP server answering GET /metrics with the workers' aggregate. */
export function createClusterMetricsServer(): Server {
  const aggregator = new AggregatorRegistry();
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    aggregator
      .clusterMetrics()
      .then((text) => {
        res.writeHead(200, { 'content-type': aggregator.contentType }).end(text);
      })
      .catch((err: unknown) => {
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`);
      });
  });
}
