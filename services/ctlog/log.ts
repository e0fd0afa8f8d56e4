import type { Logger } from '../common/logger';
import { checkpointNote, type SignedTreeHead } from './checkpoint';
import {
  dataTilePrefix,
  extraData,
  leafIndexExtensions,
  merkleTreeLeaf,
  parseDataTile,
  type LogEntry,
} from './entry';
import type { LogKey } from './log-key';
import { HASH_SIZE, TILE_WIDTH, TreeHasher } from './merkle';
import type { CtlogMetrics } from './metrics';
import type { LogStorage, PendingEntry, SequencedRecord } from './storage/storage';

/**
 * The log as its HTTP layer sees it: submit a validated entry and wait for its SCT, and
 * every read (static-ct-api assets and the RFC 6962 read endpoints, computed from the same
 * tiles). Front ends never sequence; they wait for the sequencer's commit, learned from the
 * sequencer in this process or, on other replicas, by polling the dedup index.
 */

export interface AddChainResponse {
  readonly sct_version: 0;
  readonly id: string;
  readonly timestamp: number;
  readonly extensions: string;
  readonly signature: string;
}

export class LogUnavailableError extends Error {}
export class LogRequestError extends Error {}

export const MAX_GET_ENTRIES = 256;

/**
 * Full tiles never change: kept in memory, least recently used out first, up to a byte
 * budget. Partial tiles and the checkpoint are always read from storage.
 */
class TileCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(key: string): Buffer | undefined {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  set(key: string, value: Buffer): void {
    if (value.length > this.maxBytes || this.entries.has(key)) return;
    this.entries.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}

interface Waiter {
  readonly resolve: (r: SequencedRecord) => void;
  readonly reject: (e: Error) => void;
}

/** A submission waiting for its group's dedup read and durable write. */
interface Submission {
  readonly entry: PendingEntry;
  readonly hex: string;
  readonly resolve: (r: { sct: AddChainResponse; duplicate: boolean }) => void;
  readonly reject: (e: Error) => void;
}

export interface CtLogOptions {
  readonly origin: string;
  /** How long a submission waits to be sequenced before a 503. */
  readonly submitTimeoutMs: number;
  /** How often a replica that does not sequence looks for its waiters' entries. */
  readonly pollMs: number;
  /**
   * How long a tree head read from storage is served before it is read again (on the first
   * request after that). The sequencing replica also learns each new head at its commit; any
   * other replica's checkpoint lags the leader's by at most this.
   */
  readonly headTtlMs: number;
}

/** The tree head this replica serves, and when it was last known to be current. */
export interface HeadView {
  readonly head: SignedTreeHead | undefined;
  readonly at: number;
}

export class CtLog {
  private readonly waiters = new Map<string, Waiter[]>();
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private cachedHead: HeadView | undefined;
  /** The submissions of this turn of the event loop (see submit). */
  private group: Submission[] | undefined;
  private headRead: Promise<SignedTreeHead | undefined> | undefined;
  private readonly fullTiles = new TileCache(64 * 1024 * 1024);
  /** Set by the composition root: true while a local sequencer leads. */
  localSequencer: () => boolean = () => false;

  constructor(
    readonly storage: LogStorage,
    readonly key: LogKey,
    private readonly options: CtLogOptions,
    private readonly logger: Logger,
    private readonly metrics?: CtlogMetrics,
  ) {}

  sct(rec: SequencedRecord): AddChainResponse {
    return {
      sct_version: 0,
      id: this.key.logId.toString('base64'),
      timestamp: rec.timestamp,
      extensions: leafIndexExtensions(rec.index).toString('base64'),
      signature: rec.signature.toString('base64'),
    };
  }

  /**
   * Logs a validated entry and resolves with its SCT once it is sequenced (or at once with
   * the SCT already issued for it). The submissions that arrive in one turn of the event loop
   * are looked up and queued together: one dedup read and one durable write for the group
   * instead of two round trips each (on PostgreSQL, one statement and one commit).
   */
  submit(entry: PendingEntry): Promise<{ sct: AddChainResponse; duplicate: boolean }> {
    return new Promise((resolve, reject) => {
      if (!this.group) {
        this.group = [];
        setImmediate(() => {
          const group = this.group!;
          this.group = undefined;
          this.submitGroup(group).catch((err: unknown) => {
            for (const s of group) s.reject(err as Error);
          });
        });
      }
      this.group.push({ entry, hex: entry.key.toString('hex'), resolve, reject });
    });
  }

