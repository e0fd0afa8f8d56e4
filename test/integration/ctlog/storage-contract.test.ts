import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fingerprint } from '../../../services/ctlog/entry';
import { silentLogger } from '../../../services/common/logger';
import type { SignedTreeHead } from '../../../services/ctlog/checkpoint';
import { DirectoryLockedError, DirectoryStorage } from '../../../services/ctlog/storage/directory';
import { PostgresStorage } from '../../../services/ctlog/storage/postgres';
import {
  CommitConflictError,
  type Commit,
  type LogStorage,
  type PendingEntry,
} from '../../../services/ctlog/storage/storage';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../../helpers/postgres';

/**
 * One storage contract, two backends: a directory and a real PostgreSQL server. Whatever the
 * sequencer and the front ends rely on is asserted here for both.
 */

interface Backend {
  readonly name: string;
  /** A fresh, empty store. */
  fresh(): Promise<{ open: () => Promise<LogStorage>; cleanup: () => Promise<void> }>;
}

let pg: PostgresProcess | undefined;
let dbCounter = 0;

const backends: Backend[] = [
  {
    name: 'directory',
    fresh: () => {
      const dir = mkdtempSync(join(tmpdir(), 'mayfly-ctlog-contract-'));
      return Promise.resolve({
        open: () => DirectoryStorage.open(dir),
        cleanup: () => {
          rmSync(dir, { recursive: true, force: true });
          return Promise.resolve();
        },
      });
    },
  },
  {
    name: 'postgres',
    fresh: async () => {
      pg ??= await startPostgres();
      const db = `contract_${process.pid}_${++dbCounter}`;
      await PostgresStorage.adminQuery(pg.url, `CREATE DATABASE ${db}`);
      const url = pg.url.replace(/\/postgres$/, `/${db}`);
      return {
        open: () => PostgresStorage.open(url, silentLogger),
        cleanup: () => Promise.resolve(),
      };
    },
  },
];

afterAll(stopAllPostgres);

function pending(): PendingEntry {
  return {
    key: randomBytes(32),
    isPrecert: false,
    signedEntry: randomBytes(100),
    issuers: [randomBytes(50), randomBytes(60)],
  };
}

function head(size: number, timestamp: number): SignedTreeHead {
  return { size, root: randomBytes(32), timestamp, signature: randomBytes(72) };
}

function commitOf(
  previous: SignedTreeHead | undefined,
  size: number,
  done: PendingEntry[],
): Commit {
  const treeHead = head(size, (previous?.timestamp ?? 1000) + 1);
  const from = previous?.size ?? 0;
  return {
    previous,
    treeHead,
    tiles: [{ level: 0, index: 0, data: randomBytes(32 * size) }],
    dataTiles: [{ index: 0, data: randomBytes(10 * size) }],
    issuers: done.flatMap((d) => d.issuers),
    records: done.map((d, i) => ({
      key: d.key,
      leafHash: randomBytes(32),
      index: from + i,
      timestamp: treeHead.timestamp,
      signature: randomBytes(71),
    })),
    done: done.map((d) => d.key),
  };
}

