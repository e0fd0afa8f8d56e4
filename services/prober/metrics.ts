import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerProcessMetrics } from '../common/process-metrics';

/**
 * The prober's metrics: the black-box SLI. One probe is one request to one endpoint; it
 * succeeds only when the answer is the right status and its content checks out (for
 * signingCert: a chain for our key that verifies up to a trusted root).
 */
export interface ProberMetrics {
  readonly registry: Registry;
  /** Every probe, by endpoint, method and result (success, failure); its _count is the SLI. */
  readonly probeDuration: Histogram<'endpoint' | 'method' | 'result'>;
  readonly failures: Counter<'endpoint' | 'method' | 'reason'>;
  /** 1 when the endpoint's last probe succeeded, else 0. */
  readonly success: Gauge<'endpoint' | 'method'>;
  readonly lastProbe: Gauge<'endpoint' | 'method'>;
}

// The CA's latency buckets, so both sides of the latency SLO (750 ms) line up.
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10];

export function createProberMetrics(
  registry: Registry,
  build: { version: string } = { version: 'dev' },
): ProberMetrics {
  registerProcessMetrics(registry, 'mayfly_prober_', build);
  return {
    registry,
    probeDuration: new Histogram({
      name: 'mayfly_prober_probe_duration_seconds',
      help: 'Probes of the CA by endpoint, method and result (success, failure), with their latency.',
      labelNames: ['endpoint', 'method', 'result'],
      buckets: BUCKETS,
      registers: [registry],
    }),
    failures: new Counter({
      name: 'mayfly_prober_failures_total',
      help: 'Failed probes by endpoint, method and reason (connection, timeout, status, response, chain, token).',
      labelNames: ['endpoint', 'method', 'reason'],
      registers: [registry],
    }),
    success: new Gauge({
      name: 'mayfly_prober_probe_success',
      help: '1 when the last probe of the endpoint succeeded, 0 when it failed.',
      labelNames: ['endpoint', 'method'],
      registers: [registry],
    }),
    lastProbe: new Gauge({
      name: 'mayfly_prober_last_probe_timestamp_seconds',
      help: 'When the endpoint was last probed, Unix time.',
      labelNames: ['endpoint', 'method'],
      registers: [registry],
    }),
  };
}