  private async submitGroup(group: readonly Submission[]): Promise<void> {
    const found = await this.storage.sequenced(group.map((s) => s.entry.key));
    const fresh: Submission[] = [];
    for (const s of group) {
      const rec = found.get(s.hex);
      if (rec) s.resolve({ sct: this.sct(rec), duplicate: true });
      else fresh.push(s);
    }
    if (fresh.length === 0) return;
    const started = process.hrtime.bigint();
    const waits = fresh.map((s) => this.wait(s.hex));
    try {
      // A key twice in the group is queued once (the storage contract).
      await this.storage.enqueue(fresh.map((s) => s.entry));
    } catch (err) {
      // Nobody will await these waiters: they must never fire (an unhandled rejection would
      // stop the process).
      for (const w of waits) w.cancel();
      throw err;
    }
    fresh.forEach((s, i) => {
      waits[i]!.promise.then((rec) => {
        this.metrics?.integrationSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        s.resolve({ sct: this.sct(rec), duplicate: false });
      }, s.reject);
    });
  }

  private wait(hex: string): { promise: Promise<SequencedRecord>; cancel: () => void } {
    let waiter!: Waiter;
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<SequencedRecord>((resolve, reject) => {
      timer = setTimeout(() => {
        this.dropWaiter(hex, waiter);
        reject(new LogUnavailableError('the entry was not sequenced in time'));
      }, this.options.submitTimeoutMs);
      waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
    const list = this.waiters.get(hex) ?? [];
    list.push(waiter);
    this.waiters.set(hex, list);
    this.schedulePoll();
    // Marked handled at once: it may be rejected (timeout, shutdown) before the submitter
    // awaits it, while its enqueue is still in flight; the submitter still sees the error.
    promise.catch(() => undefined);
    return {
      promise,
      cancel: () => {
        clearTimeout(timer);
        this.dropWaiter(hex, waiter);
      },
    };
  }

  private dropWaiter(hex: string, waiter: Waiter): void {
    const list = this.waiters.get(hex)?.filter((w) => w !== waiter) ?? [];
    if (list.length === 0) this.waiters.delete(hex);
    else this.waiters.set(hex, list);
  }

  /** The local sequencer's commits, with the head it committed (and anything the poller finds). */
  committed(records: readonly SequencedRecord[], head?: SignedTreeHead): void {
    if (head) this.learnHead(head, Date.now());
    for (const rec of records) {
      const hex = rec.key.toString('hex');
      const list = this.waiters.get(hex);
      if (!list) continue;
      this.waiters.delete(hex);
      for (const w of list) w.resolve(rec);
    }
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.polling) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      void this.poll();
    }, this.options.pollMs);
  }

  private async poll(): Promise<void> {
    if (this.waiters.size === 0) return;
    this.polling = true;
    try {
      if (!this.localSequencer()) {
        const keys = [...this.waiters.keys()].map((h) => Buffer.from(h, 'hex'));
        for (let i = 0; i < keys.length; i += 1000)
          this.committed([...(await this.storage.sequenced(keys.slice(i, i + 1000))).values()]);
      }
    } catch (err) {
      this.logger.warn({ err }, 'polling for sequenced entries failed');
    } finally {
      this.polling = false;
      if (this.waiters.size > 0) this.schedulePoll();
    }
  }

  /** Fails every waiter (shutdown). */
  abandonWaiters(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    for (const list of this.waiters.values())
      for (const w of list) w.reject(new LogUnavailableError('shutting down'));
    this.waiters.clear();
  }

  /**
   * Keeps the newer of the cached head and `head` (tree heads only move forward: a read that
   * started before a commit must not undo what the commit taught), current as of `at`.
   */
  private learnHead(head: SignedTreeHead | undefined, at: number): void {
    const known = this.cachedHead?.head;
    const newer = !known || (head !== undefined && head.timestamp >= known.timestamp);
    this.cachedHead = { head: newer ? head : known, at: Math.max(at, this.cachedHead?.at ?? 0) };
  }

  /** The cached head while it is younger than the TTL, without touching storage. */
  freshHead(now = Date.now()): HeadView | undefined {
    const c = this.cachedHead;
    return c && now - c.at < this.options.headTtlMs ? c : undefined;
  }

  /** The latest tree head, re-read from storage at most once per TTL (one read at a time). */
  async head(): Promise<SignedTreeHead | undefined> {
    const fresh = this.freshHead();
    if (fresh) return fresh.head;
    this.headRead ??= (async () => {
      const at = Date.now();
      try {
        this.learnHead(await this.storage.treeHead(), at);
        return this.cachedHead?.head;
      } finally {
        this.headRead = undefined;
      }
    })();
    return this.headRead;
  }

  /** The signed checkpoint note of a tree head. */
  note(head: SignedTreeHead): string {
    return checkpointNote(this.options.origin, this.key.logId, head);
  }

  async checkpoint(): Promise<string | undefined> {
    const head = await this.head();
    return head && this.note(head);
  }

