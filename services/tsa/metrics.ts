import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerProcessMetrics } from '../common/process-metrics';

/** Every metric the TSA exports, on a registry owned by one app instance. */
export interface TsaMetrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<'route' | 'method' | 'code'>;
  /** Timestamps issued, by imprint hash and request encoding. */
  readonly timestamps: Counter<'hash' | 'encoding'>;
  /** Requests refused, by reason (the error code). */
  readonly refusals: Counter<'reason'>;
  readonly signerDuration: Histogram<'result'>;
  /** Local clock offset from the time source, seconds (server minus local). */
  readonly clockOffset: Gauge;
  readonly clockSamples: Counter<'result'>;
  /** 1 while the clock is within its bound (or unchecked), else 0. */
  readonly clockInBound: Gauge;
  /** The TSA certificate's notAfter, Unix seconds. */
  readonly certificateNotAfter: Gauge;
  readonly rateLimited: Counter;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export function createTsaMetrics(registry: Registry, build = { version: 'dev' }): TsaMetrics {
  registerProcessMetrics(registry, 'mayfly_tsa_', build);
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'mayfly_tsa_http_request_duration_seconds',
      help: 'HTTP requests to the TSA API, by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    timestamps: new Counter({
      name: 'mayfly_tsa_timestamps_total',
      help: 'Timestamps issued, by imprint hash algorithm and request encoding.',
      labelNames: ['hash', 'encoding'],
      registers: [registry],
    }),
    refusals: new Counter({
      name: 'mayfly_tsa_refusals_total',
      help: 'Timestamp requests refused, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    signerDuration: new Histogram({
      name: 'mayfly_tsa_signer_duration_seconds',
      help: 'Time the TSA signer took per signature, by result.',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    clockOffset: new Gauge({
      name: 'mayfly_tsa_clock_offset_seconds',
      help: 'Offset of the local clock from the configured time source (source minus local).',
      registers: [registry],
    }),
    clockSamples: new Counter({
      name: 'mayfly_tsa_clock_samples_total',
      help: 'Queries to the time source, by result.',
      labelNames: ['result'],
      registers: [registry],
    }),
    clockInBound: new Gauge({
      name: 'mayfly_tsa_clock_in_bound',
      help: '1 while the clock offset is within its bound (or no time source is configured).',
      registers: [registry],
    }),
    certificateNotAfter: new Gauge({
      name: 'mayfly_tsa_certificate_not_after_seconds',
      help: "The TSA certificate's notAfter, Unix seconds.",
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'mayfly_tsa_rate_limited_total',
      help: 'Timestamp requests refused by the per-address rate limit.',
      registers: [registry],
    }),
  };
}
