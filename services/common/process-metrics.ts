import { Gauge, collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * What every deployable exports about its process, under its own prefix (`mayfly_`,
 * `mayfly_tsa_`, `mayfly_prober_`, …): prom-client's default process and Node.js metrics, and
 * `<prefix>build_info{version,node_version} 1`. One series per process: node cluster workers
 * all report the same build, so the primary's aggregate takes the first.
 */
export function registerProcessMetrics(
  registry: Registry,
  prefix: string,
  build: { version: string },
): void {
  collectDefaultMetrics({ register: registry, prefix });
  new Gauge({
    name: `${prefix}build_info`,
    help: 'Build information; always 1.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
    aggregator: 'first',
  }).set({ version: build.version, node_version: process.version }, 1);
}
