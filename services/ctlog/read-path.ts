import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../common/logger';
import type { SignedTreeHead } from './checkpoint';
import { LogUnavailableError, type CtLog } from './log';
import { decodeTileIndex } from './merkle';
import type { CtlogMetrics } from './metrics';
import { StorageUnavailableError } from './storage/storage';

/**
 * The static-ct-api read path on plain node:http, before Express is reached: GET and HEAD of
 * `/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/data/<N>[.p/<W>]` and `/issuer/<sha256 hex>`.
 * The answers are the ones the Express routes gave (status, body, Content-Type, Cache-Control,
 * the fixed error texts and the route metric); Express keeps every other request, and calls
 * the same handlers for spellings this front does not take (`/Checkpoint`, `/issuer/<fp>/`).
 *
 * Every answer is encoded once (status, a flat header list and the body Buffer) and kept:
 * - the checkpoint of the current tree head, re-encoded when the head changes (CtLog learns a
 *   new head at the local sequencer's commit, or re-reads it once its TTL has passed);
 * - tiles by request path. A tile URL names fixed bytes: a full tile never changes, and a
 *   partial tile `.p/W` is the first W entries of its tile for ever (the log only appends), so
 *   neither needs invalidating when the head moves; only whether a tile exists yet depends on
 *   the head, and a 404 is never kept. Full tiles and issuers share one byte budget, partial
 *   tiles have their own, so the churn of partial widths never pushes full tiles out;
 * - issuers by fingerprint.
 * A hit is a map lookup and `writeHead` + `end` of the kept header list and Buffer.
 */

export interface ReadPathOptions {
  /** Bytes of full tiles and issuers kept (least recently used out first). */
  readonly immutableBytes: number;
  /** Bytes of partial tiles kept. */
  readonly partialBytes: number;
}

export const IMMUTABLE = 'public, max-age=31536000, immutable';
const CHECKPOINT_CACHE = 'no-cache, max-age=0';

