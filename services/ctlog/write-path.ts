import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../common/logger';
import { LogUnavailableError, type CtLog } from './log';
import type { CtlogMetrics } from './metrics';
import { StorageUnavailableError } from './storage/storage';
import {
  SubmissionError,
  parseChainBody,
  validateSubmission,
  type Root,
  type TemporalInterval,
} from './submission';

/**
 * RFC 6962 §4.1–4.2 `add-chain` and `add-pre-chain`: one handler for a parsed body, and a
 * node:http front that takes the plain requests before Express (read-path.ts does the same
 * for the static-ct-api reads). A submission is a log's commonest write, once per
 * certificate a CA issues; Express's router and body-parser cost about as much as the
 * submission's signature check (bench/results/ct-service-*.md).
 *
 * The front takes a POST to exactly `/ct/v1/add-chain` or `/ct/v1/add-pre-chain` with a
 * Content-Length within the limit, no Content-Encoding (or identity) and no charset other
 * than UTF-8, and answers as the Express route does: the same statuses, texts, headers and
 * route metric. Anything else (a query, a trailing slash, chunked or compressed bodies, an
 * oversized Content-Length, another charset) is left to Express, which the front decides
 * before it reads a byte.
 */

export interface SubmitDeps {
  readonly log: CtLog;
  readonly roots: readonly Root[];
  readonly temporal: TemporalInterval;
  readonly logger: Logger;
  readonly metrics: CtlogMetrics;
}

export type Endpoint = 'add-chain' | 'add-pre-chain';

/** An answer: a JSON SCT, or a plain-text refusal or failure. */
export interface SubmitAnswer {
  readonly status: number;
  readonly json?: object;
  readonly text?: string;
}

export const MALFORMED_JSON = 'malformed JSON body\n';
export const TOO_LARGE = 'request body too large\n';

/** What a failure of the log itself is answered with (and logged as). */
export function failureAnswer(
  err: unknown,
  path: string,
  endpoint: Endpoint,
  deps: Pick<SubmitDeps, 'logger' | 'metrics'>,
): SubmitAnswer {
  if (err instanceof LogUnavailableError || err instanceof StorageUnavailableError) {
    deps.logger.warn({ err: err.message, path }, 'log unavailable');
    return { status: 503, text: 'log unavailable, retry later\n' };
  }
  deps.metrics.submissions.inc({ endpoint, result: 'error' });
  deps.logger.error({ err, path }, 'request failed');
  return { status: 500, text: 'internal error\n' };
}

/**
 * Checks a parsed body and logs it: the SCT, or a 400 with the refusal's fixed text.
 * Failures of the log (storage down, no sequencer) are thrown, for the caller's answer.
 */
export async function submit(
  deps: SubmitDeps,
  body: unknown,
  endpoint: Endpoint,
): Promise<SubmitAnswer> {
  let entry;
  try {
    entry = validateSubmission(
      parseChainBody(body),
      endpoint === 'add-pre-chain',
      deps.roots,
      deps.temporal,
    );
  } catch (err) {
    if (err instanceof SubmissionError) {
      deps.metrics.submissions.inc({ endpoint, result: 'refused' });
      deps.logger.info({ endpoint, reason: err.message, detail: err.detail }, 'submission refused');
      return { status: 400, text: `${err.message}\n` };
    }
    throw err;
  }
  const { sct, duplicate } = await deps.log.submit(entry);
  deps.metrics.submissions.inc({ endpoint, result: duplicate ? 'duplicate' : 'new' });
  return { status: 200, json: sct };
}

const PATHS: ReadonlyMap<string, Endpoint> = new Map([
  ['/ct/v1/add-chain', 'add-chain'],
  ['/ct/v1/add-pre-chain', 'add-pre-chain'],
]);

/** A Content-Type whose charset, if any, is UTF-8 (body-parser's json takes `utf-*` only). */
function utf8Charset(contentType: string | undefined): boolean {
  if (contentType === undefined) return true;
  const at = contentType.toLowerCase().indexOf('charset=');
  if (at < 0) return true;
  const value = contentType
    .slice(at + 8)
    .split(';')[0]!
    .trim()
    .replace(/^"|"$/g, '')
    .toLowerCase();
  return value === 'utf-8';
}

/** body-parser's json, strict: an empty body is `{}`, else an object or array, BOM dropped. */
export function parseJsonStrict(raw: Buffer): unknown {
  let text = raw.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) return {};
  const first = /^[ \t\n\r]*([^ \t\n\r])/.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw new SyntaxError('not an object or array');
  return JSON.parse(text);
}

export class WritePath {
  private readonly observers = new Map<Endpoint, Map<number, { observe(v: number): void }>>();

  constructor(
    private readonly deps: SubmitDeps,
    private readonly maxBodyBytes: number,
  ) {}

  /** The node:http front: true when it took the request, false to leave it to Express. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'POST') return false;
    const endpoint = PATHS.get(req.url ?? '');
    if (endpoint === undefined) return false;
    const h = req.headers;
    const length = h['content-length'];
    if (length === undefined || h['transfer-encoding'] !== undefined || !/^\d{1,9}$/.test(length))
      return false;
    const declared = Number(length);
    if (declared > this.maxBodyBytes) return false;
    const encoding = h['content-encoding'];
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
    if (!utf8Charset(h['content-type'])) return false;
    const start = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('error', () => undefined);
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= declared) chunks.push(chunk);
    });
    req.on('end', () => {
      // node:http ends a request at its Content-Length: a shorter one never ends (the
      // socket's close aborts it), a longer one is the next request's bytes.
      let body: unknown;
      try {
        body = parseJsonStrict(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      } catch {
        this.deps.metrics.submissions.inc({ endpoint, result: 'refused' });
        this.send(res, endpoint, { status: 400, text: MALFORMED_JSON }, start);
        return;
      }
      submit(this.deps, body, endpoint).then(
        (answer) => this.send(res, endpoint, answer, start),
        (err: unknown) =>
          this.send(res, endpoint, failureAnswer(err, req.url ?? '', endpoint, this.deps), start),
      );
    });
    return true;
  }

  private send(res: ServerResponse, endpoint: Endpoint, a: SubmitAnswer, start: number): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = Buffer.from(a.json !== undefined ? JSON.stringify(a.json) : (a.text ?? ''));
    res.writeHead(a.status, [
      'Content-Type',
      a.json !== undefined ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
      'Content-Length',
      String(body.length),
    ]);
    res.end(body);
    this.observe(endpoint, a.status, start);
  }

  private observe(endpoint: Endpoint, status: number, start: number): void {
    let byStatus = this.observers.get(endpoint);
    if (!byStatus) this.observers.set(endpoint, (byStatus = new Map()));
    let o = byStatus.get(status);
    if (!o) {
      o = this.deps.metrics.httpRequests.labels({
        route: `/ct/v1/${endpoint}`,
        code: String(status),
      });
      byStatus.set(status, o);
    }
    o.observe((performance.now() - start) / 1000);
  }
}
