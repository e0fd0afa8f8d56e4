import { z } from 'zod';
import { rateLimitsSchema, redisSchema, trustedProxySchema } from './ratelimit-schema';

/** Key and hash pairs a client may use, named as Fulcio's --client-signing-algorithms. */
export const SIGNING_ALGORITHMS = [
  'ecdsa-sha2-256-nistp256',
  'ecdsa-sha2-384-nistp384',
  'ecdsa-sha2-512-nistp521',
  'rsa-sign-pkcs1-2048-sha256',
  'rsa-sign-pkcs1-3072-sha256',
  'rsa-sign-pkcs1-4096-sha256',
  'ed25519',
] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

const port = z.number().int().min(0).max(65535);

const KUBERNETES_CA_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';
const KUBERNETES_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** An RFC 3339 time with its offset (2026-01-01T00:00:00Z), as a CT log's temporal window. */
const rfc3339 = z.iso.datetime({
  offset: true,
  error: (issue) =>
    issue.input === undefined
      ? 'required (start and end go together)'
      : 'expected an RFC 3339 time such as 2027-01-01T00:00:00Z',
});

/**
 * A CT log's temporal window (a shard): the log accepts only certificates whose notAfter
 * lies in [start, end), so the CA asks it only for those (the log would refuse the rest).
 */
const temporalSchema = z
  .object({ start: rfc3339, end: rfc3339 })
  .strict()
  .superRefine((t, ctx) => {
    if (Date.parse(t.end) <= Date.parse(t.start))
      ctx.addIssue({
        code: 'custom',
        path: ['end'],
        message: `must be after start (${t.start}): the window is [start, end)`,
      });
  });

/** The gRPC listener's settings (MAYFLY_GRPC_*); see config/mayfly.yaml. */
const grpcSchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    /** 8081 like Fulcio; 0 picks a free port (printed); `off` serves no gRPC. */
    port: z.union([port, z.literal('off')]).default(8081),
    /** Largest request message; unset: the HTTP API's maxRequestBytes. */
    maxMessageBytes: z.number().int().min(1024).max(4194304).optional(),
    /** A connection without calls this long is closed (Fulcio's idle timeout, 30 s). */
    idleTimeoutMs: z.number().int().min(1000).max(3600000).default(30000),
    keepaliveTimeMs: z.number().int().min(1000).max(7200000).default(60000),
    keepaliveTimeoutMs: z.number().int().min(1000).max(600000).default(20000),
    maxConcurrentStreams: z.number().int().min(1).max(10000).default(100),
    /** TLS for the gRPC port: both files or neither. */
    tlsCert: z.string().min(1).optional(),
    tlsKey: z.string().min(1).optional(),
    /** How often the TLS files are re-read besides watching them; 0: watching only. */
    tlsReloadMs: z.number().int().min(0).max(86400000).default(30000),
  })
  .strict()
  .superRefine((grpc, ctx) => {
    if ((grpc.tlsCert === undefined) !== (grpc.tlsKey === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [grpc.tlsCert === undefined ? 'tlsCert' : 'tlsKey'],
        message: 'tlsCert and tlsKey go together',
      });
  })
  .default({
    host: '0.0.0.0',
    port: 8081,
    idleTimeoutMs: 30000,
    keepaliveTimeMs: 60000,
    keepaliveTimeoutMs: 20000,
    maxConcurrentStreams: 100,
    tlsReloadMs: 30000,
  });

