import type { X509Certificate } from 'node:crypto';
import type pino from 'pino';
import type { ProberConfig } from './config';
import type { ProberMetrics } from './metrics';
import {
  ProbeFailure,
  probeConfiguration,
  probeRootCert,
  probeSigningCertV1,
  probeSigningCertV2,
  probeTrustBundle,
  readToken,
  readTrustedRoots,
  type FailureReason,
  type FetchLike,
  type HttpOptions,
} from './probes';
import { GRPC_SIGNING_CERT, GRPC_TRUST_BUNDLE, GrpcProbes } from './grpc-probes';

/**
 * Runs the probes every interval, one round at a time (a slow round delays the next one,
 * never overlaps it), and records each outcome in the metrics. A round never throws: a CA
 * that is down, slow or wrong is what the prober is there to report.
 */

export interface ProbeOutcome {
  readonly endpoint: string;
  readonly method: 'GET' | 'POST';
  readonly ok: boolean;
  readonly seconds: number;
  readonly reason?: FailureReason;
  readonly detail?: string;
}

export interface ProberDeps {
  readonly metrics: ProberMetrics;
  readonly logger: pino.Logger;
  readonly fetch?: FetchLike;
  readonly now?: () => Date;
}

type ProberSettings = Pick<
  ProberConfig,
  'url' | 'tokenFile' | 'intervalSeconds' | 'timeoutMs' | 'signingApis' | 'trustedRootsFile'
> &
  Partial<Pick<ProberConfig, 'grpcAddress' | 'grpcTls' | 'grpcCaFile'>>;

export class Prober {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private round: Promise<unknown> | undefined;
  private readonly http: HttpOptions;
  private readonly grpc: GrpcProbes | undefined;
  private readonly now: () => Date;

  constructor(
    private readonly settings: ProberSettings,
    private readonly deps: ProberDeps,
  ) {
    this.http = {
      baseUrl: settings.url,
      timeoutMs: settings.timeoutMs,
      fetch: deps.fetch ?? fetch,
    };
    this.now = deps.now ?? (() => new Date());
    this.grpc = settings.grpcAddress
      ? new GrpcProbes({
          address: settings.grpcAddress,
          tls: settings.grpcTls ?? false,
          caFile: settings.grpcCaFile,
          timeoutMs: settings.timeoutMs,
        })
      : undefined;
  }

  /** One round: the read endpoints, then a certificate from each signing API. */
  async runOnce(): Promise<ProbeOutcome[]> {
    const outcomes: ProbeOutcome[] = [];
    let bundleRoots: X509Certificate[] | undefined;
    outcomes.push(
      await this.probe('/api/v2/trustBundle', 'GET', async () => {
        bundleRoots = await probeTrustBundle(this.http);
      }),
      await this.probe('/api/v2/configuration', 'GET', () => probeConfiguration(this.http)),
      await this.probe('/api/v1/rootCert', 'GET', () => probeRootCert(this.http)),
    );
    for (const api of this.settings.signingApis) {
      const endpoint = `/api/${api}/signingCert`;
      outcomes.push(
        await this.probe(endpoint, 'POST', async () => {
          const roots = await this.trustedRoots(bundleRoots);
          const token = await readToken(this.settings.tokenFile);
          const probe = api === 'v2' ? probeSigningCertV2 : probeSigningCertV1;
          await probe(this.http, token, roots, this.now);
        }),
      );
    }
    const grpc = this.grpc;
    if (grpc) {
      // Fulcio's gRPC API, as gRPC clients use it: the trust bundle, then a certificate.
      let grpcRoots: X509Certificate[] | undefined;
      outcomes.push(
        await this.probe(GRPC_TRUST_BUNDLE, 'POST', async () => {
          grpcRoots = await grpc.trustBundle();
        }),
        await this.probe(GRPC_SIGNING_CERT, 'POST', async () => {
          const roots = await this.trustedRoots(grpcRoots);
          const token = await readToken(this.settings.tokenFile);
          await grpc.signingCert(token, roots, this.now);
        }),
      );
    }
    return outcomes;
  }

  /** The pinned roots when configured, else the ones the CA's trust bundle just served. */
  private async trustedRoots(
    bundleRoots: X509Certificate[] | undefined,
  ): Promise<readonly X509Certificate[]> {
    if (this.settings.trustedRootsFile) {
      try {
        return await readTrustedRoots(this.settings.trustedRootsFile);
      } catch (err) {
        throw new ProbeFailure('chain', `trusted roots unreadable: ${(err as Error).message}`);
      }
    }
    if (!bundleRoots) throw new ProbeFailure('chain', 'no trust bundle to check the chain against');
    return bundleRoots;
  }

  private async probe(
    endpoint: string,
    method: 'GET' | 'POST',
    run: () => Promise<void>,
  ): Promise<ProbeOutcome> {
    const started = performance.now();
    let outcome: ProbeOutcome;
    try {
      await run();
      outcome = { endpoint, method, ok: true, seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      const failure =
        err instanceof ProbeFailure
          ? err
          : new ProbeFailure('internal', err instanceof Error ? err.message : String(err));
      outcome = {
        endpoint,
        method,
        ok: false,
        seconds: (performance.now() - started) / 1000,
        reason: failure.reason,
        detail: failure.message,
      };
    }
    this.record(outcome);
    return outcome;
  }

  private record(outcome: ProbeOutcome): void {
    const { metrics, logger } = this.deps;
    const labels = { endpoint: outcome.endpoint, method: outcome.method };
    metrics.probeDuration.observe(
      { ...labels, result: outcome.ok ? 'success' : 'failure' },
      outcome.seconds,
    );
    metrics.success.set(labels, outcome.ok ? 1 : 0);
    metrics.lastProbe.set(labels, this.now().getTime() / 1000);
    if (outcome.ok) {
      logger.debug({ ...labels, seconds: outcome.seconds }, 'probe succeeded');
    } else {
      metrics.failures.inc({ ...labels, reason: outcome.reason ?? 'internal' });
      logger.warn(
        { ...labels, seconds: outcome.seconds, reason: outcome.reason, detail: outcome.detail },
        'probe failed',
      );
    }
  }

  /** Probes now and then every interval until stop(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    const loop = async (): Promise<void> => {
      if (!this.running) return;
      const started = Date.now();
      this.round = this.runOnce().catch((err: unknown) =>
        this.deps.logger.error({ err: (err as Error).message }, 'probe round failed'),
      );
      await this.round;
      if (!this.running) return;
      const wait = Math.max(0, this.settings.intervalSeconds * 1000 - (Date.now() - started));
      this.timer = setTimeout(() => void loop(), wait);
    };
    void loop();
  }

  /** Stops the loop; resolves once a round in progress has finished. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.round;
    this.grpc?.close();
  }
}
