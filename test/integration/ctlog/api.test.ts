import { createHash, createPublicKey, verify } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { rootFromInclusion } from '../../../services/ctlog/merkle';
import {
  PRECERT_SIGNING_EKU,
  b64,
  makeCert,
  makeHierarchy,
  type TestCert,
} from '../../helpers/ct-certs';
import {
  freshDatabase,
  getJson,
  postJson,
  startTestCtlog,
  type TestCtlog,
} from '../../helpers/ctlog';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../../helpers/postgres';

/**
 * The log over HTTP, on both backends: RFC 6962 writes with their refusals, duplicates,
 * both read APIs, /log.json. Signatures and proofs are checked here with node:crypto and
 * pkijs (the precert TBS is rebuilt by pkijs, not by the log's DER code); the Go reference
 * clients check the same log in go-clients.test.ts.
 */

interface Sct {
  sct_version: number;
  id: string;
  timestamp: number;
  extensions: string;
  signature: string;
}

const sha256 = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

function u(value: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  let v = value;
  for (let i = bytes - 1; i >= 0; i--) {
    b[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return b;
}

function vec(b: Buffer, n: number): Buffer {
  return Buffer.concat([u(b.length, n), b]);
}

/** The precert's TBS without the poison, re-encoded by pkijs. */
function pkijsPrecertTbs(der: Buffer): Buffer {
  const cert = new pkijs.Certificate({ schema: asn1js.fromBER(der).result });
  cert.extensions = cert.extensions!.filter((e) => e.extnID !== '1.3.6.1.4.1.11129.2.4.3');
  return Buffer.from(cert.encodeTBS().toBER());
}

function signedEntry(chain: readonly TestCert[], precert: boolean, root: TestCert): Buffer {
  if (!precert) return Buffer.concat([u(0, 2), vec(chain[0]!.der, 3)]);
  const issuer = chain[1] ?? root;
  const ikh = sha256(issuer.publicKey.export({ type: 'spki', format: 'der' }));
  return Buffer.concat([u(1, 2), ikh, vec(pkijsPrecertTbs(chain[0]!.der), 3)]);
}

function leafIndexOf(sct: Sct): number {
  const ext = Buffer.from(sct.extensions, 'base64');
  expect(ext.length).toBe(8);
  expect(ext.subarray(0, 3)).toEqual(Buffer.from([0, 0, 5]));
  return ext.readUIntBE(3, 5);
}

describe.each(['directory', 'postgres'] as const)('ctlog HTTP API on %s storage', (backend) => {
  let pg: PostgresProcess | undefined;
  let log: TestCtlog;
  let logKey: ReturnType<typeof createPublicKey>;
  const { root, intermediate } = makeHierarchy();
  const otherRoot = makeCert({ cn: 'other root', ca: true });

  beforeAll(async () => {
    if (backend === 'postgres') pg = await startPostgres();
    log = await startTestCtlog({
      roots: [root, otherRoot],
      ...(pg ? { databaseUrl: await freshDatabase(pg) } : {}),
    });
    const meta = await getJson<{ key: string }>(`${log.url}/log.json`);
    logKey = createPublicKey({ key: Buffer.from(meta.key, 'base64'), format: 'der', type: 'spki' });
  }, 60_000);

  afterAll(async () => {
    await log?.stop();
    await stopAllPostgres();
  });

  const sth = () =>
    getJson<{
      tree_size: number;
      timestamp: number;
      sha256_root_hash: string;
      tree_head_signature: string;
    }>(`${log.url}/ct/v1/get-sth`);

  function verifySct(sct: Sct, chain: readonly TestCert[], precert: boolean): void {
    const ext = Buffer.from(sct.extensions, 'base64');
    const input = Buffer.concat([
      Buffer.from([0, 0]),
      u(sct.timestamp, 8),
      signedEntry(chain, precert, root),
      vec(ext, 2),
    ]);
    const sig = Buffer.from(sct.signature, 'base64');
    expect(sig.subarray(0, 2)).toEqual(Buffer.from([4, 3]));
    expect(sig.readUInt16BE(2)).toBe(sig.length - 4);
    expect(verify('sha256', input, logKey, sig.subarray(4))).toBe(true);
    expect(Buffer.from(sct.id, 'base64')).toEqual(
      sha256(logKey.export({ type: 'spki', format: 'der' })),
    );
  }

  async function add(chain: readonly TestCert[], precert = false) {
    const r = await postJson(`${log.url}/ct/v1/${precert ? 'add-pre-chain' : 'add-chain'}`, {
      chain: chain.map((c) => b64(c.der)),
    });
    return r;
  }

  async function expectInTree(sct: Sct, chain: readonly TestCert[], precert: boolean) {
    const index = leafIndexOf(sct);
    const head = await sth();
    expect(head.tree_size).toBeGreaterThan(index);
    const leafInput = Buffer.concat([
      Buffer.from([0, 0]),
      u(sct.timestamp, 8),
      signedEntry(chain, precert, root),
      vec(Buffer.from(sct.extensions, 'base64'), 2),
    ]);
    const leafHash = sha256(Buffer.from([0]), leafInput);
    const byHash = await getJson<{ leaf_index: number; audit_path: string[] }>(
      `${log.url}/ct/v1/get-proof-by-hash?hash=${encodeURIComponent(leafHash.toString('base64'))}&tree_size=${head.tree_size}`,
    );
    expect(byHash.leaf_index).toBe(index);
    const root_ = rootFromInclusion(
      index,
      head.tree_size,
      leafHash,
      byHash.audit_path.map((p) => Buffer.from(p, 'base64')),
    );
    expect(root_.toString('base64')).toBe(head.sha256_root_hash);
    const entries = await getJson<{ entries: { leaf_input: string; extra_data: string }[] }>(
      `${log.url}/ct/v1/get-entries?start=${index}&end=${index}`,
    );
    expect(Buffer.from(entries.entries[0]!.leaf_input, 'base64')).toEqual(leafInput);
  }

  it('publishes its metadata in the shape of a v3 log list entry', async () => {
    const meta = await getJson<Record<string, unknown>>(`${log.url}/log.json`);
    expect(Object.keys(meta).sort()).toEqual(
      ['description', 'key', 'log_id', 'mmd', 'temporal_interval', 'url'].sort(),
    );
    expect(meta.url).toBe('https://ctlog.test/2026/');
    const interval = meta.temporal_interval as { start_inclusive: string; end_exclusive: string };
    expect(Date.parse(interval.end_exclusive) - Date.parse(interval.start_inclusive)).toBe(
      365 * 24 * 3600 * 1000,
    );
  });

  it('get-roots lists exactly the configured roots', async () => {
    const r = await getJson<{ certificates: string[] }>(`${log.url}/ct/v1/get-roots`);
    expect(r.certificates).toEqual([b64(root.der), b64(otherRoot.der)]);
  });

  it('add-chain: a chain one short of a root, and a chain ending in it, get valid SCTs and entries', async () => {
    for (const chain of [
      [makeCert({ issuer: intermediate }), intermediate],
      [makeCert({ issuer: intermediate }), intermediate, root],
      [makeCert({ issuer: root })],
    ]) {
      const r = await add(chain);
      expect(r.status).toBe(200);
      const sct = r.json as Sct;
      expect(sct.sct_version).toBe(0);
      verifySct(sct, chain, false);
      await expectInTree(sct, chain, false);
    }
  });

  it('add-pre-chain: a precertificate issued by the CA gets an SCT over its TBS without the poison', async () => {
    const chain = [makeCert({ issuer: intermediate, poison: 'critical' }), intermediate];
    const r = await add(chain, true);
    expect(r.status).toBe(200);
    const sct = r.json as Sct;
    verifySct(sct, chain, true);
    await expectInTree(sct, chain, true);
    const entries = await getJson<{ entries: { extra_data: string }[] }>(
      `${log.url}/ct/v1/get-entries?start=${leafIndexOf(sct)}&end=${leafIndexOf(sct)}`,
    );
    // PrecertChainEntry: the precertificate, then the chain (intermediate, root).
    const extra = Buffer.from(entries.entries[0]!.extra_data, 'base64');
    const preLen = extra.readUIntBE(0, 3);
    expect(extra.subarray(3, 3 + preLen)).toEqual(chain[0]!.der);
    const rest = extra.subarray(3 + preLen + 3);
    expect(rest.subarray(3, 3 + intermediate.der.length)).toEqual(intermediate.der);
  });

  it('a duplicate returns the SCT already issued and adds nothing', async () => {
    const cert = makeCert({ issuer: intermediate });
    const first = await add([cert, intermediate]);
    const size = (await sth()).tree_size;
    const again = await add([cert, intermediate, root]);
    expect(again.status).toBe(200);
    expect(again.json).toEqual(first.json);
    const precert = makeCert({ issuer: intermediate, poison: 'critical' });
    const p1 = await add([precert, intermediate], true);
    const p2 = await add([precert, intermediate], true);
    expect(p2.json).toEqual(p1.json);
    await new Promise((r) => setTimeout(r, 100));
    expect((await sth()).tree_size).toBe(size + 1);
  });

  it('concurrent submissions all get distinct indices that verify', async () => {
    const chains = Array.from({ length: 40 }, () => [
      makeCert({ issuer: intermediate }),
      intermediate,
    ]);
    const results = await Promise.all(chains.map((c) => add(c)));
    const indices = results.map((r) => leafIndexOf(r.json as Sct));
    expect(new Set(indices).size).toBe(40);
    for (let i = 0; i < 5; i++) await expectInTree(results[i]!.json as Sct, chains[i]!, false);
  });

  describe('refusals: 400, a clear message, nothing added', () => {
    const expired = () =>
      makeCert({
        issuer: intermediate,
        notAfter: new Date(Date.now() - 3600_000),
        notBefore: new Date(Date.now() - 7200_000),
      });
    const cases: [string, 'add-chain' | 'add-pre-chain', () => unknown, RegExp][] = [
      ['an empty body', 'add-chain', () => '', /malformed JSON|chain/],
      ['malformed JSON', 'add-chain', () => '{"chain":', /malformed JSON/],
      ['no chain', 'add-chain', () => ({}), /missing "chain"/],
      ['an empty chain', 'add-chain', () => ({ chain: [] }), /empty chain/],
      ['a chain that is not an array', 'add-chain', () => ({ chain: 'abc' }), /missing "chain"/],
      ['bad base64', 'add-chain', () => ({ chain: ['!!!'] }), /base64/],
      [
        'garbage DER',
        'add-chain',
        () => ({ chain: [b64(Buffer.from('not a certificate'))] }),
        /parse/,
      ],
      [
        'too long a chain',
        'add-chain',
        () => ({ chain: Array(11).fill(b64(intermediate.der)) }),
        /too long/,
      ],
      [
        'a chain in the wrong order',
        'add-chain',
        () => ({ chain: [b64(intermediate.der), b64(makeCert({ issuer: intermediate }).der)] }),
        /does not verify/,
      ],
      [
        'an unknown root',
        'add-chain',
        () => {
          const h = makeHierarchy();
          return {
            chain: [b64(makeCert({ issuer: h.intermediate }).der), b64(h.intermediate.der)],
          };
        },
        /accepted root/,
      ],
      ['a root alone', 'add-chain', () => ({ chain: [b64(root.der)] }), /root/],
      [
        'a precertificate on add-chain',
        'add-chain',
        () => ({
          chain: [
            b64(makeCert({ issuer: intermediate, poison: 'critical' }).der),
            b64(intermediate.der),
          ],
        }),
        /add-pre-chain/,
      ],
      [
        'a certificate on add-pre-chain',
        'add-pre-chain',
        () => ({ chain: [b64(makeCert({ issuer: intermediate }).der), b64(intermediate.der)] }),
        /poison extension is missing/,
      ],
      [
        'a non-critical poison',
        'add-pre-chain',
        () => ({
          chain: [
            b64(makeCert({ issuer: intermediate, poison: 'non-critical' }).der),
            b64(intermediate.der),
          ],
        }),
        /critical/,
      ],
      [
        'a precertificate from a precertificate-signing certificate',
        'add-pre-chain',
        () => {
          const signing = makeCert({
            cn: 'precert signer',
            ca: true,
            issuer: intermediate,
            eku: [PRECERT_SIGNING_EKU],
          });
          return {
            chain: [
              b64(makeCert({ issuer: signing, poison: 'critical' }).der),
              b64(signing.der),
              b64(intermediate.der),
            ],
          };
        },
        /precertificate signing certificates are not accepted/,
      ],
      [
        'a notAfter outside the temporal interval',
        'add-chain',
        () => ({ chain: [b64(expired().der), b64(intermediate.der)] }),
        /temporal interval/,
      ],
    ];

    it.each(cases)('%s', async (_name, endpoint, body, message) => {
      const before = (await sth()).tree_size;
      const r = await postJson(`${log.url}/ct/v1/${endpoint}`, body());
      expect(r.status).toBe(400);
      expect(r.text).toMatch(message);
      await new Promise((res) => setTimeout(res, 60));
      expect((await sth()).tree_size).toBe(before);
    });

    it('a body over the limit', async () => {
      const r = await postJson(`${log.url}/ct/v1/add-chain`, { chain: ['A'.repeat(300_000)] });
      expect(r.status).toBe(400);
      expect(r.text).toMatch(/too large/);
    });
  });

  it('serves the static-ct-api: checkpoint, tiles, data tiles and issuers', async () => {
    const chain = [makeCert({ issuer: intermediate }), intermediate];
    const sct = (await add(chain)).json as Sct;
    const head = await sth();
    const res = await fetch(`${log.url}/checkpoint`);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    const note = await res.text();
    const [body, sigLine] = note.split('\n\n');
    const lines = body!.split('\n');
    expect(lines[0]).toBe('ctlog.test/2026');
    const size = Number(lines[1]);
    expect(size).toBeGreaterThanOrEqual(head.tree_size);
    const m = /^\u2014 ctlog\.test\/2026 (\S+)\n$/.exec(sigLine!);
    expect(m).not.toBeNull();
    const sig = Buffer.from(m![1]!, 'base64');
    const logId = sha256(logKey.export({ type: 'spki', format: 'der' }));
    expect(sig.subarray(0, 4)).toEqual(
      sha256(Buffer.from('ctlog.test/2026\n'), Buffer.from([5]), logId).subarray(0, 4),
    );
    const ts = sig.readUIntBE(4, 6) * 2 ** 16 + sig.readUInt16BE(10);
    const ths = Buffer.concat([
      Buffer.from([0, 1]),
      u(ts, 8),
      u(size, 8),
      Buffer.from(lines[2]!, 'base64'),
    ]);
    expect(sig.subarray(12, 14)).toEqual(Buffer.from([4, 3]));
    expect(verify('sha256', ths, logKey, sig.subarray(16))).toBe(true);

    const w0 = size % 256;
    const tile = await fetch(`${log.url}/tile/0/000.p/${w0}`);
    expect(tile.status).toBe(200);
    expect(tile.headers.get('cache-control')).toMatch(/immutable/);
    const hashes = Buffer.from(await tile.arrayBuffer());
    expect(hashes.length).toBe(32 * w0);
    expect((await fetch(`${log.url}/tile/0/000`)).status).toBe(404);
    expect((await fetch(`${log.url}/tile/0/000.p/${w0 + 1}`)).status).toBe(404);
    expect((await fetch(`${log.url}/tile/0/001.p/1`)).status).toBe(404);
    expect((await fetch(`${log.url}/tile/0/000.p/0`)).status).toBe(404);
    expect((await fetch(`${log.url}/tile/6/000.p/1`)).status).toBe(404);
    expect((await fetch(`${log.url}/tile/0/0.p/1`)).status).toBe(404);
    const data = await fetch(`${log.url}/tile/data/000.p/${w0}`);
    expect(data.status).toBe(200);
    const dataBytes = Buffer.from(await data.arrayBuffer());
    // The entry of our SCT: its leaf hash is in the level-0 tile at its index.
    const index = leafIndexOf(sct);
    const leafInput = Buffer.concat([
      Buffer.from([0, 0]),
      u(sct.timestamp, 8),
      signedEntry(chain, false, root),
      vec(Buffer.from(sct.extensions, 'base64'), 2),
    ]);
    expect(hashes.subarray(index * 32, index * 32 + 32)).toEqual(
      sha256(Buffer.from([0]), leafInput),
    );
    expect(dataBytes.includes(leafInput.subarray(2))).toBe(true);
    const issuer = await fetch(`${log.url}/issuer/${sha256(intermediate.der).toString('hex')}`);
    expect(issuer.headers.get('content-type')).toBe('application/pkix-cert');
    expect(Buffer.from(await issuer.arrayBuffer())).toEqual(intermediate.der);
    expect((await fetch(`${log.url}/issuer/${'0'.repeat(64)}`)).status).toBe(404);
  });

  it('RFC 6962 reads refuse bad parameters with 400', async () => {
    for (const q of [
      'get-entries?start=5',
      'get-entries?start=-1&end=2',
      'get-entries?start=99999&end=100000',
      'get-sth-consistency?first=2&second=1',
      'get-sth-consistency?first=1&second=99999',
      'get-proof-by-hash?hash=abc&tree_size=1',
      'get-entry-and-proof?leaf_index=5&tree_size=2',
    ]) {
      const r = await fetch(`${log.url}/ct/v1/${q}`);
      expect([q, r.status]).toEqual([q, 400]);
    }
  });

  it('consistency proofs between two tree heads verify', async () => {
    const first = await sth();
    await add([makeCert({ issuer: intermediate }), intermediate]);
    await add([makeCert({ issuer: intermediate }), intermediate]);
    const second = await sth();
    const r = await getJson<{ consistency: string[] }>(
      `${log.url}/ct/v1/get-sth-consistency?first=${first.tree_size}&second=${second.tree_size}`,
    );
    expect(r.consistency.length).toBeGreaterThan(0);
    const e = await getJson<{ leaf_input: string; audit_path: string[] }>(
      `${log.url}/ct/v1/get-entry-and-proof?leaf_index=0&tree_size=${second.tree_size}`,
    );
    const root0 = rootFromInclusion(
      0,
      second.tree_size,
      sha256(Buffer.from([0]), Buffer.from(e.leaf_input, 'base64')),
      e.audit_path.map((p) => Buffer.from(p, 'base64')),
    );
    expect(root0.toString('base64')).toBe(second.sha256_root_hash);
  });
});
