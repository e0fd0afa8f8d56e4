import { readFileSync } from 'node:fs';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/logger';
import { RATE_LIMITS_OFF, type RedisConfig } from './config/ratelimit-schema';
import { defaultRateLimitsPath } from './config/loader';
import type { ServerConfig } from './config/schema';
import { rateLimitMetrics, type Metrics } from './metrics/metrics';
import { LIMIT_NAMES, normalizeLimitId } from './ra/rate-limits';
import type { RateLimiting } from './ra/registration-authority';
import { RateLimiter } from '../common/ratelimit/limiter';
import { LimitsReloader } from '../common/ratelimit/limits-file';
import { MemoryStore } from '../common/ratelimit/memory-store';
import type { HostPort, RedisTopology } from '../common/ratelimit/redis-client';
import { RedisStore } from '../common/ratelimit/redis-store';
import type { RateLimitStore } from '../common/ratelimit/store';

/**
 * Part of the composition root (app.ts): turns the rate-limit settings into a limiter, a
 * reloading limits file and a store — Redis when one is configured, else the in-memory
 * store. Returns undefined when limits are off.
 */

export interface RateLimitingParts extends RateLimiting {
  readonly store: RateLimitStore['kind'];
  close(): Promise<void>;
}

function hostPort(text: string): HostPort {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(text.slice(at + 1)) };
}

/** A secret from a file, without the trailing newline editors and `echo` add. */
function secret(path: string | undefined): string | undefined {
  return path === undefined ? undefined : readFileSync(path, 'utf8').replace(/\r?\n$/, '');
}

function topology(redis: RedisConfig): RedisTopology | undefined {
  if (redis.url !== undefined) return { mode: 'standalone', url: redis.url };
  if (redis.sentinels.length > 0)
    return { mode: 'sentinel', sentinels: redis.sentinels.map(hostPort), name: redis.sentinelName };
  if (redis.clusterNodes.length > 0)
    return { mode: 'cluster', nodes: redis.clusterNodes.map(hostPort) };
  return undefined;
}

export function createRateLimiting(
  config: ServerConfig,
  deps: { clock: Clock; logger: Logger; metrics: Metrics },
): RateLimitingParts | undefined {
  const { clock, logger, metrics } = deps;
  const file = config.rateLimits.file ?? defaultRateLimitsPath();
  if (file === RATE_LIMITS_OFF) {
    logger.warn(
      'RATE LIMITS ARE OFF (MAYFLY_RATELIMITS=off): any client may request certificates as fast as it can; use only for benchmarks or behind a trusted front end',
    );
    return undefined;
  }
  const reloader = new LimitsReloader({
    path: file,
    knownLimits: LIMIT_NAMES,
    normalizeId: normalizeLimitId,
    intervalMs: config.rateLimits.reloadIntervalMs,
    logger,
    onReload: (result) => metrics.rateLimitReloads.inc({ result }),
  });
  const redisTopology = topology(config.redis);
  let store: RateLimitStore;
  if (redisTopology) {
    // Loaded only when Redis is configured: ioredis and its dependencies are some 50 modules
    // and 8 MB of a process's resident memory (bench/results/versus-notes.md) that a CA with
    // in-memory or no rate limits never uses. (Synchronous on purpose: start-up builds the
    // app synchronously; the compiled service is CommonJS.)
    const { createRedisClient } =
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('../common/ratelimit/redis-client') as typeof import('../common/ratelimit/redis-client');
    const client = createRedisClient({
      topology: redisTopology,
      username: config.redis.username,
      password: secret(config.redis.passwordFile),
      sentinelPassword: secret(config.redis.sentinelPasswordFile),
      tls: config.redis.tls,
      tlsCa: config.redis.tlsCaFile ? readFileSync(config.redis.tlsCaFile, 'utf8') : undefined,
      commandTimeoutMs: config.redis.commandTimeoutMs,
      connectTimeoutMs: config.redis.connectTimeoutMs,
      logger,
    });
    store = new RedisStore({
      client,
      keyPrefix: config.redis.keyPrefix,
      onRefundError: (err) =>
        logger.warn({ err: (err as Error).message }, 'rate-limit refund failed'),
    });
  } else {
    store = new MemoryStore(clock);
    if (config.workers !== undefined && config.workers !== 1)
      logger.warn(
        { workers: config.workers },
        'rate limits are kept in process memory: every worker process enforces them on its own, so the service allows up to workers × each limit; configure Redis to share them',
      );
  }
  const limiter = new RateLimiter({
    store,
    insurance: new MemoryStore(clock),
    failurePolicy: config.rateLimits.failurePolicy,
    insuranceShare: config.rateLimits.insuranceShare,
    timeoutMs: config.redis.commandTimeoutMs,
    failureBackoffMs: config.rateLimits.failureBackoffMs,
    clock,
    logger,
    metrics: rateLimitMetrics(metrics),
  });
  reloader.start();
  logger.info(
    {
      file,
      store: store.kind,
      redis: redisTopology?.mode,
      failurePolicy: config.rateLimits.failurePolicy,
      ...reloader.current().describe(),
    },
    'rate limits in force',
  );
  return {
    limiter,
    limits: () => reloader.current(),
    store: store.kind,
    async close() {
      reloader.stop();
      await limiter.close();
    },
  };
}
