import { X509Certificate } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { systemClock, type Clock } from '../common/clock';
import { baseLoggerOptions, type Logger } from '../common/logger';
import { RateLimiter } from '../common/ratelimit/limiter';
import { LimitTable, resolveLimit } from '../common/ratelimit/limits';
import { MemoryStore } from '../common/ratelimit/memory-store';
import type { CaSigner } from '../common/signer/signer';
import { ClockMonitor, parseNtpServer, uncheckedClock, type ClockCheck } from './clock-monitor';
import type { TsaConfig } from './config';
import { createTsaHandler } from './http';
import { createTsaMetrics, type TsaMetrics } from './metrics';
import { TimestampService } from './service';
import { validateTsaChain } from './certificates';
import { createTsaSigner } from './signer';

/**
 * The TSA's composition root: the only place that wires its concrete parts. Tests hand in
 * a clock, a signer or an audit destination through `TsaOverrides`.
 */

export interface TsaOverrides {
  readonly clock?: Clock;
  readonly signer?: CaSigner;
  readonly audit?: Logger;
}

export interface TsaApp {
  readonly handler: RequestListener;
  readonly metricsHandler: RequestListener;
  readonly metrics: TsaMetrics;
  readonly service: TimestampService;
  readonly signer: CaSigner;
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

const LIMIT_NAME = 'tsa_per_address';

export function createTsaAuditLogger(file?: string): Logger {
  const options = baseLoggerOptions('info', { service: 'mayfly-tsa', log: 'audit' });
  return pino(
    options,
    file
      ? pino.destination({ dest: file, append: true, mkdir: true, sync: true })
      : pino.destination({ dest: 1, sync: true }),
  );
}

export async function createTsaApp(
  config: TsaConfig,
  logger: Logger,
  overrides: TsaOverrides = {},
): Promise<TsaApp> {
  const clock = overrides.clock ?? systemClock;
  const metrics = createTsaMetrics(new Registry(), {
    version: process.env.npm_package_version ?? 'dev',
  });
  const signer = overrides.signer ?? (await createTsaSigner(config, clock));
  validateTsaChain(signer.chain, signer.publicKey, clock);
  metrics.certificateNotAfter.set(Date.parse(new X509Certificate(signer.chain[0]!).validTo) / 1000);

  let clockCheck: ClockCheck = uncheckedClock;
  if (config.ntpServer) {
    const monitor = new ClockMonitor({
      server: parseNtpServer(config.ntpServer),
      maxOffsetMs: config.maxClockOffsetMs,
      intervalMs: config.ntpIntervalMs,
      timeoutMs: config.ntpTimeoutMs,
      maxSampleAgeMs: Math.max(3 * config.ntpIntervalMs, 10_000),
      clock,
      onSample: (sample) => {
        metrics.clockOffset.set(sample.offsetMs / 1000);
        metrics.clockSamples.inc({ result: 'ok' });
        metrics.clockInBound.set(Math.abs(sample.offsetMs) <= config.maxClockOffsetMs ? 1 : 0);
        if (Math.abs(sample.offsetMs) > config.maxClockOffsetMs) {
          logger.error(
            { offsetMs: sample.offsetMs, maxOffsetMs: config.maxClockOffsetMs },
            'clock offset past its bound: refusing to timestamp',
          );
        }
      },
      onFailure: (err) => {
        metrics.clockSamples.inc({ result: 'error' });
        logger.warn({ err: err.message, server: config.ntpServer }, 'time source query failed');
      },
    });
    await monitor.start();
    clockCheck = monitor;
  }
  metrics.clockInBound.set(
    clockCheck.state() === 'ok' || clockCheck.state() === 'unchecked' ? 1 : 0,
  );

  const service = new TimestampService({
    signer,
    policy: config.policyOid,
    includeChain: config.includeChain,
    clock,
    clockCheck,
    metrics,
    audit: overrides.audit ?? createTsaAuditLogger(config.auditLogFile),
    signTimeoutMs: 10_000,
  });

  let allow: ((address: string) => Promise<boolean>) | undefined;
  if (config.rateLimitPerSecond > 0) {
    const table = new LimitTable(
      new Map([
        [
          LIMIT_NAME,
          resolveLimit(LIMIT_NAME, {
            burst: config.rateLimitBurst,
            count: config.rateLimitPerSecond,
            periodMs: 1000,
          }),
        ],
      ]),
    );
    const limiter = new RateLimiter({
      store: new MemoryStore(clock),
      failurePolicy: 'fail-closed',
      insuranceShare: 1,
      timeoutMs: 1000,
      failureBackoffMs: 1000,
      clock,
      logger,
      metrics: {
        decision: () => undefined,
        storeCall: () => undefined,
        insurance: () => undefined,
      },
    });
    allow = async (address) => {
      const t = table.transaction(LIMIT_NAME, address);
      return t ? (await limiter.spend([t])).allowed : true;
    };
  }

  let ready = true;
  const readiness = (): string[] => {
    const failing: string[] = [];
    if (!ready) failing.push('draining');
    const state = clockCheck.state();
    if (state === 'offset_too_large' || state === 'unknown') failing.push(`clock_${state}`);
    return failing;
  };
  const handler = createTsaHandler({
    service,
    metrics,
    logger,
    readiness,
    ...(allow ? { allow } : {}),
    trustedRootFile: config.trustedRootFile,
    signingConfigFile: config.signingConfigFile,
  });
  const metricsHandler: RequestListener = (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      const state = clockCheck.state();
      metrics.clockInBound.set(state === 'ok' || state === 'unchecked' ? 1 : 0);
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') return handler(req, res);
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
  };
  return {
    handler,
    metricsHandler,
    metrics,
    service,
    signer,
    setReady: (value) => {
      ready = value;
    },
    close: () => {
      clockCheck.close();
      return Promise.resolve();
    },
  };
}

export async function listen(
  handler: RequestListener,
  host: string,
  port: number,
): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 20_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
