import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * Settings of rate limiting, the Redis behind it, and the proxies whose X-Forwarded-For
 * is believed. The limits themselves live in their own file (MAYFLY_RATELIMITS), which
 * reloads without a restart; these settings need one.
 */

/** `off`: no limits at all (benchmarks, trusted networks); logged loudly at start. */
export const RATE_LIMITS_OFF = 'off';

export const rateLimitsSchema = z
  .object({
    /** The limits file, or `off`. The loader fills in the shipped config/ratelimits.yaml. */
    file: z.string().min(1).optional(),
    /** How often the limits file is re-read; 0 never does. */
    reloadIntervalMs: z.number().int().min(0).max(86400000).default(10000),
    failurePolicy: z.enum(['fail-open', 'fail-closed']).default('fail-open'),
    /** Fail-open: the share of each limit one replica allows on its own while Redis is out. */
    insuranceShare: z.number().gt(0).max(1).default(0.25),
    /** After a Redis failure, how long requests skip Redis before one probes it again. */
    failureBackoffMs: z.number().int().min(0).max(60000).default(1000),
  })
  .strict()
  .prefault({});

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/, {
  message: 'expected host:port',
});

export const redisSchema = z
  .object({
    /** Standalone: redis://[user@]host:port[/db], or rediss:// for TLS. */
    url: z
      .string()
      .regex(/^rediss?:\/\//, { message: 'expected a redis:// or rediss:// URL' })
      .optional(),
    /** Sentinel: the sentinels as host:port; `sentinelName` is the monitored primary. */
    sentinels: z.array(hostPort).default([]),
    sentinelName: z.string().min(1).default('mymaster'),
    /** Cluster: some or all of the cluster's nodes as host:port. */
    clusterNodes: z.array(hostPort).default([]),
    /** ACL user name (Redis 6+); the password comes from a file. */
    username: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    sentinelPasswordFile: z.string().min(1).optional(),
    /** TLS for sentinel and cluster connections (a rediss:// URL implies it). */
    tls: z.boolean().default(false),
    /** PEM CA bundle that signed the Redis servers' certificates. */
    tlsCaFile: z.string().min(1).optional(),
    commandTimeoutMs: z.number().int().min(1).max(10000).default(250),
    connectTimeoutMs: z.number().int().min(1).max(60000).default(1000),
    keyPrefix: z.string().max(64).default('mayfly:rl:'),
  })
  .strict()
  .prefault({})
  .superRefine((redis, ctx) => {
    const chosen = [
      redis.url === undefined ? undefined : 'url',
      redis.sentinels.length > 0 ? 'sentinels' : undefined,
      redis.clusterNodes.length > 0 ? 'clusterNodes' : undefined,
    ].filter((x) => x !== undefined);
    if (chosen.length > 1)
      ctx.addIssue({
        code: 'custom',
        path: [chosen[1]!],
        message: `choose one of url, sentinels and clusterNodes (got ${chosen.join(' and ')})`,
      });
  });

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/** An address, a CIDR, or one of Express's names for address ranges. */
export const trustedProxySchema = z.string().refine(
  (value) => {
    if (PROXY_NAMES.includes(value)) return true;
    const [address = '', bits, extra] = value.split('/');
    if (extra !== undefined || isIP(address) === 0) return false;
    if (bits === undefined) return true;
    const max = isIP(address) === 4 ? 32 : 128;
    return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
  },
  { message: `expected an IP address, a CIDR, or one of ${PROXY_NAMES.join(', ')}` },
);

export type RateLimitsConfig = z.infer<typeof rateLimitsSchema>;
export type RedisConfig = z.infer<typeof redisSchema>;
