import { z } from 'zod';

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

export const serverConfigSchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(8080),
    metricsHost: z.string().min(1).default('0.0.0.0'),
    metricsPort: port.default(2112),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    identityConfig: z.string().min(1),
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
      })
      .strict()
      .default({ discoveryTimeoutMs: 10000, jwksCooldownMs: 30000, maxTokenBytes: 32768 }),
    ca: z
      .object({
        type: z.enum(['ephemeral', 'file']).default('ephemeral'),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
        keyPasswordFile: z.string().min(1).optional(),
      })
      .strict()
      .default({ type: 'ephemeral' }),
    shutdownGraceMs: z.number().int().min(0).max(600000).default(25000),
    devIssuer: z
      .object({
        enabled: z.boolean().default(false),
        host: z.string().default('127.0.0.1'),
        port: port.default(5556),
      })
      .strict()
      .default({ enabled: false, host: '127.0.0.1', port: 5556 }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.ca.type === 'file') {
      if (!cfg.ca.cert)
        ctx.addIssue({
          code: 'custom',
          path: ['ca', 'cert'],
          message: 'required when ca.type is file (MAYFLY_CA_CERT)',
        });
      if (!cfg.ca.key)
        ctx.addIssue({
          code: 'custom',
          path: ['ca', 'key'],
          message: 'required when ca.type is file (MAYFLY_CA_KEY)',
        });
    }
  });

export type ServerConfig = z.infer<typeof serverConfigSchema>;