export const serverConfigSchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(8080),
    grpc: grpcSchema,
    metricsHost: z.string().min(1).default('0.0.0.0'),
    metricsPort: port.default(2112),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    /** The audit log's file (appended); unset: stdout, each line marked `log: "audit"`. */
    auditLogFile: z.string().min(1).optional(),
    identityConfig: z.string().min(1),
    /** How often the identity config file is re-read besides watching it; 0: only on SIGHUP. */
    identityConfigReloadMs: z.number().int().min(0).max(86400000).default(10000),
    maxRequestBytes: z.number().int().min(1024).max(4194304).default(65536),
    certificateLifetimeSeconds: z.number().int().min(60).max(86400).default(600),
    clientSigningAlgorithms: z
      .array(z.enum(SIGNING_ALGORITHMS))
      .min(1)
      .default([...SIGNING_ALGORITHMS]),
    oidc: z
      .object({
        discoveryTimeoutMs: z.number().int().min(100).max(60000).default(10000),
        jwksCooldownMs: z.number().int().min(0).max(3600000).default(30000),
        maxTokenBytes: z.number().int().min(512).max(1048576).default(32768),
        /** The in-cluster issuer (https://kubernetes.default.svc): the cluster's CA. */
        kubernetesCaFile: z.string().min(1).default(KUBERNETES_CA_FILE),
        /** The pod's service-account token, sent to the in-cluster issuer's host only. */
        kubernetesTokenFile: z.string().min(1).default(KUBERNETES_TOKEN_FILE),
      })
      .strict()
      .default({
        discoveryTimeoutMs: 10000,
        jwksCooldownMs: 30000,
        maxTokenBytes: 32768,
        kubernetesCaFile: KUBERNETES_CA_FILE,
        kubernetesTokenFile: KUBERNETES_TOKEN_FILE,
      }),
    ca: z
      .object({
        type: z.enum(['ephemeral', 'file', 'pkcs11']).default('ephemeral'),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
        keyPasswordFile: z.string().min(1).optional(),
        /** A chain published in the trust bundle before it signs (the next CA of a rotation). */
        nextCert: z.string().min(1).optional(),
        /** A retired chain still published in the trust bundle after a rotation. */
        previousCert: z.string().min(1).optional(),
        /**
         * File CA: how often the files are re-read besides watching them (default 30000);
         * 0 turns reloading off.
         */
        reloadIntervalMs: z.number().int().min(0).max(86400000).optional(),
        /**
         * How long one signature may take before the request fails with Fulcio's 500 (a
         * KMS or HSM that hangs must not hold requests open until their clients give up).
         */
        signTimeoutMs: z.number().int().min(1).max(600000).default(10000),
        /** The `pkcs11` CA: the key in an HSM (the chain still comes from `cert`). */
        pkcs11: z
          .object({
            /** The vendor's PKCS#11 library (a path, or a name the loader finds). */
            module: z.string().min(1).optional(),
            tokenLabel: z.string().min(1).optional(),
            /**
             * The private key's CKA_LABEL. Unset: the key whose CKA_ID is the issuing
             * certificate's subject key identifier (how `mayfly ca create` marks keys), so a
             * rotation is a change of the chain files only.
             */
            keyLabel: z.string().min(1).optional(),
            /** A file holding the user PIN (a Kubernetes Secret); never logged. */
            pinFile: z.string().min(1).optional(),
            /** Sessions kept open and signing at once; size to the HSM and UV_THREADPOOL_SIZE. */
            sessions: z.number().int().min(1).max(256).default(4),
            /** Signatures allowed to wait for a session; beyond that, a 500 at once. */
            maxQueue: z.number().int().min(0).max(100000).default(1024),
            rsaPadding: z.enum(['pkcs1', 'pss']).default('pkcs1'),
            /** Pause between reconnect attempts while the token is unreachable. */
            reconnectIntervalMs: z.number().int().min(10).max(600000).default(1000),
          })
          .strict()
          .optional(),
      })
      .strict()
      // Checked here rather than on the whole config: zod skips an object's refinements
      // when any of its fields failed, and a missing CA key must be reported together with
      // every other problem.
      .superRefine((ca, ctx) => {
        if (ca.type === 'pkcs11') {
          if (!ca.cert)
            ctx.addIssue({
              code: 'custom',
              path: ['cert'],
              message: 'required when ca.type is pkcs11',
            });
          for (const field of ['module', 'tokenLabel', 'pinFile'] as const) {
            if (!ca.pkcs11?.[field])
              ctx.addIssue({
                code: 'custom',
                path: ['pkcs11', field],
                message: 'required when ca.type is pkcs11',
              });
          }
          return;
        }
        if (ca.type !== 'file') return;
        if (!ca.cert)
          ctx.addIssue({
            code: 'custom',
            path: ['cert'],
            message: 'required when ca.type is file',
          });
        if (!ca.key)
          ctx.addIssue({
            code: 'custom',
            path: ['key'],
            message: 'required when ca.type is file',
          });
      })
      .default({ type: 'ephemeral', signTimeoutMs: 10000 }),
    /**
     * Certificate Transparency (issue #17). `logUrl` + `logPublicKeyFile` name one log (as
     * Fulcio's --ct-log-url and --ct-log-public-key-path; "" or unset: no CT), `logs` several;
     * every certificate then carries at least `minScts` verified SCTs, obtained within
     * `timeoutMs`, or the request fails with Fulcio's 500 and nothing is issued. A log with a
     * temporal window (`logTemporal`, or `temporal` in the list) is asked only for
     * certificates whose notAfter lies in it.
     */
    ct: z
      .object({
        logUrl: z.string().optional(),
        logPublicKeyFile: z.string().optional(),
        /** The temporal window of `logUrl`'s log (MAYFLY_CT_LOG_TEMPORAL_START/_END). */
        logTemporal: temporalSchema.optional(),
        logs: z
          .array(
            z
              .object({
                url: z.string().regex(/^https?:\/\/[^/]+/, 'an http(s) URL'),
                publicKeyFile: z.string().min(1),
                temporal: temporalSchema.optional(),
              })
              .strict(),
          )
          .optional(),
        minScts: z.number().int().min(1).max(16).default(1),
        timeoutMs: z.number().int().min(100).max(600000).default(10000),
      })
      .strict()
      .superRefine((ct, ctx) => {
        if (ct.logUrl && !/^https?:\/\/[^/]+/.test(ct.logUrl))
          ctx.addIssue({ code: 'custom', path: ['logUrl'], message: 'expected an http(s) URL' });
        if (ct.logUrl && !ct.logPublicKeyFile)
          ctx.addIssue({
            code: 'custom',
            path: ['logPublicKeyFile'],
            message: 'required with a CT log URL (an SCT the CA cannot verify is never embedded)',
          });
        if (ct.logTemporal && !ct.logUrl)
          ctx.addIssue({
            code: 'custom',
            path: ['logTemporal'],
            message: 'a temporal window for MAYFLY_CT_LOG_URL, which is not set',
          });
        const count = (ct.logUrl ? 1 : 0) + (ct.logs?.length ?? 0);
        if (count > 0 && ct.minScts > count)
          ctx.addIssue({
            code: 'custom',
            path: ['minScts'],
            message: `more than the ${count} configured log(s)`,
          });
      })
      .default({ minScts: 1, timeoutMs: 10000 }),
    shutdownGraceMs: z.number().int().min(0).max(600000).default(25000),
    /** After SIGTERM, how long to keep serving while reporting not-ready, before closing. */
    shutdownDelayMs: z.number().int().min(0).max(600000).default(0),
    /**
     * While draining, a keep-alive connection is closed once idle (no request open, nothing
     * received) this long: long enough that no request of its client can be on its way.
     */
    shutdownIdleMs: z.number().int().min(100).max(600000).default(2000),
    /**
     * Worker processes (node cluster); 1 = no cluster, 0 = one per usable core (CPU affinity
     * and cgroup limit). Unset: one per usable core outside Kubernetes, one process in it
     * (services/ca/cluster.ts, planWorkers).
     */
    workers: z.number().int().min(0).max(256).optional(),
    /** The RA yields to the event loop between its stages (services/common/next-turn.ts). */
    stageBatching: z.boolean().default(true),
    rateLimits: rateLimitsSchema,
    redis: redisSchema,
    /** Proxies whose X-Forwarded-For names the client (for the per-client-ip limit). */
    trustedProxies: z.array(trustedProxySchema).default([]),
  })
  .strict();

export type ServerConfig = z.infer<typeof serverConfigSchema>;
