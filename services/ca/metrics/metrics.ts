import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * Every metric mayfly exports, on a registry owned by one app instance (never
 * prom-client's global one, so tests and several instances never collide).
 */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<'route' | 'method' | 'code'>;
  readonly certificatesIssued: Counter<'issuer_type'>;
  readonly refusals: Counter<'reason'>;
  readonly tokenFailures: Counter<'reason'>;
  readonly signerDuration: Histogram<'result'>;
}

// Around a 750 ms latency objective (Sigstore's prober alert), with detail below it.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10];

export function createMetrics(
  registry: Registry,
  build: { version: string } = { version: 'dev' },
): Metrics {
  collectDefaultMetrics({ register: registry, prefix: 'mayfly_' });
  const buildInfo = new Gauge({
    name: 'mayfly_build_info',
    help: 'Build information; always 1.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
  });
  buildInfo.set({ version: build.version, node_version: process.version }, 1);
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'mayfly_http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    certificatesIssued: new Counter({
      name: 'mayfly_certificates_issued_total',
      help: 'Certificates issued, by issuer type.',
      labelNames: ['issuer_type'],
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'mayfly_signing_refusals_total',
      help: 'Signing requests refused with a client error, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    tokenFailures: new Counter({
      name: 'mayfly_token_verification_failures_total',
      help: 'Identity tokens refused, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    signerDuration: new Histogram({
      name: 'mayfly_signer_duration_seconds',
      help: 'Time spent building and signing one certificate.',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}
