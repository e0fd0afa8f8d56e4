import { createHash } from 'node:crypto';
import { b64, makeCert, makeHierarchy } from '../../helpers/ct-certs';
import { freshDatabase, postJson, startTestCtlog, type TestCtlog } from '../../helpers/ctlog';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../../helpers/postgres';
import { until } from '../../helpers/wait';

/**
 * The static-ct-api read path (services/ctlog/read-path.ts: node:http before Express, answers
 * encoded once and kept) on a real PostgreSQL with several log instances on one database:
 * A sequences; B and C only serve, B re-reading the tree head once its 150 ms TTL has passed,
 * C keeping it for ten minutes. The lag bound is checked the way it is built: a request that
 * starts more than the TTL after a commit has finished is answered from a head read after that
 * commit, however slow the machine (a slower machine only makes the request later).
 */

interface Sct {
  timestamp: number;
  extensions: string;
}

/** The leaf_index of an SCT (its one extension: type 0, length 5, uint40). */
function leafIndex(sct: Sct): number {
  const e = Buffer.from(sct.extensions, 'base64');
  expect(e.subarray(0, 3)).toEqual(Buffer.from([0, 0, 5]));
  return e.readUIntBE(3, 5);
}

function checkpointSize(note: string): number {
  const lines = note.split('\n');
  expect(lines[0]).toBe('ctlog.test/2026');
  return Number(lines[1]);
}

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  return {
    status: res.status,
    body: Buffer.from(await res.arrayBuffer()),
    type: res.headers.get('content-type'),
    cache: res.headers.get('cache-control'),
    length: res.headers.get('content-length'),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ctlog read path on PostgreSQL, one sequencer and serving replicas', () => {
  const TTL_B = 150;
  let pg: PostgresProcess;
  let db: string;
  let a: TestCtlog;
  let b: TestCtlog;
  let c: TestCtlog;
  const started: TestCtlog[] = [];
  const { root, intermediate } = makeHierarchy();
  const issuerPath = `/issuer/${createHash('sha256').update(intermediate.der).digest('hex')}`;

  const start = async (env: Record<string, string> = {}) => {
    const log = await startTestCtlog({ roots: [root], databaseUrl: db, env });
    started.push(log);
    return log;
  };
  const addChain = async (log: TestCtlog, cn?: string) => {
    const r = await postJson(`${log.url}/ct/v1/add-chain`, {
      chain: [
        b64(makeCert({ issuer: intermediate, ...(cn ? { cn } : {}) }).der),
        b64(intermediate.der),
      ],
    });
    expect(r.status).toBe(200);
    return r.json as Sct;
  };
  const checkpoint = async (log: TestCtlog) => (await get(`${log.url}/checkpoint`)).body.toString();

  beforeAll(async () => {
    pg = await startPostgres();
    db = await freshDatabase(pg);
    a = await start();
    await until(() => a.app.sequencer.leading, 'A to lead');
    b = await start({ MAYFLY_CTLOG_HEAD_TTL_MS: String(TTL_B) });
    c = await start({ MAYFLY_CTLOG_HEAD_TTL_MS: '600000' });
    await addChain(a);
  }, 60_000);

  afterAll(async () => {
    for (const log of started.reverse()) await log.stop().catch(() => undefined);
    await stopAllPostgres();
  });

  it('a replica that does not sequence serves each new checkpoint once its TTL has passed', async () => {
    expect(b.app.sequencer.leading).toBe(false);
    expect(c.app.sequencer.leading).toBe(false);
    const frozen = await checkpoint(c);
    for (let round = 0; round < 3; round++) {
      // The SCT leaves only after the commit, and the sequencing replica learns the head at
      // its commit: A serves it at once.
      const index = leafIndex(await addChain(a, `round-${round}`));
      const committedBy = Date.now();
      expect(checkpointSize(await checkpoint(a))).toBeGreaterThan(index);
      while (Date.now() <= committedBy + TTL_B) await sleep(TTL_B / 3);
      expect(checkpointSize(await checkpoint(b))).toBeGreaterThan(index);
    }
    // C's head is kept for ten minutes: it still serves, byte for byte, what it served before
    // the three commits. So B's answers above came from its TTL, not from reading every time.
    expect(await checkpoint(c)).toBe(frozen);
    expect(checkpointSize(frozen)).toBeLessThan(checkpointSize(await checkpoint(a)));
  });

  it('answers as the Express routes did, for the paths it takes and those it leaves to Express', async () => {
    // C's checkpoint does not move during this test: compare its spellings byte for byte.
    const fast = await get(`${c.url}/checkpoint`);
    expect(fast).toMatchObject({
      status: 200,
      type: 'text/plain; charset=utf-8',
      cache: 'no-cache, max-age=0',
      length: String(fast.body.length),
    });
    for (const other of ['/checkpoint/', '/CHECKPOINT', '/checkpoint?x=1'])
      expect([other, await get(`${c.url}${other}`)]).toEqual([other, fast]);
    const head = await get(`${c.url}/checkpoint`, { method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, length: String(fast.body.length) });
    expect(head.body.length).toBe(0);

    const issuer = await get(`${c.url}${issuerPath}`);
    expect(issuer).toMatchObject({
      status: 200,
      type: 'application/pkix-cert',
      cache: 'public, max-age=31536000, immutable',
    });
    expect(issuer.body).toEqual(intermediate.der);
    expect(await get(`${c.url}${issuerPath}/`)).toEqual(issuer);
    expect(await get(`${c.url}${issuerPath}`)).toEqual(issuer);

    const notFound = { status: 404, type: 'text/plain; charset=utf-8', cache: null };
    for (const path of [
      '/tile/7/000',
      '/tile/0/000.p/0',
      '/tile/0/000.p/01',
      '/tile/0/999',
      '/tile/data/x001/000',
      `/issuer/${'0'.repeat(64)}`,
      `/issuer/${'A'.repeat(64)}`,
      '/issuer/zz',
    ]) {
      const r = await get(`${c.url}${path}`);
      expect([path, r.status, r.type, r.cache, r.body.toString()]).toEqual([
        path,
        notFound.status,
        notFound.type,
        notFound.cache,
        'not found\n',
      ]);
    }
    // Other methods are Express's, as before.
    const post = await get(`${c.url}/checkpoint`, { method: 'POST' });
    expect([post.status, post.body.toString()]).toEqual([404, 'not found\n']);

    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(
      /^mayfly_ctlog_http_request_duration_seconds_count\{route="\/checkpoint",code="200"\} [1-9]/m,
    );
    expect(metrics).toMatch(
      /^mayfly_ctlog_http_request_duration_seconds_count\{route="\/tile\/\*",code="404"\} [1-9]/m,
    );
    expect(metrics).toMatch(
      /^mayfly_ctlog_http_request_duration_seconds_count\{route="\/issuer\/:fingerprint",code="200"\} [1-9]/m,
    );
  });

  it('a kept tile is the bytes storage holds: partial widths as the tree grows, then the full tile', async () => {
    const size = checkpointSize(await checkpoint(a));
    expect(size).toBeLessThan(256);
    const partial = `/tile/0/000.p/${size}`;
    const dataPartial = `/tile/data/000.p/${size}`;
    const first = await get(`${a.url}${partial}`);
    const firstData = await get(`${a.url}${dataPartial}`);
    expect(first).toMatchObject({ status: 200, type: 'application/octet-stream' });
    expect(first.body.length).toBe(32 * size);
    expect(firstData.status).toBe(200);
    // Fill tile 0 and go past it (the certificates are made first: making them blocks the
    // event loop the logs share).
    const ders = Array.from({ length: 260 - size }, (_, i) =>
      b64(makeCert({ issuer: intermediate, cn: `bulk-${i}` }).der),
    );
    const rs = await Promise.all(
      ders.map((der) =>
        postJson(`${a.url}/ct/v1/add-chain`, { chain: [der, b64(intermediate.der)] }),
      ),
    );
    expect(rs.map((r) => r.status).filter((s) => s !== 200)).toEqual([]);
    const grown = checkpointSize(await checkpoint(a));
    expect(grown).toBeGreaterThanOrEqual(260);
    await sleep(TTL_B + 1);
    expect(checkpointSize(await checkpoint(b))).toBe(grown);

    // A replica started now has nothing kept: it reads storage, where tile 0 is now full.
    const d = await start();
    for (const log of [a, b, d]) {
      expect(await get(`${log.url}${partial}`)).toEqual(first);
      expect(await get(`${log.url}${dataPartial}`)).toEqual(firstData);
    }
    const full = await get(`${d.url}/tile/0/000`);
    expect(full).toMatchObject({ status: 200, cache: 'public, max-age=31536000, immutable' });
    expect(full.body.subarray(0, first.body.length)).toEqual(first.body);
    expect(full.body.length).toBe(32 * 256);
    for (const log of [a, b]) expect(await get(`${log.url}/tile/0/000`)).toEqual(full);
    const fullData = await get(`${d.url}/tile/data/000`);
    expect(fullData.body.subarray(0, firstData.body.length)).toEqual(firstData.body);
    expect(await get(`${b.url}/tile/data/000`)).toEqual(fullData);
  }, 120_000);

  it('with PostgreSQL down: kept tiles and issuers are still served, the rest is a fixed 503', async () => {
    const tile = await get(`${b.url}/tile/0/000`);
    const issuer = await get(`${b.url}${issuerPath}`);
    expect([tile.status, issuer.status]).toEqual([200, 200]);
    await pg.stop('SIGINT');
    await sleep(TTL_B + 1);
    for (const path of [
      '/checkpoint',
      '/tile/0/000.p/1',
      '/tile/data/001.p/4',
      `/issuer/${'1'.repeat(64)}`,
    ]) {
      const r = await get(`${b.url}${path}`);
      expect([path, r.status, r.body.toString(), r.type]).toEqual([
        path,
        503,
        'log unavailable, retry later\n',
        'text/plain; charset=utf-8',
      ]);
    }
    expect(await get(`${b.url}/tile/0/000`)).toEqual(tile);
    expect(await get(`${b.url}${issuerPath}`)).toEqual(issuer);
    expect((await fetch(`${b.url}/healthz`)).status).toBe(200);
  }, 60_000);
});
