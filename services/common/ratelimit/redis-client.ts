import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger';

/**
 * An ioredis client for the limiter, in one of three topologies, set up so that a Redis
 * problem becomes a fast error rather than a slow request (operations-reference §1.3):
 * - no offline queue: while disconnected, commands fail at once instead of piling up and
 *   replaying late (which would also spend buckets long after the request was answered);
 * - no resending of commands that were in flight when a connection dropped, for the same
 *   reason; no retries per request;
 * - a short command timeout and connect timeout;
 * - reconnecting forever with a capped back-off, so recovery needs nobody.
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type RedisTopology =
  | { readonly mode: 'standalone'; readonly url: string }
  | { readonly mode: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly name: string }
  | { readonly mode: 'cluster'; readonly nodes: readonly HostPort[] };

export interface RedisClientSettings {
  readonly topology: RedisTopology;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Sentinels' own password, when they require one. */
  readonly sentinelPassword?: string | undefined;
  /** TLS to Redis (and to the sentinels); `rediss://` URLs turn it on too. */
  readonly tls: boolean;
  /** PEM bundle to verify the server with, instead of the system roots. */
  readonly tlsCa?: string | undefined;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
}

/** 100 ms, 200 ms, ... up to 2 s between reconnect attempts, for ever. */
const reconnectDelay = (attempt: number): number => Math.min(attempt * 100, 2000);

export function createRedisClient(settings: RedisClientSettings): Redis | Cluster {
  const { topology } = settings;
  const tls: ConnectionOptions | undefined =
    settings.tls || (topology.mode === 'standalone' && topology.url.startsWith('rediss:'))
      ? settings.tlsCa
        ? { ca: settings.tlsCa }
        : {}
      : undefined;
  const connection = {
    commandTimeout: settings.commandTimeoutMs,
    connectTimeout: settings.connectTimeoutMs,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // A primary demoted by a failover answers READONLY; reconnecting finds the new one.
    reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
    ...(settings.username === undefined ? {} : { username: settings.username }),
    ...(settings.password === undefined ? {} : { password: settings.password }),
    ...(tls ? { tls } : {}),
  } satisfies Partial<RedisOptions>;

  let client: Redis | Cluster;
  switch (topology.mode) {
    case 'standalone':
      client = new Redis(topology.url, {
        ...connection,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        retryStrategy: reconnectDelay,
      });
      break;
    case 'sentinel':
      client = new Redis({
        ...connection,
        sentinels: topology.sentinels.map((s) => ({ host: s.host, port: s.port })),
        name: topology.name,
        role: 'master',
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        retryStrategy: reconnectDelay,
        sentinelRetryStrategy: reconnectDelay,
        sentinelCommandTimeout: settings.commandTimeoutMs,
        // Subscribes to +switch-master, so a failover is noticed at once, not on an error.
        failoverDetector: true,
        ...(settings.sentinelPassword === undefined
          ? {}
          : { sentinelPassword: settings.sentinelPassword }),
        ...(settings.username === undefined ? {} : { sentinelUsername: settings.username }),
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
      });
      break;
    case 'cluster': {
      const options: ClusterOptions = {
        // Cluster keeps its own queue; it must be turned off here, not in redisOptions.
        enableOfflineQueue: false,
        // Off: ioredis 6 refuses an auto-pipeline whose keys span slot groups ("All keys in
        // the pipeline should belong to the same slots allocation group"), which is exactly
        // what one request's buckets do here.
        enableAutoPipelining: false,
        scaleReads: 'master',
        clusterRetryStrategy: reconnectDelay,
        slotsRefreshTimeout: settings.connectTimeoutMs,
        retryDelayOnFailover: 100,
        retryDelayOnClusterDown: 100,
        maxRedirections: 6,
        redisOptions: connection,
      };
      client = new Cluster(
        topology.nodes.map((n) => ({ host: n.host, port: n.port })),
        options,
      );
      break;
    }
  }
  watchConnection(client, topology.mode, settings.logger);
  return client;
}

/**
 * Connection news for the log, once per change of state. Without an 'error' listener
 * ioredis would print every failed reconnect attempt to stderr.
 */
function watchConnection(client: Redis | Cluster, mode: string, logger: Logger): void {
  let up = false;
  let reportedDown = false;
  client.on('ready', () => {
    up = true;
    reportedDown = false;
    logger.info({ redis: mode }, 'redis connected');
  });
  client.on('error', (err: Error) => {
    if (up || !reportedDown) {
      logger.warn({ redis: mode, err: err.message }, 'redis connection problem');
      reportedDown = true;
    }
    up = false;
  });
  client.on('end', () => logger.info({ redis: mode }, 'redis connection closed'));
}
