import { performance } from 'node:perf_hooks';
import type { Logger } from '../common/logger';
import type { Clock } from '../common/clock';
import { signTreeHead, type SignedTreeHead } from './checkpoint';
import {
  dataTilePrefix,
  fingerprint,
  leafHash,
  readTileLeaf,
  sctSignatureInput,
  tileLeaf,
  type LogEntry,
} from './entry';
import { digitallySign, type LogKey } from './log-key';
import { HASH_SIZE, TILE_WIDTH, partialWidth, perfectRoot, rootFromEdge } from './merkle';
import type { CtlogMetrics } from './metrics';
import { TlsReader } from './tls';
import {
  CommitConflictError,
  type LogStorage,
  type SequencedRecord,
  type TileWrite,
} from './storage/storage';

/** Tile levels 0..5 cover 2^48 entries, as static-ct-api allows. */
const LEVELS = 6;

export interface SequencerOptions {
  /** How often a batch is cut. */
  readonly intervalMs: number;
  /** At most this many entries per batch. */
  readonly maxBatch: number;
  /** A new checkpoint is signed at least this often, even with nothing new. */
  readonly checkpointRefreshMs: number;
}

interface State {
  readonly head: SignedTreeHead | undefined;
  readonly size: number;
  /** The hashes of the rightmost (partial) tile of each level. */
  readonly edge: Buffer[][];
  /** The entries of the rightmost (partial) data tile. */
  readonly dataEdge: Buffer[];
}

/**
 * The one sequencer: every interval, while it leads, it takes pending submissions, assigns
 * them indices, signs their SCTs, extends the tiles, signs a new tree head and commits it all
 * at once. State is (re)loaded from storage whenever it (re)gains leadership or a commit
 * fails, so a deposed sequencer never builds on a stale tree.
 */
export class Sequencer {
  private state: State | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  leading = false;

  constructor(
    private readonly storage: LogStorage,
    private readonly key: LogKey,
    private readonly clock: Clock,
    private readonly options: SequencerOptions,
    private readonly logger: Logger,
    private readonly metrics: CtlogMetrics | undefined,
    /** Called after each commit with its records and the tree head it committed. */
    private readonly onCommitted: (
      records: readonly SequencedRecord[],
      head: SignedTreeHead,
    ) => void,
  ) {}