describe.each(backends)('log storage contract: $name', (backend) => {
  let store: LogStorage;
  let reopen: () => Promise<LogStorage>;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    const f = await backend.fresh();
    reopen = f.open;
    cleanup = f.cleanup;
    store = await reopen();
  }, 60_000);

  afterEach(async () => {
    await store.close();
    await cleanup();
  });

  it('a new store is empty', async () => {
    expect(await store.treeHead()).toBeUndefined();
    expect(await store.tile(0, 0)).toBeUndefined();
    expect(await store.dataTile(0)).toBeUndefined();
    expect(await store.pending(10)).toEqual([]);
    expect((await store.sequenced([randomBytes(32)])).size).toBe(0);
  });

  it('keeps the first value of a setting, across a reopen', async () => {
    const a = await store.setting('dev-key', () => Buffer.from('first'));
    const b = await store.setting('dev-key', () => Buffer.from('second'));
    expect(a.toString()).toBe('first');
    expect(b.toString()).toBe('first');
    await store.close();
    store = await reopen();
    expect((await store.setting('dev-key', () => Buffer.from('third'))).toString()).toBe('first');
  });

  it('queues a submission once, oldest first', async () => {
    const a = pending();
    const b = pending();
    await store.enqueue([a]);
    await store.enqueue([b]);
    await store.enqueue([a]);
    expect(await store.lead()).toBe(true);
    const got = await store.pending(10);
    expect(got.map((p) => p.key.toString('hex'))).toEqual([a, b].map((p) => p.key.toString('hex')));
    expect(got[0]).toEqual(a);
    expect((await store.pending(1)).length).toBe(1);
  });

  it('queues a group in one call: in its order, each key once, what was queued left as it was', async () => {
    const [a, b, c] = [pending(), pending(), pending()];
    await store.enqueue([a]);
    await store.enqueue([b, c, b, a]);
    await store.enqueue([]);
    expect(await store.lead()).toBe(true);
    const got = await store.pending(10);
    expect(got.map((p) => p.key.toString('hex'))).toEqual(
      [a, b, c].map((p) => p.key.toString('hex')),
    );
    expect(got).toEqual([a, b, c]);
  });

  it('a data tile grows by appends, batch by batch, and is whole once complete', async () => {
    expect(await store.lead()).toBe(true);
    const [a, b, c, d] = [randomBytes(20), randomBytes(30), randomBytes(40), randomBytes(15)];
    let previous: SignedTreeHead | undefined;
    const step = async (size: number, dataTiles: Commit['dataTiles']) => {
      const commit = { ...commitOf(previous, size, []), dataTiles };
      await store.commit(commit);
      previous = commit.treeHead;
    };
    await step(2, [{ index: 0, data: a, appendFrom: 0, complete: false }]);
    expect(await store.dataTile(0)).toEqual(a);
    await step(5, [{ index: 0, data: Buffer.concat([a, b]), appendFrom: a.length }]);
    expect(await store.dataTile(0)).toEqual(Buffer.concat([a, b]));
    // Nothing new (a checkpoint refresh): unchanged.
    await step(5, [{ index: 0, data: Buffer.concat([a, b]), appendFrom: a.length + b.length }]);
    await store.close();
    store = await reopen();
    expect(await store.lead()).toBe(true);
    expect(await store.dataTile(0)).toEqual(Buffer.concat([a, b]));
    await step(257, [
      { index: 0, data: Buffer.concat([a, b, c]), appendFrom: a.length + b.length, complete: true },
      { index: 1, data: d, appendFrom: 0, complete: false },
    ]);
    expect(await store.dataTile(0)).toEqual(Buffer.concat([a, b, c]));
    expect(await store.dataTile(1)).toEqual(d);
    // A tile written whole without appendFrom (as older versions did) still takes appends.
    await step(258, [{ index: 1, data: d }]);
    await step(259, [{ index: 1, data: Buffer.concat([d, a]), appendFrom: d.length }]);
    expect(await store.dataTile(1)).toEqual(Buffer.concat([d, a]));
  });

  it('a commit publishes everything at once and is still there after a reopen', async () => {
    const a = pending();
    const b = pending();
    await store.enqueue([a]);
    await store.enqueue([b]);
    expect(await store.lead()).toBe(true);
    const c = commitOf(undefined, 2, [a, b]);
    await store.commit(c);
    const check = async () => {
      expect(await store.treeHead()).toEqual(c.treeHead);
      expect(await store.tile(0, 0)).toEqual(c.tiles[0]!.data);
      expect(await store.dataTile(0)).toEqual(c.dataTiles[0]!.data);
      for (const der of c.issuers) {
        expect(await store.issuer(fingerprint(der))).toEqual(der);
      }
      const found = await store.sequenced([a.key, b.key, randomBytes(32)]);
      expect(found.size).toBe(2);
      expect(found.get(a.key.toString('hex'))).toEqual(c.records[0]);
      expect(await store.indexOfLeafHash(c.records[1]!.leafHash)).toBe(1);
      expect(await store.indexOfLeafHash(randomBytes(32))).toBeUndefined();
    };
    await check();
    expect(await store.pending(10)).toEqual([]);
    await store.close();
    store = await reopen();
    await check();
  });

  it('never hands the sequencer a submission already sequenced', async () => {
    expect(await store.lead()).toBe(true);
    const a = pending();
    await store.commit(commitOf(undefined, 1, [a]));
    // The same submission queued again (a front end raced the commit).
    await store.enqueue([a]);
    const b = pending();
    await store.enqueue([b]);
    expect((await store.pending(10)).map((p) => p.key.toString('hex'))).toEqual([
      b.key.toString('hex'),
    ]);
  });

  it("keeps the leader's own submissions for its sequencer: in order, once, gone with the commit that sequences them", async () => {
    expect(await store.lead()).toBe(true);
    const [a, b, c] = [pending(), pending(), pending()];
    await store.enqueue([a, b]);
    await store.enqueue([a]);
    const hex = (ps: readonly PendingEntry[]) => ps.map((p) => p.key.toString('hex'));
    expect(hex(await store.pending(10))).toEqual(hex([a, b]));
    expect(hex(await store.pending(1))).toEqual(hex([a]));
    const c1 = commitOf(undefined, 1, [a]);
    await store.commit(c1);
    await store.enqueue([c]);
    expect(hex(await store.pending(10))).toEqual(hex([b, c]));
    await store.commit(commitOf(c1.treeHead, 3, [b, c]));
    expect(await store.pending(10)).toEqual([]);
  });

  it('a partial tile is overwritten as it grows', async () => {
    expect(await store.lead()).toBe(true);
    const c1 = commitOf(undefined, 1, [pending()]);
    await store.commit(c1);
    const c2 = commitOf(c1.treeHead, 3, [pending(), pending()]);
    await store.commit(c2);
    expect(await store.tile(0, 0)).toEqual(c2.tiles[0]!.data);
    expect((await store.treeHead())!.size).toBe(3);
  });

  it('refuses a commit built on a tree head that is no longer current, and changes nothing', async () => {
    expect(await store.lead()).toBe(true);
    const c1 = commitOf(undefined, 1, [pending()]);
    await store.commit(c1);
    const stale = commitOf(undefined, 1, [pending()]);
    await expect(store.commit(stale)).rejects.toBeInstanceOf(CommitConflictError);
    const c2 = commitOf(c1.treeHead, 2, [pending()]);
    await store.commit(c2);
    const late = commitOf(c1.treeHead, 2, [pending()]);
    await expect(store.commit(late)).rejects.toBeInstanceOf(CommitConflictError);
    expect(await store.treeHead()).toEqual(c2.treeHead);
    expect((await store.sequenced([late.records[0]!.key])).size).toBe(0);
    expect(await store.tile(0, 0)).toEqual(c2.tiles[0]!.data);
  });

  it('lets only one instance sequence', async () => {
    expect(await store.lead()).toBe(true);
    if (backend.name === 'directory') {
      await expect(reopen()).rejects.toBeInstanceOf(DirectoryLockedError);
      return;
    }
    const other = await reopen();
    try {
      expect(await other.lead()).toBe(false);
      expect(await other.pending(10)).toEqual([]);
      await expect(other.commit(commitOf(undefined, 1, [pending()]))).rejects.toBeInstanceOf(
        CommitConflictError,
      );
      await store.close();
      expect(await other.lead()).toBe(true);
    } finally {
      await other.close();
    }
    store = await reopen();
  });
});

