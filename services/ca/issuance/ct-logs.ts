import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  ctLogKey,
  parseAddChainResponse,
  SctError,
  verifyPrecertSct,
  type CtLogKey,
  type Sct,
} from '../../common/ct/sct';
import { Cancellation, JsonPoster } from './json-post';

/**
 * The CA's RFC 6962 client: `add-pre-chain` to each configured log, over HTTP only. Every
 * SCT is verified against the log's configured key over the exact precert entry before the
 * CA may embed it; a log that fails, times out or answers with an SCT that does not verify
 * counts for nothing. All logs are asked at once, and the whole exchange ends within the
 * CT timeout, whatever the logs do (Fulcio waits for the client's deadline).
 */

export interface CtLogSettings {
  /** The log's base URL (as Fulcio's --ct-log-url); /ct/v1/add-pre-chain is appended. */
  readonly url: string;
  /** PEM SPKI of the log's key. */
  readonly publicKeyFile: string;
  /**
   * The log's temporal window (a shard), RFC 3339 or Date: it accepts only certificates
   * whose notAfter lies in [start, end), so it is asked for no other (unset: every one).
   */
  readonly temporal?: { readonly start: string | Date; readonly end: string | Date };
}

export interface CtSettings {
  readonly logs: readonly CtLogSettings[];
  /** How many verified SCTs a certificate needs. */
  readonly minScts: number;
  /** The whole exchange with the logs, retries included. */
  readonly timeoutMs: number;
  /**
   * Circuit breaker per log: after `failures` failed submissions in a row the log is not
   * asked for `coolOffMs` (requests fail at once instead of each waiting for the timeout);
   * then it is asked again, and one success closes the breaker. Default 5 and 5000 ms, so
   * issuance resumes within seconds of the log's return.
   */
  readonly breaker?: { readonly failures: number; readonly coolOffMs: number };
}

/** Told about every submission, per log (the CT metrics). */
export interface CtObserver {
  submitted(log: string, result: 'ok' | 'error', seconds: number, reason?: string): void;
  /** A certificate whose notAfter too few logs' temporal windows hold (none was asked). */
  noEligibleLog?(): void;
}

export class CtLogError extends Error {}

export interface CtLog {
  readonly url: string;
  readonly key: CtLogKey;
  readonly addPreChain: URL;
}

/** A log's temporal window [start, end) in ms since the epoch (-Infinity, Infinity: none). */
interface TemporalWindow {
  readonly start: number;
  readonly end: number;
}

function windowOf(settings: CtLogSettings): TemporalWindow {
  if (!settings.temporal) return { start: -Infinity, end: Infinity };
  const start = new Date(settings.temporal.start).getTime();
  const end = new Date(settings.temporal.end).getTime();
  if (Number.isNaN(start) || Number.isNaN(end))
    throw new CtLogError(`the temporal window of ${settings.url} is not a pair of times`);
  if (end <= start)
    throw new CtLogError(
      `the temporal window of ${settings.url} ends (${new Date(end).toISOString()}) at or before its start (${new Date(start).toISOString()})`,
    );
  return { start, end };
}

interface Breaker {
  failures: number;
  openUntil: number;
}

