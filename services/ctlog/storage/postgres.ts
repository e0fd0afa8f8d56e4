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

  async enqueue(entry: PendingEntry): Promise<void> {
    await this.q(
      'INSERT INTO ctlog_pending (key, body) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING',
      [entry.key, encodePending(entry)],
    );
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

  dataTile(index: number): Promise<Buffer | undefined> {
    return this.tile(DATA_LEVEL, index);
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
        await this.leader.query('SELECT 1');
        return true;
      }
      const res = await this.leader.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_lock($1) AS ok',
        [LOCK_ID],
      );
      this.leading = res.rows[0]?.ok === true;
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
      const res = await c.query<{ body: Buffer }>(
        'SELECT body FROM ctlog_pending ORDER BY id LIMIT $1',
        [limit],
      );
      return res.rows.map((r) => decodePending(r.body));
    } catch (err) {
      this.dropLeader();
      return unavailable(err);
    }
  }

  async commit(commit: Commit): Promise<void> {
    const c = this.leader;
    if (!c || !this.leading) throw new CommitConflictError();
    const head = commit.treeHead;
    try {
      await c.query('BEGIN');
      const headRes = commit.previous
        ? await c.query(
            'UPDATE ctlog_head SET size = $1, ts = $2, body = $3 WHERE id = 1 AND ts = $4',
            [head.size, head.timestamp, encodeTreeHead(head), commit.previous.timestamp],
          )
        : await c.query(
            'INSERT INTO ctlog_head (id, size, ts, body) VALUES (1, $1, $2, $3) ON CONFLICT DO NOTHING',
            [head.size, head.timestamp, encodeTreeHead(head)],
          );
      if (headRes.rowCount !== 1) throw new CommitConflictError();
      const tiles = [
        ...commit.tiles,
        ...commit.dataTiles.map((t) => ({ level: DATA_LEVEL, index: t.index, data: t.data })),
      ];
      if (tiles.length > 0)
        await c.query(
          `INSERT INTO ctlog_tiles (level, idx, data)
           SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
           ON CONFLICT (level, idx) DO UPDATE SET data = EXCLUDED.data`,
          [tiles.map((t) => t.level), tiles.map((t) => t.index), tiles.map((t) => t.data)],
        );
      if (commit.issuers.length > 0)
        await c.query(
          `INSERT INTO ctlog_issuers (fingerprint, der)
           SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT DO NOTHING`,
          [commit.issuers.map(fingerprint), commit.issuers],
        );
      const r = commit.records;
      if (r.length > 0)
        await c.query(
          `INSERT INTO ctlog_sequenced (key, leaf_hash, idx, ts, signature)
           SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bytea[])`,
          [
            r.map((x) => x.key),
            r.map((x) => x.leafHash),
            r.map((x) => x.index),
            r.map((x) => x.timestamp),
            r.map((x) => x.signature),
          ],
        );
      if (commit.done.length > 0)
        await c.query('DELETE FROM ctlog_pending WHERE key = ANY($1::bytea[])', [commit.done]);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      if (err instanceof CommitConflictError) throw err;
      // The outcome of a COMMIT that failed in flight is unknown; a fresh start re-reads it.
      this.dropLeader();
      unavailable(err);
    }
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