  /** A hash tile as static-ct-api serves it, or undefined when the tree has no such tile. */
  async tile(level: number, index: number, width?: number): Promise<Buffer | undefined> {
    const head = await this.head();
    const count = Math.floor((head?.size ?? 0) / TILE_WIDTH ** level);
    const w = width ?? TILE_WIDTH;
    if (index * TILE_WIDTH + w > count) return undefined;
    const key = `${level}/${index}`;
    const tile = this.fullTiles.get(key) ?? (await this.storage.tile(level, index));
    if (!tile || tile.length < w * HASH_SIZE) return undefined;
    if (tile.length === TILE_WIDTH * HASH_SIZE) this.fullTiles.set(key, tile);
    return tile.subarray(0, w * HASH_SIZE);
  }

  async dataTile(index: number, width?: number): Promise<Buffer | undefined> {
    const head = await this.head();
    const w = width ?? TILE_WIDTH;
    if (index * TILE_WIDTH + w > (head?.size ?? 0)) return undefined;
    const key = `data/${index}`;
    const cached = this.fullTiles.get(key);
    if (cached) return width === undefined ? cached : dataTilePrefix(cached, w);
    const tile = await this.storage.dataTile(index);
    const data = tile && dataTilePrefix(tile, w);
    // A full data tile: its 256th entry ends the stored bytes.
    if (tile && width === undefined && data && data.length === tile.length)
      this.fullTiles.set(key, tile);
    return data;
  }

  issuer(fingerprint: Buffer): Promise<Buffer | undefined> {
    return this.storage.issuer(fingerprint);
  }

  private hasher(): TreeHasher {
    return new TreeHasher((level, index) => this.storage.tile(level, index));
  }

  private async requireHead(): Promise<SignedTreeHead> {
    const head = await this.head();
    if (!head) throw new LogUnavailableError('the log has no tree head yet');
    return head;
  }

  async sth(): Promise<SignedTreeHead> {
    return this.requireHead();
  }

  async consistency(first: number, second: number): Promise<Buffer[]> {
    const head = await this.requireHead();
    if (first < 0 || second < first || second > head.size)
      throw new LogRequestError('bad tree sizes');
    return this.hasher().consistency(first, second);
  }

  async proofByHash(hash: Buffer, treeSize: number): Promise<{ index: number; path: Buffer[] }> {
    const head = await this.requireHead();
    if (treeSize < 1 || treeSize > head.size) throw new LogRequestError('bad tree_size');
    const index = await this.storage.indexOfLeafHash(hash);
    if (index === undefined || index >= treeSize)
      throw new LogRequestError('hash not found in the tree of that size');
    return { index, path: await this.hasher().inclusion(index, treeSize) };
  }

  async entries(start: number, end: number): Promise<{ leaf: Buffer; extra: Buffer }[]> {
    const head = await this.requireHead();
    if (start < 0 || end < start || start >= head.size) throw new LogRequestError('bad start/end');
    const last = Math.min(end, head.size - 1, start + MAX_GET_ENTRIES - 1);
    const out: { leaf: Buffer; extra: Buffer }[] = [];
    const issuers = new Map<string, Buffer>();
    for (let t = Math.floor(start / TILE_WIDTH); t <= Math.floor(last / TILE_WIDTH); t++) {
      const width = Math.min(TILE_WIDTH, head.size - t * TILE_WIDTH);
      const tile = await this.dataTile(t, width === TILE_WIDTH ? undefined : width);
      if (!tile) throw new LogUnavailableError(`data tile ${t} is missing`);
      const entries = parseDataTile(tile);
      for (const e of entries) {
        if (e.index < start || e.index > last) continue;
        out.push({ leaf: merkleTreeLeaf(e), extra: extraData(e, await this.chain(e, issuers)) });
      }
    }
    return out;
  }

  private async chain(e: LogEntry, cache: Map<string, Buffer>): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (const fp of e.chain) {
      const hex = fp.toString('hex');
      let der = cache.get(hex);
      if (!der) {
        der = await this.storage.issuer(fp);
        if (!der) throw new LogUnavailableError(`issuer ${hex} is missing`);
        cache.set(hex, der);
      }
      out.push(der);
    }
    return out;
  }

  async entryAndProof(
    index: number,
    treeSize: number,
  ): Promise<{ leaf: Buffer; extra: Buffer; path: Buffer[] }> {
    const head = await this.requireHead();
    if (treeSize < 1 || treeSize > head.size || index < 0 || index >= treeSize)
      throw new LogRequestError('bad leaf_index/tree_size');
    const [entry] = await this.entries(index, index);
    return { ...entry!, path: await this.hasher().inclusion(index, treeSize) };
  }
}