export function loadCtLog(settings: CtLogSettings): CtLog {
  let pem: string;
  try {
    pem = readFileSync(settings.publicKeyFile, 'utf8');
  } catch (err) {
    throw new CtLogError(
      `cannot read the CT log key ${settings.publicKeyFile}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  let key: CtLogKey;
  try {
    key = ctLogKey(createPublicKey({ key: pem, format: 'pem' }));
  } catch (err) {
    throw new CtLogError(
      `the CT log key ${settings.publicKeyFile} is not a usable PEM public key: ${(err as Error).message}`,
    );
  }
  if (!/^https?:\/\/[^/]+/.test(settings.url))
    throw new CtLogError(`the CT log URL is not an http(s) URL: ${settings.url}`);
  const url = settings.url.replace(/\/+$/, '');
  return { url, key, addPreChain: new URL(`${url}/ct/v1/add-pre-chain`) };
}

/** Statuses worth another try within the budget (as ct-go retries them). */
const RETRYABLE = new Set([408, 429, 502, 503, 504]);
const RETRY_PAUSE_MS = 100;

export interface PrecertSubmission {
  /** The precertificate, DER. */
  readonly precert: Uint8Array;
  /**
   * [issuing CA, …, root] as DER: one array per CA snapshot (its base64 is encoded once per
   * array, not per request).
   */
  readonly issuers: readonly Uint8Array[];
  /** SHA-256 of the issuing certificate's SPKI. */
  readonly issuerKeyHash: Uint8Array;
  /** The precertificate's TBS without the poison: what the SCT signs. */
  readonly tbs: Uint8Array;
  /** The certificate's notAfter: only the logs whose temporal window holds it are asked. */
  readonly notAfter: Date;
}

export interface ObtainedSct {
  readonly log: CtLog;
  readonly sct: Sct;
}

export class CtLogs {
  readonly logs: readonly CtLog[];
  /** Each log's temporal window, by position. */
  private readonly windows: readonly TemporalWindow[];
  private readonly breakers: Breaker[];
  private readonly breaker: { readonly failures: number; readonly coolOffMs: number };
  private readonly poster = new JsonPoster();
  private readonly issuerText = new WeakMap<readonly Uint8Array[], string>();

  constructor(
    private readonly settings: CtSettings,
    private readonly observer?: CtObserver,
  ) {
    if (settings.logs.length === 0) throw new CtLogError('no CT log configured');
    if (settings.minScts < 1 || settings.minScts > settings.logs.length)
      throw new CtLogError(
        `MAYFLY_CT_MIN_SCTS (${settings.minScts}) must be from 1 to the number of logs (${settings.logs.length})`,
      );
    this.windows = settings.logs.map(windowOf);
    this.logs = settings.logs.map(loadCtLog);
    this.breakers = this.logs.map(() => ({ failures: 0, openUntil: 0 }));
    this.breaker = settings.breaker ?? { failures: 5, coolOffMs: 5000 };
  }

  /**
   * Throws CtLogError when fewer logs than the minimum have a temporal window holding this
   * notAfter. A log refuses a certificate outside its window, so asking it would only spend
   * the CT timeout: the CA checks this before it signs the precertificate, and fails at once.
   */
  assertEligible(notAfter: Date): void {
    const t = notAfter.getTime();
    let eligible = 0;
    for (const w of this.windows) if (t >= w.start && t < w.end) eligible++;
    if (eligible < this.settings.minScts) {
      this.observer?.noEligibleLog?.();
      throw new CtLogError(
        `${eligible} configured log(s) accept a notAfter of ${notAfter.toISOString()} (their temporal windows), ${this.settings.minScts} needed`,
      );
    }
  }

  /**
   * The verified SCTs of the logs that answered in time, in configuration order; throws
   * CtLogError (details for the log only) when fewer than the minimum did.
   */
  async obtain(submission: PrecertSubmission): Promise<ObtainedSct[]> {
    this.assertEligible(submission.notAfter);
    const notAfter = submission.notAfter.getTime();
    const deadline = Date.now() + this.settings.timeoutMs;
    const cancellation = new Cancellation();
    const timer = setTimeout(() => cancellation.abort(), this.settings.timeoutMs);
    // {"chain":[precert, issuing CA, …, root]}: base64 needs no JSON escaping.
    const body = `{"chain":["${Buffer.from(submission.precert).toString('base64')}"${this.encodedIssuers(submission.issuers)}]}`;
    try {
      const results = await Promise.allSettled(
        this.logs.map((log, i) =>
          notAfter >= this.windows[i]!.start && notAfter < this.windows[i]!.end
            ? this.guarded(i, () => this.one(log, body, submission, deadline, cancellation))
            : null,
        ),
      );
      const obtained: ObtainedSct[] = [];
      const failures: string[] = [];
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          if (r.value) obtained.push({ log: this.logs[i]!, sct: r.value });
        } else failures.push(`${this.logs[i]!.url}: ${(r.reason as Error).message}`);
      });
      if (obtained.length < this.settings.minScts)
        throw new CtLogError(
          `${obtained.length} verified SCT(s), ${this.settings.minScts} needed: ${failures.join('; ')}`,
        );
      return obtained;
    } finally {
      clearTimeout(timer);
    }
  }

  /** `,"<issuing CA>",…,"<root>"` in base64, per issuer array (one per CA snapshot). */
  private encodedIssuers(issuers: readonly Uint8Array[]): string {
    let text = this.issuerText.get(issuers);
    if (text === undefined) {
      text = issuers.map((c) => `,"${Buffer.from(c).toString('base64')}"`).join('');
      this.issuerText.set(issuers, text);
    }
    return text;
  }

  /**
   * Each log's state, read at scrape time (never on the request path): whether its breaker
   * is tripped — from the failure that opens it until a success closes it, cool-off and
   * trial requests included, so a log that stays down reads open however little traffic
   * probes it — and the end of its temporal window (Infinity: none).
   */
  state(): { readonly log: string; readonly breakerOpen: boolean; readonly windowEnd: number }[] {
    return this.logs.map((log, i) => ({
      log: log.url,
      breakerOpen: this.breakers[i]!.failures >= this.breaker.failures,
      windowEnd: this.windows[i]!.end,
    }));
  }

  /** Runs one submission through the log's circuit breaker. */
  private async guarded(i: number, submit: () => Promise<Sct>): Promise<Sct> {
    const breaker = this.breakers[i]!;
    if (Date.now() < breaker.openUntil) {
      this.observer?.submitted(this.logs[i]!.url, 'error', 0, 'circuit_open');
      throw new CtLogError(
        `circuit open after ${breaker.failures} failures in a row (the log is not asked)`,
      );
    }
    try {
      const sct = await submit();
      breaker.failures = 0;
      return sct;
    } catch (err) {
      breaker.failures++;
      if (breaker.failures >= this.breaker.failures)
        breaker.openUntil = Date.now() + this.breaker.coolOffMs;
      throw err;
    }
  }

  private async one(
    log: CtLog,
    body: string,
    submission: PrecertSubmission,
    deadline: number,
    cancellation: Cancellation,
  ): Promise<Sct> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const sct = await this.submit(log, body, deadline, cancellation);
      try {
        verifyPrecertSct(sct, log.key, submission.issuerKeyHash, submission.tbs);
      } catch (err) {
        throw new CtLogError(`unverifiable SCT: ${(err as Error).message}`);
      }
      this.observer?.submitted(log.url, 'ok', seconds());
      return sct;
    } catch (err) {
      const reason = cancellation.aborted ? 'timeout' : reasonOf(err);
      this.observer?.submitted(log.url, 'error', seconds(), reason);
      throw cancellation.aborted
        ? new CtLogError(`no SCT within ${this.settings.timeoutMs} ms`)
        : (err as Error);
    }
  }

  private async submit(
    log: CtLog,
    body: string,
    deadline: number,
    cancellation: Cancellation,
  ): Promise<Sct> {
    for (;;) {
      let status: number;
      let text: string;
      try {
        ({ status, text } = await this.poster.post(log.addPreChain, body, cancellation));
      } catch (err) {
        if (cancellation.aborted) throw err;
        status = 0;
        text = (err as Error).message;
      }
      if (status === 200) {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          throw new CtLogError('the log answered 200 with a body that is not JSON');
        }
        try {
          return parseAddChainResponse(json);
        } catch (err) {
          throw new CtLogError(`malformed SCT: ${(err as SctError).message}`);
        }
      }
      if (status !== 0 && !RETRYABLE.has(status))
        throw new CtLogError(`the log answered ${status}: ${text.slice(0, 200)}`);
      if (Date.now() + RETRY_PAUSE_MS >= deadline)
        throw new CtLogError(
          `the log is unavailable (${status === 0 ? text : `HTTP ${status}`}) and the budget is spent`,
        );
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
      if (cancellation.aborted) throw new CtLogError('aborted');
    }
  }
}

function reasonOf(err: unknown): string {
  const m = (err as Error).message ?? '';
  if (m.startsWith('unverifiable')) return 'unverifiable';
  if (m.startsWith('malformed') || m.includes('not JSON')) return 'malformed';
  if (m.startsWith('the log answered')) return 'refused';
  return 'unavailable';
}
