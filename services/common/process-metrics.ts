import { Gauge, collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * How often the event-loop delay histogram samples, in ms. prom-client's default (10 ms) is a
 * timer that wakes an idle process 100 times a second: 1.5–3 ms of CPU per second per
 * process here, whether or not anything is asked of it (bench/results/idle-cpu.md). Ten
 * samples a second still catch any stall of the loop; Prometheus scrapes every 15–60 s.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** prom-client's default metrics, under `prefix`, with the event-loop sampling above. */
export function defaultMetricsOptions(registry: Registry, prefix: string) {
  return { register: registry, prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS };
}

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
  collectDefaultMetrics(defaultMetricsOptions(registry, prefix));
  new Gauge({
    name: `${prefix}build_info`,
    help: 'Build information; always 1.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
    aggregator: 'first',
  }).set({ version: build.version, node_version: process.version }, 1);
}