  start(): void {
    // A batch is cut every interval, measured from the start of the previous one (not from
    // its end): a submission waits at most one interval plus one batch's work.
    let began = 0;
    const tick = () => {
      if (this.stopped) return;
      began = performance.now();
      this.running = this.step()
        .then(() => undefined)
        .catch((err: unknown) => {
          this.state = undefined;
          this.logger.error({ err }, 'sequencing failed');
        })
        .finally(() => {
          this.running = undefined;
          if (!this.stopped)
            this.timer = setTimeout(
              tick,
              Math.max(0, this.options.intervalMs - (performance.now() - began)),
            );
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private async load(): Promise<State> {
    const head = await this.storage.treeHead();
    const size = head?.size ?? 0;
    const edge: Buffer[][] = [];
    for (let level = 0; level < LEVELS; level++) {
      const width = partialWidth(size, level);
      const hashes: Buffer[] = [];
      if (width > 0) {
        const tile = await this.storage.tile(level, Math.floor(size / TILE_WIDTH ** (level + 1)));
        if (!tile || tile.length < width * HASH_SIZE)
          throw new Error(`tile at level ${level} is missing for size ${size}`);
        for (let i = 0; i < width; i++)
          hashes.push(Buffer.from(tile.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE)));
      }
      edge.push(hashes);
    }
    const dataEdge: Buffer[] = [];
    const width = partialWidth(size, 0);
    if (width > 0) {
      const tile = await this.storage.dataTile(Math.floor(size / TILE_WIDTH));
      const prefix = tile && dataTilePrefix(tile, width);
      if (!prefix) throw new Error(`data tile is missing for size ${size}`);
      const r = new TlsReader(prefix);
      while (!r.done) {
        const start = r.position;
        readTileLeaf(r);
        dataEdge.push(Buffer.from(prefix.subarray(start, r.position)));
      }
    }
    if (head) {
      const root = rootFromEdge(
        size,
        edge.map((l) => Buffer.concat(l)),
      );
      if (!root.equals(head.root)) throw new Error('the stored tiles do not match the tree head');
    }
    return { head, size, edge, dataEdge };
  }

  /** One batch. Exposed for tests and the benchmark. */
  async step(): Promise<number> {
    const started = process.hrtime.bigint();
    if (!(await this.storage.lead())) {
      if (this.leading) this.logger.warn('lost sequencer leadership');
      this.leading = false;
      this.state = undefined;
      return 0;
    }
    if (!this.leading) this.logger.info('sequencing: this instance leads');
    this.leading = true;
    this.state ??= await this.load();
    const state = this.state;
    const pending = await this.storage.pending(this.options.maxBatch);
    this.metrics?.poolSize.set(pending.length);
    const seen = new Set<string>();
    const fresh = pending.filter((p) => {
      const hex = p.key.toString('hex');
      if (seen.has(hex)) return false;
      seen.add(hex);
      return true;
    });
    const now = this.clock.now().getTime();
    const stale = !state.head || now - state.head.timestamp >= this.options.checkpointRefreshMs;
    if (pending.length === 0 && !stale) return 0;

    const timestamp = Math.max(now, (state.head?.timestamp ?? 0) + 1);
    const edge = state.edge.map((l) => [...l]);
    const dataEdge = [...state.dataEdge];
    const tiles = new Map<string, TileWrite>();
    const dataTiles = new Map<number, Buffer>();
    let size = state.size;
    const entries: LogEntry[] = [];
    const hashes: Buffer[] = [];
    const issuers = new Map<string, Buffer>();
    for (const p of fresh) {
      const e: LogEntry = {
        timestamp,
        isPrecert: p.isPrecert,
        signedEntry: p.signedEntry,
        issuerKeyHash: p.issuerKeyHash,
        preCertificate: p.preCertificate,
        chain: p.issuers.map(fingerprint),
        index: size,
      };
      for (const der of p.issuers) issuers.set(fingerprint(der).toString('hex'), der);
      const h = leafHash(e);
      entries.push(e);
      hashes.push(h);
      // Data tile.
      dataEdge.push(tileLeaf(e));
      if (dataEdge.length === TILE_WIDTH) {
        dataTiles.set(Math.floor(size / TILE_WIDTH), Buffer.concat(dataEdge));
        dataEdge.length = 0;
      }
      // Hash tiles, carrying full tiles up.
      let carry: Buffer | undefined = h;
      for (let level = 0; carry && level < LEVELS; level++) {
        const row = edge[level]!;
        row.push(carry);
        carry = undefined;
        if (row.length === TILE_WIDTH) {
          const index = Math.floor(size / TILE_WIDTH ** (level + 1));
          const data = Buffer.concat(row);
          tiles.set(`${level}/${index}`, { level, index, data });
          carry = perfectRoot(data, 0, TILE_WIDTH);
          row.length = 0;
        }
      }
      size++;
    }
    for (let level = 0; level < LEVELS; level++) {
      const row = edge[level]!;
      if (row.length > 0) {
        const index = Math.floor(size / TILE_WIDTH ** (level + 1));
        tiles.set(`${level}/${index}`, { level, index, data: Buffer.concat(row) });
      }
    }
    let partialData: Buffer | undefined;
    if (dataEdge.length > 0 && entries.length > 0) {
      partialData = Buffer.concat(dataEdge);
      dataTiles.set(Math.floor(size / TILE_WIDTH), partialData);
    }
    // The data tile that was partial before this batch: its first bytes are stored already.
    const edgeTile = Math.floor(state.size / TILE_WIDTH);
    const edgeBytes = state.dataEdge.reduce((n, b) => n + b.length, 0);

    const signatures = await Promise.all(
      entries.map((e) => digitallySign(this.key, sctSignatureInput(e))),
    );
    const records: SequencedRecord[] = entries.map((e, i) => ({
      key: fresh[i]!.key,
      leafHash: hashes[i]!,
      index: e.index,
      timestamp,
      signature: signatures[i]!,
    }));
    const root = rootFromEdge(
      size,
      edge.map((l) => Buffer.concat(l)),
    );
    const head = await signTreeHead(this.key, size, root, timestamp);
    try {
      await this.storage.commit({
        previous: state.head,
        treeHead: head,
        tiles: [...tiles.values()],
        dataTiles: [...dataTiles.entries()].map(([index, data]) => ({
          index,
          data,
          appendFrom: index === edgeTile ? edgeBytes : 0,
          complete: data !== partialData,
        })),
        issuers: [...issuers.values()],
        records,
        done: pending.map((p) => p.key),
      });
    } catch (err) {
      this.state = undefined;
      if (err instanceof CommitConflictError) {
        this.logger.warn('another sequencer committed first; reloading');
        return 0;
      }
      throw err;
    }
    this.state = { head, size, edge, dataEdge };
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics?.batchSize.observe(entries.length);
    this.metrics?.batchSeconds.observe(seconds);
    this.metrics?.treeSize.set(size);
    this.onCommitted(records, head);
    return entries.length;
  }
}
