import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import YAML from 'yaml';
import { makeKey, proofFor } from './keys';
import { v2Body, type TestCa } from './mayfly';

/** Limits files and signing requests for the rate-limit tests. */

export interface LimitSpec {
  readonly burst: number;
  readonly count: number;
  readonly period: string;
}

export interface LimitsFile {
  readonly defaults?: Readonly<Record<string, LimitSpec>>;
  readonly overrides?: readonly Readonly<
    Record<string, LimitSpec & { ids: readonly { id: string; comment?: string }[] }>
  >[];
}

/**
 * For tests that count exact outcomes: a busy CI machine can be slower than the production
 * command timeout (250 ms), and a timed-out call is answered by the insurance limiter,
 * which is not what those tests are about. Tests of timeouts set their own.
 */
export const PATIENT_REDIS = { MAYFLY_REDIS_COMMAND_TIMEOUT_MS: '2000' } as const;

/** Limits that never get in the way of a test about something else. */
export const ROOMY: LimitSpec = { burst: 10_000, count: 10_000, period: '1s' };

/** Writes a limits file in a fresh folder and returns its path. */
export function writeLimits(limits: LimitsFile | string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'mayfly-limits-')), 'ratelimits.yaml');
  replaceLimits(path, limits);
  return path;
}

/** Replaces the file atomically, as a ConfigMap update does (write, then rename). */
export function replaceLimits(path: string, limits: LimitsFile | string): void {
  const next = `${path}.next`;
  writeFileSync(next, typeof limits === 'string' ? limits : YAML.stringify(limits));
  renameSync(next, path);
}

const key = makeKey('p256');

/** One valid v2 signing request for `email`, through supertest or to a URL. */
export async function signFor(
  ca: TestCa,
  email: string,
  options: { url?: string; headers?: Record<string, string> } = {},
): Promise<request.Response> {
  const token = await ca.issuer.mintEmail(email);
  const body = v2Body(token, key.pem, proofFor(key, email));
  const req = request(options.url ?? ca.app.api).post('/api/v2/signingCert');
  for (const [name, value] of Object.entries(options.headers ?? {})) req.set(name, value);
  return req.send(body);
}

/** A token whose payload names `victim` but whose signature was made for another payload. */
export async function forgedTokenFor(ca: TestCa, victim: string): Promise<string> {
  const real = await ca.issuer.mintEmail('attacker@example.com');
  const [header, payload, signature] = real.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<
    string,
    unknown
  >;
  const forged = Buffer.from(JSON.stringify({ ...claims, sub: victim, email: victim })).toString(
    'base64url',
  );
  return `${header}.${forged}.${signature}`;
}

/** The value of one sample in the app's metrics (labels in any order), or 0 when absent. */
export async function metricValue(
  ca: TestCa,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  const text = await ca.app.metrics.registry.metrics();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text
    .split('\n')
    .find(
      (l) =>
        (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) &&
        wanted.every((w) => l.includes(w)),
    );
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Store calls that Redis answered. */
export function redisAnswers(ca: TestCa): Promise<number> {
  return metricValue(ca, 'mayfly_ratelimit_store_duration_seconds_count', {
    store: 'redis',
    result: 'ok',
  });
}

/** Requests the insurance limiter answered, for any reason. */
export async function insuranceAnswers(ca: TestCa): Promise<number> {
  let total = 0;
  for (const reason of ['error', 'timeout', 'backoff'])
    total += await metricValue(ca, 'mayfly_ratelimit_insurance_total', { reason });
  return total;
}

/**
 * Waits until Redis answers the limiter (the client connects in the background at start;
 * until then the insurance limiter answers). It sends empty requests, which spend only
 * the per-client-ip limit (they fail before any identity), so the limits file must
 * configure per-client-ip, and identity and issuer buckets stay untouched.
 */
export async function waitForRedis(ca: TestCa, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  const before = await redisAnswers(ca);
  for (;;) {
    await request(ca.app.api).post('/api/v2/signingCert').send({});
    if ((await redisAnswers(ca)) > before) return;
    if (Date.now() > deadline) throw new Error('Redis never answered the limiter');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Load {
  /** Stops the load and returns every status it got. */
  stop(): Promise<number[]>;
  readonly statuses: readonly number[];
}

/**
 * Keeps `concurrency` signing requests in flight, each for one of `identities` rotating
 * identities, until stopped. Network errors count as status 0.
 */
export function startLoad(ca: TestCa, concurrency = 4, identities = 50): Load {
  const statuses: number[] = [];
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const who = `load-${n++ % identities}@example.com`;
      const status = await signFor(ca, who, ca.url ? { url: ca.url } : {}).then(
        (r) => r.status,
        () => 0,
      );
      statuses.push(status);
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    statuses,
    async stop() {
      running = false;
      await Promise.all(workers);
      return statuses;
    },
  };
}