export interface Encoded {
  readonly status: number;
  /** Alternating names and values, as `writeHead` takes them. */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

function encoded(status: number, type: string, cache: string | undefined, body: Buffer): Encoded {
  const headers = cache ? ['Cache-Control', cache] : [];
  headers.push('Content-Type', type, 'Content-Length', String(body.length));
  return { status, headers, body };
}

const text = (status: number, message: string) =>
  encoded(status, 'text/plain; charset=utf-8', undefined, Buffer.from(message));
const NOT_FOUND = text(404, 'not found\n');
const UNAVAILABLE = text(503, 'log unavailable, retry later\n');
const INTERNAL = text(500, 'internal error\n');

/** A least-recently-used map of encoded answers within a byte budget. */
export class AnswerCache {
  private readonly entries = new Map<string, Encoded>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(key: string): Encoded | undefined {
    const v = this.entries.get(key);
    if (v !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  set(key: string, value: Encoded): void {
    const size = value.body.length + key.length;
    if (size > this.maxBytes || this.entries.has(key)) return;
    this.entries.set(key, value);
    this.bytes += size;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.body.length + k.length;
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

const TILE = /^\/tile\/(data|[0-5])\/((?:x\d{3}\/)*\d{3})(?:\.p\/(\d{1,3}))?$/;
const ISSUER = /^\/issuer\/[0-9a-f]{64}$/;

/** Route labels of the metric, as the Express routes name them. */
export const ROUTES = {
  checkpoint: '/checkpoint',
  tile: '/tile/*',
  issuer: '/issuer/:fingerprint',
} as const;
type Route = (typeof ROUTES)[keyof typeof ROUTES];

export class ReadPath {
  private checkpointHead: SignedTreeHead | undefined;
  private checkpointAnswer: Encoded | undefined;
  private readonly immutable: AnswerCache;
  private readonly partial: AnswerCache;
  private readonly observers = new Map<Route, Map<number, { observe(v: number): void }>>();

  constructor(
    private readonly log: CtLog,
    private readonly logger: Logger,
    private readonly metrics: CtlogMetrics | undefined,
    options: ReadPathOptions,
  ) {
    this.immutable = new AnswerCache(options.immutableBytes);
    this.partial = new AnswerCache(options.partialBytes);
  }

  /** The node:http front: true when it took the request, false to leave it to Express. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path === '/checkpoint') {
      this.checkpoint(res, performance.now());
      return true;
    }
    if (path.startsWith('/tile/')) {
      this.tile(path, res, performance.now());
      return true;
    }
    if (path.startsWith('/issuer/') && ISSUER.test(path)) {
      this.issuer(path, res, performance.now());
      return true;
    }
    return false;
  }

  /** Writes the checkpoint of the current tree head. `start` set: record the route metric. */
  checkpoint(res: ServerResponse, start?: number): void {
    const fresh = this.log.freshHead();
    if (fresh) {
      this.sendCheckpoint(fresh.head, res, start);
      return;
    }
    this.log.head().then(
      (head) => this.sendCheckpoint(head, res, start),
      (err: unknown) => this.fail(err, '/checkpoint', ROUTES.checkpoint, res, start),
    );
  }

  private sendCheckpoint(
    head: SignedTreeHead | undefined,
    res: ServerResponse,
    start: number | undefined,
  ): void {
    if (!head) {
      this.fail(
        new LogUnavailableError('no checkpoint yet'),
        '/checkpoint',
        ROUTES.checkpoint,
        res,
        start,
      );
      return;
    }
    if (head !== this.checkpointHead || !this.checkpointAnswer) {
      this.checkpointAnswer = encoded(
        200,
        'text/plain; charset=utf-8',
        CHECKPOINT_CACHE,
        Buffer.from(this.log.note(head)),
      );
      this.checkpointHead = head;
    }
    this.send(res, this.checkpointAnswer, ROUTES.checkpoint, start);
  }

  /** Writes the tile a `/tile/...` path names, or 404. */
  tile(path: string, res: ServerResponse, start?: number): void {
    const hit = this.immutable.get(path) ?? this.partial.get(path);
    if (hit) {
      this.send(res, hit, ROUTES.tile, start);
      return;
    }
    const m = TILE.exec(path);
    const index = m ? decodeTileIndex(m[2]!) : undefined;
    const width = m?.[3] === undefined ? undefined : Number(m[3]);
    if (
      !m ||
      index === undefined ||
      (width !== undefined && (width < 1 || width > 255 || String(width) !== m[3]))
    ) {
      this.send(res, NOT_FOUND, ROUTES.tile, start);
      return;
    }
    const read =
      m[1] === 'data' ? this.log.dataTile(index, width) : this.log.tile(Number(m[1]), index, width);
    read.then(
      (data) => {
        if (!data) {
          this.send(res, NOT_FOUND, ROUTES.tile, start);
          return;
        }
        const answer = encoded(200, 'application/octet-stream', IMMUTABLE, data);
        (width === undefined ? this.immutable : this.partial).set(path, answer);
        this.send(res, answer, ROUTES.tile, start);
      },
      (err: unknown) => this.fail(err, path, ROUTES.tile, res, start),
    );
  }

  /** Writes the issuer certificate of an `/issuer/<64 lowercase hex>` path, or 404. */
  issuer(path: string, res: ServerResponse, start?: number): void {
    const hit = this.immutable.get(path);
    if (hit) {
      this.send(res, hit, ROUTES.issuer, start);
      return;
    }
    if (!ISSUER.test(path)) {
      this.send(res, NOT_FOUND, ROUTES.issuer, start);
      return;
    }
    this.log.issuer(Buffer.from(path.slice('/issuer/'.length), 'hex')).then(
      (der) => {
        if (!der) {
          this.send(res, NOT_FOUND, ROUTES.issuer, start);
          return;
        }
        const answer = encoded(200, 'application/pkix-cert', IMMUTABLE, der);
        this.immutable.set(path, answer);
        this.send(res, answer, ROUTES.issuer, start);
      },
      (err: unknown) => this.fail(err, path, ROUTES.issuer, res, start),
    );
  }

  /** Kept answers (tests and the benchmark look at it). */
  cached(): { immutable: number; partial: number } {
    return { immutable: this.immutable.size, partial: this.partial.size };
  }

  private fail(
    err: unknown,
    path: string,
    route: Route,
    res: ServerResponse,
    start: number | undefined,
  ): void {
    if (err instanceof LogUnavailableError || err instanceof StorageUnavailableError) {
      this.logger.warn({ err: err.message, path }, 'log unavailable');
      this.send(res, UNAVAILABLE, route, start);
      return;
    }
    this.logger.error({ err, path }, 'request failed');
    this.send(res, INTERNAL, route, start);
  }

  private send(res: ServerResponse, a: Encoded, route: Route, start: number | undefined): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    res.writeHead(a.status, a.headers as string[]);
    res.end(a.body);
    if (start !== undefined && this.metrics) this.observe(route, a.status, start);
  }

  private observe(route: Route, status: number, start: number): void {
    let byStatus = this.observers.get(route);
    if (!byStatus) this.observers.set(route, (byStatus = new Map()));
    let o = byStatus.get(status);
    if (!o) {
      o = this.metrics!.httpRequests.labels({ route, code: String(status) });
      byStatus.set(status, o);
    }
    o.observe((performance.now() - start) / 1000);
  }
}
