import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registerProcessMetrics } from '../../common/process-metrics';

/**
 * Every metric mayfly exports, on a registry owned by one app instance (never
 * prom-client's global one, so tests and several instances never collide).
 */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<'route' | 'method' | 'code'>;
  /** gRPC calls by outcome, go-grpc-prometheus's grpc_server_handled_total under mayfly_. */
  readonly grpcHandled: Counter<GrpcLabel>;
  /** gRPC call latency, go-grpc-prometheus's grpc_server_handling_seconds under mayfly_. */
  readonly grpcHandlingSeconds: Histogram<GrpcLabel>;
  readonly certificatesIssued: Counter<'issuer' | 'issuer_type'>;
  readonly refusals: Counter<'reason'>;
  readonly tokenFailures: Counter<'reason' | 'issuer'>;
  /** OIDC discovery and JWKS fetches per configured issuer, by result. */
  readonly oidcFetchDuration: Histogram<'issuer' | 'document' | 'result'>;
  readonly signerDuration: Histogram<'result'>;
  /** add-pre-chain per CT log (base URL), by result (ok, error), SCT verification included. */
  readonly ctSubmissionDuration: Histogram<'log' | 'result'>;
  /** Failed submissions per CT log, by reason (timeout, unavailable, refused, malformed, unverifiable, circuit_open). */
  readonly ctErrors: Counter<'log' | 'reason'>;
  /** SCTs embedded in issued certificates, per CT log. */
  readonly ctSctsEmbedded: Counter<'log'>;
  /** Certificates no (or too few) CT logs' temporal windows hold: refused, nothing asked. */
  readonly ctNoEligibleLog: Counter;
  /** Each CT log's circuit breaker: 1 tripped, 0 closed (read at scrape time). */
  readonly ctBreakerOpen: Gauge<'log'>;
  /** End of each CT log's temporal window, Unix seconds; +Inf without one (scrape time). */
  readonly ctLogWindowEnd: Gauge<'log'>;
  /** Where the CT gauges read the logs' state from (the composition root sets it). */
  trackCtLogs(source: () => readonly CtLogState[]): void;
  /** Seconds left before each published CA chain's first expiry (read at scrape time). */
  readonly caCertificateExpiry: Gauge<'chain' | 'role' | 'subject'>;
  /** Where caCertificateExpiry reads the CA chains from (the composition root sets it). */
  trackCaChains(source: () => readonly CaChainValidity[], now?: () => number): void;
  /** File CA reload attempts: reloaded or refused. */
  readonly caReloads: Counter<'result'>;
  /** The signing CA certificate's notAfter, Unix seconds (alert well before it). */
  readonly caNotAfter: Gauge;
  /** Chains in the trust bundle (2 while a rotation is staged). */
  readonly caPublishedChains: Gauge;
  readonly rateLimitDecisions: Counter<'limit' | 'result'>;
  readonly rateLimitStoreDuration: Histogram<'store' | 'result'>;
  readonly rateLimitStoreErrors: Counter<'store' | 'reason'>;
  readonly rateLimitInsurance: Counter<'reason'>;
  readonly rateLimitReloads: Counter<'result'>;
}

export type GrpcLabel = 'grpc_service' | 'grpc_method' | 'grpc_code' | 'grpc_type';

/** One CT log as the CT gauges report it. */
export interface CtLogState {
  /** The log's base URL (the `log` label of every CT metric). */
  readonly log: string;
  readonly breakerOpen: boolean;
  /** The end of its temporal window, ms since the epoch (Infinity: none). */
  readonly windowEnd: number;
}

/** One chain of the trust bundle, as the CA expiry gauge reports it. */
export interface CaChainValidity {
  /** `signing` for the chain that signs now, `published` for a next or previous CA. */
  readonly role: 'signing' | 'published';
  /** Its position in the trust bundle (0 is the signing chain). */
  readonly index: number;
  /** The chain's first (issuing) certificate's subject, for people reading the gauge. */
  readonly subject: string;
  /** The earliest notAfter of the chain's certificates. */
  readonly notAfter: Date;
}

// Around a 750 ms latency objective (Sigstore's prober alert), with detail below it.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10];

