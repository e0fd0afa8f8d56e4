import { defaultMetricsOptions } from '../common/process-metrics';
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

/** The log's metrics, `mayfly_ctlog_*`, on a registry the composition root owns. */
export interface CtlogMetrics {
  readonly registry: Registry;
  readonly submissions: Counter<'endpoint' | 'result'>;
  readonly poolSize: Gauge;
  readonly batchSize: Histogram;
  readonly batchSeconds: Histogram;
  readonly treeSize: Gauge;
  readonly checkpointAge: Gauge;
  readonly integrationSeconds: Histogram;
  readonly leader: Gauge;
  readonly httpRequests: Histogram<'route' | 'code'>;
}

export function createCtlogMetrics(
  registry: Registry,
  checkpointTimestamp: () => number | undefined,
  now: () => number = Date.now,
): CtlogMetrics {
  collectDefaultMetrics(defaultMetricsOptions(registry, 'mayfly_ctlog_'));
  return {
    registry,
    submissions: new Counter({
      name: 'mayfly_ctlog_submissions_total',
      help: 'add-chain and add-pre-chain submissions by result (new, duplicate, refused, error).',
      labelNames: ['endpoint', 'result'],
      registers: [registry],
    }),
    poolSize: new Gauge({
      name: 'mayfly_ctlog_pool_size',
      help: 'Pending submissions the sequencer found at its last batch.',
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'mayfly_ctlog_sequencing_batch_size',
      help: 'Entries sequenced per batch.',
      buckets: [0, 1, 4, 16, 64, 256, 1024, 4096],
      registers: [registry],
    }),
    batchSeconds: new Histogram({
      name: 'mayfly_ctlog_sequencing_duration_seconds',
      help: 'Time to sequence one batch (sign SCTs, build tiles, commit).',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    treeSize: new Gauge({
      name: 'mayfly_ctlog_tree_size',
      help: 'Entries in the tree as of the latest checkpoint this process committed or read.',
      registers: [registry],
    }),
    checkpointAge: new Gauge({
      name: 'mayfly_ctlog_checkpoint_age_seconds',
      help: 'Age of the latest signed checkpoint (the maximum merge delay SLO).',
      registers: [registry],
      collect() {
        const ts = checkpointTimestamp();
        if (ts !== undefined) this.set(Math.max(0, (now() - ts) / 1000));
      },
    }),
    integrationSeconds: new Histogram({
      name: 'mayfly_ctlog_integration_delay_seconds',
      help: 'From a submission being queued to its entry being sequenced (the SCT leaving).',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'mayfly_ctlog_sequencer_leader',
      help: '1 while this replica is the sequencer.',
      registers: [registry],
    }),
    httpRequests: new Histogram({
      name: 'mayfly_ctlog_http_request_duration_seconds',
      help: 'HTTP requests by route and status.',
      labelNames: ['route', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}