describe('log storage on PostgreSQL: a leader that loses its lock', () => {
  it('hands the submissions it kept in memory to the next leader', async () => {
    pg ??= await startPostgres();
    const db = `contract_${process.pid}_${++dbCounter}`;
    await PostgresStorage.adminQuery(pg.url, `CREATE DATABASE ${db}`);
    const url = pg.url.replace(/\/postgres$/, `/${db}`);
    const first = await PostgresStorage.open(url, silentLogger);
    const second = await PostgresStorage.open(url, silentLogger);
    try {
      expect(await first.lead()).toBe(true);
      const [a, b] = [pending(), pending()];
      await first.enqueue([a, b]);
      // Kept in memory by the leader: nobody else sees them yet.
      expect(await second.lead()).toBe(false);
      // The leader's session ends (PostgreSQL restarted, a network cut): its lock goes with
      // it, and what it kept must reach the table for whoever leads next.
      await PostgresStorage.adminQuery(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
      );
      let got: PendingEntry[] = [];
      for (let i = 0; i < 100 && got.length < 2; i++) {
        await new Promise((r) => setTimeout(r, 50));
        if (await second.lead()) got = await second.pending(10);
      }
      expect(got.map((p) => p.key.toString('hex')).sort()).toEqual(
        [a, b].map((p) => p.key.toString('hex')).sort(),
      );
      expect(await first.lead()).toBe(false);
    } finally {
      await first.close();
      await second.close();
    }
  });
});