export function createMetrics(
  registry: Registry,
  build: { version: string } = { version: 'dev' },
): Metrics {
  registerProcessMetrics(registry, 'mayfly_', build);
  let caChains: () => readonly CaChainValidity[] = () => [];
  let caNow: () => number = Date.now;
  const caCertificateExpiry = new Gauge({
    name: 'mayfly_ca_certificate_expiry_seconds',
    help: 'Seconds until the earliest notAfter in each CA chain of the trust bundle (negative once expired), by chain position, role (signing, published) and issuing subject.',
    labelNames: ['chain', 'role', 'subject'],
    registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      for (const chain of caChains()) {
        this.set(
          { chain: String(chain.index), role: chain.role, subject: chain.subject },
          Math.floor((chain.notAfter.getTime() - caNow()) / 1000),
        );
      }
    },
  });
  let ctLogs: () => readonly CtLogState[] = () => [];
  return {
    registry,
    caCertificateExpiry,
    trackCtLogs(source) {
      ctLogs = source;
    },
    ctBreakerOpen: new Gauge({
      name: 'mayfly_ct_breaker_open',
      help: "Whether each CT log's circuit breaker is tripped (1: from the failure that opens it until a success closes it) or closed (0).",
      labelNames: ['log'],
      registers: [registry],
      // Across cluster workers: one worker's breaker open is worth knowing.
      aggregator: 'max',
      collect() {
        this.reset();
        for (const state of ctLogs()) this.set({ log: state.log }, state.breakerOpen ? 1 : 0);
      },
    }),
    ctLogWindowEnd: new Gauge({
      name: 'mayfly_ct_log_window_end_seconds',
      help: "End of each CT log's temporal window (certificates whose notAfter is later are not sent to it), Unix time; +Inf for a log without a window.",
      labelNames: ['log'],
      registers: [registry],
      aggregator: 'min',
      collect() {
        this.reset();
        for (const state of ctLogs()) this.set({ log: state.log }, state.windowEnd / 1000);
      },
    }),
    ctNoEligibleLog: new Counter({
      name: 'mayfly_ct_no_eligible_log_total',
      help: "Signing requests refused because too few CT logs' temporal windows hold the certificate's notAfter (no log asked).",
      registers: [registry],
    }),
    trackCaChains(source, now = Date.now) {
      caChains = source;
      caNow = now;
    },
    caReloads: new Counter({
      name: 'mayfly_ca_reloads_total',
      help: 'File CA reloads after its files changed, by result (reloaded, refused).',
      labelNames: ['result'],
      registers: [registry],
    }),
    caNotAfter: new Gauge({
      name: 'mayfly_ca_not_after_seconds',
      help: 'notAfter of the issuing CA certificate in use, as Unix time.',
      registers: [registry],
      // Across cluster workers: the soonest expiry is the one to alert on.
      aggregator: 'min',
    }),
    caPublishedChains: new Gauge({
      name: 'mayfly_ca_trust_bundle_chains',
      help: 'Chains published in the trust bundle (the signing one, plus next/previous).',
      registers: [registry],
      aggregator: 'max',
    }),
    httpRequestDuration: new Histogram({
      name: 'mayfly_http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    grpcHandled: new Counter({
      name: 'mayfly_grpc_server_handled_total',
      help: 'gRPC calls completed, by service, method, gRPC status code name and type (unary, server_stream).',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code', 'grpc_type'],
      registers: [registry],
    }),
    grpcHandlingSeconds: new Histogram({
      name: 'mayfly_grpc_server_handling_seconds',
      help: 'gRPC call latency, by service, method, gRPC status code name and type.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code', 'grpc_type'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    certificatesIssued: new Counter({
      name: 'mayfly_certificates_issued_total',
      help: 'Certificates issued, by configured issuer (its URL, or the meta-issuer pattern) and issuer type.',
      labelNames: ['issuer', 'issuer_type'],
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
      help: 'Identity tokens refused, by reason and configured issuer (unknown when the token names none).',
      labelNames: ['reason', 'issuer'],
      registers: [registry],
    }),
    oidcFetchDuration: new Histogram({
      name: 'mayfly_oidc_fetch_duration_seconds',
      help: 'OIDC discovery and JWKS fetches, by configured issuer, document (discovery, jwks) and result (ok, error, timeout).',
      labelNames: ['issuer', 'document', 'result'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    ctSubmissionDuration: new Histogram({
      name: 'mayfly_ct_submission_duration_seconds',
      help: 'add-pre-chain to each CT log until a verified SCT (or failure), by log and result (ok, error).',
      labelNames: ['log', 'result'],
      // 0.75: the signing latency SLO's threshold, so rules can count CT submissions alone
      // slower than a request may be.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    ctErrors: new Counter({
      name: 'mayfly_ct_errors_total',
      help: 'Failed CT submissions, by log and reason (timeout, unavailable, refused, malformed, unverifiable, circuit_open).',
      labelNames: ['log', 'reason'],
      registers: [registry],
    }),
    ctSctsEmbedded: new Counter({
      name: 'mayfly_ct_scts_embedded_total',
      help: 'SCTs embedded in issued certificates, by log.',
      labelNames: ['log'],
      registers: [registry],
    }),
    signerDuration: new Histogram({
      name: 'mayfly_signer_duration_seconds',
      help: 'Time the CA key took to sign one certificate, by result (ok, error).',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    rateLimitDecisions: new Counter({
      name: 'mayfly_ratelimit_decisions_total',
      help: 'Rate-limit bucket decisions, by limit and result (allowed or denied).',
      labelNames: ['limit', 'result'],
      registers: [registry],
    }),
    rateLimitStoreDuration: new Histogram({
      name: 'mayfly_ratelimit_store_duration_seconds',
      help: 'Time of one rate-limit store call (one request’s buckets), by store and result (ok, error, timeout).',
      labelNames: ['store', 'result'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
      registers: [registry],
    }),
    rateLimitStoreErrors: new Counter({
      name: 'mayfly_ratelimit_store_errors_total',
      help: 'Rate-limit store calls that failed, by store and reason (error, timeout).',
      labelNames: ['store', 'reason'],
      registers: [registry],
    }),
    rateLimitInsurance: new Counter({
      name: 'mayfly_ratelimit_insurance_total',
      help: 'Requests the per-replica insurance limiter answered because the store could not, by reason (error, timeout, backoff).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    rateLimitReloads: new Counter({
      name: 'mayfly_ratelimit_config_reloads_total',
      help: 'Reloads of the rate-limits file that changed it, by result (success, failure).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}

/** The limiter's view of the metrics (ratelimit/ does not know prom-client). */
export function rateLimitMetrics(metrics: Metrics) {
  return {
    decision: (limit: string, result: 'allowed' | 'denied') =>
      metrics.rateLimitDecisions.inc({ limit, result }),
    storeCall: (store: string, result: 'ok' | 'error' | 'timeout', seconds: number) => {
      metrics.rateLimitStoreDuration.observe({ store, result }, seconds);
      if (result !== 'ok') metrics.rateLimitStoreErrors.inc({ store, reason: result });
    },
    insurance: (reason: string) => metrics.rateLimitInsurance.inc({ reason }),
  };
}
