import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Fixture } from '../fixtures';
import { certificatesOf, type CertificateChecker } from './verify';

/**
 * The soak's clients: an open-loop load (request i is due at start + i / rate whatever
 * happened before, and its latency runs from when it was due, retries and backoff included)
 * of v2 and v1 signing requests through nginx, each retried like a real client would: after
 * a network error, a timeout or a 5xx, up to `retries` more times with a short, jittered,
 * growing backoff. A request counts as a success if it got a right certificate in the end.
 */

export type ApiVersion = 'v1' | 'v2';

export interface WindowStats {
  requests: number;
  failures: number;
  retries: number;
  maxLatencyMs: number;
}

export interface LoadStats {
  requests: number;
  succeeded: number;
  failed: number;
  wrongCertificates: number;
  /** A few wrong certificates, described (all are counted above). */
  readonly wrongExamples: string[];
  /** Every failed attempt, by kind, including the ones a retry then made good. */
  readonly attemptFailures: Map<string, number>;
  /** Requests that failed in the end, by the kind of their last failure. */
  readonly finalFailures: Map<string, number>;
  /** attempts[n]: requests that took n attempts (1 = no retry). */
  readonly attempts: number[];
  retries: number;
  readonly latenciesMs: number[];
  readonly byVersion: Record<ApiVersion, { requests: number; succeeded: number }>;
  /** By schedule window (the chaos step in force when the request was due). */
  readonly windows: Map<number, WindowStats>;
  maxInFlight: number;
  inFlight: number;
}

export interface SoakLoadOptions {
  readonly url: string;
  readonly fixtures: readonly Fixture[];
  readonly rate: number;
  readonly durationMs: number;
  readonly retries: number;
  readonly checker: CertificateChecker;
  /** The schedule window in force now. */
  readonly windowOf: () => number;
  /** Per attempt; nginx gives up on a replica well before (proxy_read_timeout 15 s). */
  readonly attemptTimeoutMs?: number;
}

/** 30 % v1 (cosign 2.x's shape), 70 % v2, interleaved. */
export function versionOf(index: number): ApiVersion {
  return index % 10 < 3 ? 'v1' : 'v2';
}

interface AttemptResult {
  readonly status?: number;
  readonly error?: string;
  readonly body?: string;
}

function attempt(
  agent: Agent,
  url: URL,
  version: ApiVersion,
  fixture: Fixture,
  timeoutMs: number,
): Promise<AttemptResult> {
  const body = Buffer.from(version === 'v2' ? fixture.v2Body : fixture.v1Body);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': body.length,
  };
  if (version === 'v1') headers.authorization = `Bearer ${fixture.token}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (result: AttemptResult) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const req = request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: `/api/${version}/signingCert`,
        headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          done({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', (err: NodeJS.ErrnoException) =>
          done({ error: `response ${err.code ?? err.message}` }),
        );
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })),
    );
    req.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export function emptyStats(): LoadStats {
  return {
    requests: 0,
    succeeded: 0,
    failed: 0,
    wrongCertificates: 0,
    wrongExamples: [],
    attemptFailures: new Map(),
    finalFailures: new Map(),
    attempts: [],
    retries: 0,
    latenciesMs: [],
    byVersion: { v1: { requests: 0, succeeded: 0 }, v2: { requests: 0, succeeded: 0 } },
    windows: new Map(),
    maxInFlight: 0,
    inFlight: 0,
  };
}

/** Runs the load to the end and returns when every request has its final outcome. */
export async function runSoakLoad(
  options: SoakLoadOptions,
  stats = emptyStats(),
): Promise<LoadStats> {
  const url = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 512 });
  const timeoutMs = options.attemptTimeoutMs ?? 30_000;
  const total = Math.max(1, Math.floor((options.rate * options.durationMs) / 1000));

  const one = async (index: number, due: number, windowIndex: number) => {
    const version = versionOf(index);
    const fixture = options.fixtures[index % options.fixtures.length]!;
    const window = stats.windows.get(windowIndex) ?? {
      requests: 0,
      failures: 0,
      retries: 0,
      maxLatencyMs: 0,
    };
    stats.windows.set(windowIndex, window);
    stats.requests++;
    window.requests++;
    stats.byVersion[version].requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let tries = 0;
    let failure: string | undefined;
    for (;;) {
      tries++;
      const result = await attempt(agent, url, version, fixture, timeoutMs);
      const okStatus = version === 'v2' ? 200 : 201;
      if (result.status === okStatus) {
        let problem: string | undefined;
        try {
          problem = options.checker.check(
            fixture,
            certificatesOf(version, result.body ?? '', options.checker.ctLog !== undefined),
          );
        } catch (err) {
          problem = `unreadable answer: ${(err as Error).message}`;
        }
        if (problem === undefined) failure = undefined;
        else {
          failure = 'wrong certificate';
          stats.wrongCertificates++;
          if (stats.wrongExamples.length < 20)
            stats.wrongExamples.push(`#${index} ${version} ${fixture.email}: ${problem}`);
        }
        break;
      }
      failure =
        result.status !== undefined
          ? `HTTP ${result.status}`
          : result.error === 'TIMEOUT'
            ? 'timeout'
            : `network ${result.error ?? 'error'}`;
      bump(stats.attemptFailures, failure);
      const retryable = result.status === undefined || result.status >= 500;
      if (!retryable || tries > options.retries) break;
      // 100 ms, 200 ms, 400 ms, ... plus up to 100 ms of jitter, so that the clients that
      // a crash failed together do not come back together.
      await sleep(100 * 2 ** (tries - 1) + Math.random() * 100);
    }
    const latency = performance.now() - due;
    stats.inFlight--;
    stats.latenciesMs.push(latency);
    stats.attempts[tries] = (stats.attempts[tries] ?? 0) + 1;
    stats.retries += tries - 1;
    window.retries += tries - 1;
    window.maxLatencyMs = Math.max(window.maxLatencyMs, latency);
    if (failure === undefined) {
      stats.succeeded++;
      stats.byVersion[version].succeeded++;
    } else {
      stats.failed++;
      window.failures++;
      bump(stats.finalFailures, failure);
    }
  };

  const start = performance.now() + 20;
  // Counted rather than kept: a long soak sends millions of requests.
  let outstanding = 0;
  let allSent = false;
  let drained: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (drained = resolve));
  const settle = () => {
    outstanding--;
    if (allSent && outstanding === 0) drained();
  };
  let sent = 0;
  const tick = () => {
    const now = performance.now();
    while (sent < total && start + (sent * 1000) / options.rate <= now) {
      const due = start + (sent * 1000) / options.rate;
      outstanding++;
      void one(sent, due, options.windowOf())
        .catch((err: unknown) => {
          // A bug in this file, not a server failure: counted, so it cannot pass unseen.
          stats.failed++;
          bump(stats.finalFailures, `client error: ${(err as Error).message}`);
        })
        .finally(settle);
      sent++;
    }
    if (sent < total) {
      const next = start + (sent * 1000) / options.rate;
      setTimeout(tick, Math.max(1, next - performance.now()));
    } else {
      allSent = true;
      if (outstanding === 0) drained();
    }
  };
  setTimeout(tick, 20);
  await finished;
  agent.destroy();
  return stats;
}
