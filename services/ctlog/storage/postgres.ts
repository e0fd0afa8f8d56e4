import pg from 'pg';
import type { Logger } from '../../common/logger';
import { type SignedTreeHead, decodeTreeHead, encodeTreeHead } from '../checkpoint';
import { fingerprint } from '../entry';
import {
  CommitConflictError,
  StorageUnavailableError,
  decodePending,
  encodePending,
  type Commit,
  type LogStorage,
  type PendingEntry,
  type SequencedRecord,
} from './storage';

/**
 * The PostgreSQL backend, for any number of replicas. Front ends use a pool; the sequencer
 * holds one dedicated connection with a session advisory lock (the leader election: the lock
 * dies with the connection, so when the leader's process dies PostgreSQL frees it at once and
 * another replica's next attempt, within one sequencing interval, takes over). Each batch is
 * one transaction on that connection, fenced on the stored tree head's timestamp.
 *
 * Client: node-postgres (`pg`), the de-facto PostgreSQL client for Node: pure JavaScript (no
 * native build), maintained for a decade, binary-safe bytea and parameter arrays, and a pool.
 */

const LOCK_ID = 6962_0001;
const DATA_LEVEL = -1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ctlog_settings (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ctlog_pending (
  id bigserial PRIMARY KEY, key bytea NOT NULL UNIQUE, body bytea NOT NULL,
  created timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS ctlog_sequenced (
  key bytea PRIMARY KEY, leaf_hash bytea NOT NULL, idx bigint NOT NULL UNIQUE,
  ts bigint NOT NULL, signature bytea NOT NULL);
CREATE INDEX IF NOT EXISTS ctlog_sequenced_leaf_hash ON ctlog_sequenced (leaf_hash);
CREATE TABLE IF NOT EXISTS ctlog_tiles (
  level smallint NOT NULL, idx bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (level, idx));
CREATE TABLE IF NOT EXISTS ctlog_data_chunks (
  idx bigint NOT NULL, start int NOT NULL, data bytea NOT NULL, PRIMARY KEY (idx, start));
CREATE TABLE IF NOT EXISTS ctlog_issuers (fingerprint bytea PRIMARY KEY, der bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ctlog_head (
  id int PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, ts bigint NOT NULL, body bytea NOT NULL);
`;

function unavailable(err: unknown): never {
  if (err instanceof CommitConflictError) throw err;
  const e = err as { code?: string; message?: string };
  throw new StorageUnavailableError(`postgres: ${e.code ?? ''} ${e.message ?? String(err)}`.trim());
}

function toRecord(row: {
  key: Buffer;
  leaf_hash: Buffer;
  idx: string;
  ts: string;
  signature: Buffer;
}): SequencedRecord {
  return {
    key: row.key,
    leafHash: row.leaf_hash,
    index: Number(row.idx),
    timestamp: Number(row.ts),
    signature: row.signature,
  };
}

export class PostgresStorage implements LogStorage {
  readonly kind = 'postgres' as const;
  private leader: pg.Client | undefined;
  private leading = false;
  private closed = false;
  private pendingCalls = 0;
  /** This instance's submissions while it leads, by hex key, oldest first (see enqueue). */
  private readonly local = new Map<string, PendingEntry>();
  private releasing = false;
  private checkedAt = 0;

  private constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  static async open(url: string, logger: Logger, poolSize = 10): Promise<PostgresStorage> {
    const pool = new pg.Pool({
      connectionString: url,
      max: poolSize,
      connectionTimeoutMillis: 2000,
      keepAlive: true,
    });
    pool.on('error', (err) => logger.warn({ err: err.message }, 'postgres pool connection failed'));
    const s = new PostgresStorage(url, pool, logger);
    try {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID + 1]);
        await c.query(SCHEMA);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        c.release();
      }
    } catch (err) {
      await pool.end();
      throw err;
    }
    return s;
  }

  /** One statement on a one-off connection (tests and tools: CREATE DATABASE). */
  static async adminQuery(url: string, text: string): Promise<void> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  }

  private async q<R extends pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      return unavailable(err);
    }
  }

  async setting(name: string, value: () => Buffer): Promise<Buffer> {
    const existing = await this.q<{ value: Buffer }>(
      'SELECT value FROM ctlog_settings WHERE name = $1',
      [name],
    );
    if (existing.rows[0]) return existing.rows[0].value;
    await this.q(
      'INSERT INTO ctlog_settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      [name, value()],
    );
    const stored = await this.q<{ value: Buffer }>(
      'SELECT value FROM ctlog_settings WHERE name = $1',
      [name],
    );
    return stored.rows[0]!.value;
  }

  async sequenced(keys: readonly Buffer[]): Promise<Map<string, SequencedRecord>> {
    const out = new Map<string, SequencedRecord>();
    if (keys.length === 0) return out;
    const res = await this.q<{
      key: Buffer;
      leaf_hash: Buffer;
      idx: string;
      ts: string;
      signature: Buffer;
    }>(
      'SELECT key, leaf_hash, idx, ts, signature FROM ctlog_sequenced WHERE key = ANY($1::bytea[])',
      [keys],
    );
    for (const row of res.rows) out.set(row.key.toString('hex'), toRecord(row));
    return out;
  }

  /**
   * While this instance leads the sequencing, its own submissions stay in memory (`local`)
   * until the commit that sequences them: an SCT leaves only after that commit, so a crash
   * before it loses nothing that was promised, and each entry is written once (in the
   * commit) instead of also into and out of ctlog_pending. Other replicas' submissions, and
   * this one's while it does not lead, go to ctlog_pending; when this instance stops leading,
   * what it kept is written there for the next leader.
   */
  async enqueue(entries: readonly PendingEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (this.leader && this.leading) {
      for (const e of entries) {
        const hex = e.key.toString('hex');
        if (!this.local.has(hex)) this.local.set(hex, e);
      }
      return;
    }
    await this.insertPending(entries);
  }

  /** One statement (one round trip, one commit) for a group of submissions. */
  private async insertPending(entries: readonly PendingEntry[]): Promise<void> {
    await this.q(
      `INSERT INTO ctlog_pending (key, body)
       SELECT k, b FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS t(k, b, n) ORDER BY n
       ON CONFLICT (key) DO NOTHING`,
      [entries.map((e) => e.key), entries.map((e) => encodePending(e))],
    );
  }

  /** Hands what this instance kept while it led to ctlog_pending (retried at every lead()). */
  private async releaseLocal(): Promise<void> {
    if (this.local.size === 0 || this.releasing || this.closed) return;
    this.releasing = true;
    const entries = [...this.local.values()];
    try {
      await this.insertPending(entries);
      // Entries kept again meanwhile (leading once more) stay; the rest is in the table.
      if (!this.leading) for (const e of entries) this.local.delete(e.key.toString('hex'));
    } catch (err) {
      this.logger.warn(
        { err: (err as Error).message, entries: entries.length },
        'could not hand queued submissions to the table; trying again',
      );
    } finally {
      this.releasing = false;
    }
  }

  async indexOfLeafHash(hash: Buffer): Promise<number | undefined> {
    const res = await this.q<{ idx: string }>(
      'SELECT idx FROM ctlog_sequenced WHERE leaf_hash = $1 ORDER BY idx LIMIT 1',
      [hash],
    );
    return res.rows[0] ? Number(res.rows[0].idx) : undefined;
  }

  async treeHead(): Promise<SignedTreeHead | undefined> {
    const res = await this.q<{ body: Buffer }>('SELECT body FROM ctlog_head WHERE id = 1');
    return res.rows[0] ? decodeTreeHead(res.rows[0].body) : undefined;
  }

  async tile(level: number, index: number): Promise<Buffer | undefined> {
    const res = await this.q<{ data: Buffer }>(
      'SELECT data FROM ctlog_tiles WHERE level = $1 AND idx = $2',
      [level, index],
    );
    return res.rows[0]?.data;
  }

  /**
   * A data tile is its row in ctlog_tiles (written whole: a complete tile, or an older
   * partial one) followed by the chunks that batches appended since, in order.
   */
  async dataTile(index: number): Promise<Buffer | undefined> {
    const res = await this.q<{ whole: Buffer | null; appended: Buffer | null }>(
      `SELECT (SELECT data FROM ctlog_tiles WHERE level = $1 AND idx = $2) AS whole,
              (SELECT string_agg(data, ''::bytea ORDER BY start) FROM ctlog_data_chunks
                WHERE idx = $2) AS appended`,
      [DATA_LEVEL, index],
    );
    const { whole, appended } = res.rows[0] ?? { whole: null, appended: null };
    if (!whole && !appended) return undefined;
    if (!appended) return whole!;
    return whole ? Buffer.concat([whole, appended]) : appended;
  }

  async issuer(fp: Buffer): Promise<Buffer | undefined> {
    const res = await this.q<{ der: Buffer }>(
      'SELECT der FROM ctlog_issuers WHERE fingerprint = $1',
      [fp],
    );
    return res.rows[0]?.der;
  }

  private dropLeader(): void {
    const c = this.leader;
    this.leader = undefined;
    this.leading = false;
    if (c) void c.end().catch(() => undefined);
    void this.releaseLocal();
  }

  async lead(): Promise<boolean> {
    if (this.closed) return false;
    try {
      if (!this.leader) {
        const c = new pg.Client({
          connectionString: this.url,
          connectionTimeoutMillis: 2000,
          keepAlive: true,
        });
        c.on('error', (err) => {
          this.logger.warn({ err: err.message }, 'sequencer connection lost');
          if (this.leader === c) this.dropLeader();
        });
        this.leader = c;
        await c.connect();
      }
      if (this.leading) {
        // The lock lives as long as the connection; a dead connection fails the next
        // query. Commits are fenced on the tree head in any case.
        if (Date.now() - this.checkedAt > 1000) {
          await this.leader.query('SELECT 1');
          this.checkedAt = Date.now();
        }
        return true;
      }
      const res = await this.leader.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_lock($1) AS ok',
        [LOCK_ID],
      );
      this.leading = res.rows[0]?.ok === true;
      if (!this.leading) await this.releaseLocal();
      return this.leading;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'sequencer leadership check failed');
      this.dropLeader();
      return false;
    }
  }

  async pending(limit: number): Promise<PendingEntry[]> {
    const c = this.leader;
    if (!c || !this.leading) return [];
    try {
      // What this instance kept, but what is sequenced already (a twin of a submission
      // sequenced meanwhile): the commit would refuse a key twice.
      let mine = [...this.local.values()].slice(0, limit);
      if (mine.length > 0) {
        const done = await c.query<{ key: Buffer }>(
          'SELECT key FROM ctlog_sequenced WHERE key = ANY($1::bytea[])',
          [mine.map((e) => e.key)],
        );
        if (done.rows.length > 0) {
          const sequenced = new Set(done.rows.map((r) => r.key.toString('hex')));
          for (const hex of sequenced) this.local.delete(hex);
          mine = mine.filter((e) => !sequenced.has(e.key.toString('hex')));
        }
      }
      if (mine.length >= limit) return mine;
      // A submission queued while its twin was being sequenced is skipped here, and its
      // row removed now and then.
      if (++this.pendingCalls % 100 === 0)
        await c.query('DELETE FROM ctlog_pending p USING ctlog_sequenced s WHERE s.key = p.key');
      const res = await c.query<{ body: Buffer }>(
        `SELECT p.body FROM ctlog_pending p
         WHERE NOT EXISTS (SELECT 1 FROM ctlog_sequenced s WHERE s.key = p.key)
         ORDER BY p.id LIMIT $1`,
        [limit - mine.length],
      );
      return [...mine, ...res.rows.map((r) => decodePending(r.body))];
    } catch (err) {
      this.dropLeader();
      return unavailable(err);
    }
  }

  /**
   * One statement, so one round trip and one implicit transaction: the tree head moves only
   * if it is still the one the batch was built on, and every other write of the batch is
   * gated on that move (an unmatched head makes the whole batch write nothing).
   */
  async commit(commit: Commit): Promise<void> {
    const c = this.leader;
    if (!c || !this.leading) throw new CommitConflictError();
    const head = commit.treeHead;
    // A partial data tile gets only this batch's bytes, as a chunk (rewriting the whole tile
    // every batch cost more than everything else in a commit); a complete one is written
    // whole, once, and its chunks go.
    const appended = commit.dataTiles.filter(
      (t) => !t.complete && t.appendFrom !== undefined && t.data.length > t.appendFrom,
    );
    const whole = commit.dataTiles.filter((t) => t.complete || t.appendFrom === undefined);
    const tiles = [
      ...commit.tiles,
      ...whole.map((t) => ({ level: DATA_LEVEL, index: t.index, data: t.data })),
    ];
    const r = commit.records;
    const moveHead = commit.previous
      ? 'UPDATE ctlog_head SET size = $1, ts = $2, body = $3 WHERE id = 1 AND ts = $4 RETURNING 1'
      : `INSERT INTO ctlog_head (id, size, ts, body) SELECT 1, $1, $2, $3 WHERE $4::bigint IS NULL
         ON CONFLICT DO NOTHING RETURNING 1`;
    const text = `
      WITH head AS (${moveHead}),
      tiles AS (
        INSERT INTO ctlog_tiles (level, idx, data)
        SELECT * FROM unnest($5::smallint[], $6::bigint[], $7::bytea[]) WHERE EXISTS (SELECT 1 FROM head)
        ON CONFLICT (level, idx) DO UPDATE SET data = EXCLUDED.data),
      issuers AS (
        INSERT INTO ctlog_issuers (fingerprint, der)
        SELECT * FROM unnest($8::bytea[], $9::bytea[]) WHERE EXISTS (SELECT 1 FROM head)
        ON CONFLICT DO NOTHING),
      sequenced AS (
        INSERT INTO ctlog_sequenced (key, leaf_hash, idx, ts, signature)
        SELECT * FROM unnest($10::bytea[], $11::bytea[], $12::bigint[], $13::bigint[], $14::bytea[])
        WHERE EXISTS (SELECT 1 FROM head)),
      done AS (
        DELETE FROM ctlog_pending WHERE key = ANY($15::bytea[]) AND EXISTS (SELECT 1 FROM head)),
      chunks AS (
        INSERT INTO ctlog_data_chunks (idx, start, data)
        SELECT * FROM unnest($16::bigint[], $17::int[], $18::bytea[]) WHERE EXISTS (SELECT 1 FROM head)),
      settled AS (
        DELETE FROM ctlog_data_chunks WHERE idx = ANY($19::bigint[]) AND EXISTS (SELECT 1 FROM head))
      SELECT count(*)::int AS moved FROM head`;
    let moved: number;
    try {
      const res = await c.query<{ moved: number }>(text, [
        head.size,
        head.timestamp,
        encodeTreeHead(head),
        commit.previous?.timestamp ?? null,
        tiles.map((t) => t.level),
        tiles.map((t) => t.index),
        tiles.map((t) => t.data),
        commit.issuers.map(fingerprint),
        commit.issuers,
        r.map((x) => x.key),
        r.map((x) => x.leafHash),
        r.map((x) => x.index),
        r.map((x) => x.timestamp),
        r.map((x) => x.signature),
        commit.done,
        appended.map((t) => t.index),
        appended.map((t) => t.appendFrom!),
        appended.map((t) => t.data.subarray(t.appendFrom!)),
        whole.map((t) => t.index),
      ]);
      moved = res.rows[0]?.moved ?? 0;
    } catch (err) {
      // The outcome of a commit that failed in flight is unknown; a fresh start re-reads it.
      this.dropLeader();
      unavailable(err);
    }
    if (moved !== 1) throw new CommitConflictError();
    for (const key of commit.done) this.local.delete(key.toString('hex'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const c = this.leader;
    this.leader = undefined;
    this.leading = false;
    if (c) await c.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}
