import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { b64, makeCert, makeHierarchy, pem, type TestCert } from '../../helpers/ct-certs';
import { getJson, postJson } from '../../helpers/ctlog';
import { startCtlogProcess, type CtlogProcess } from '../../helpers/ctlog-process';
import { buildGo } from '../../helpers/go-refs';
import { until } from '../../helpers/wait';

/**
 * The log as a process: embedded defaults, SIGTERM, and the directory backend's crash
 * guarantee — SIGKILL in the middle of a burst, restart on the same directory, and every
 * SCT that was returned is in the tree at its leaf_index with a valid inclusion proof
 * (checked by ct-go, test/go/ctlog-sct-check), and re-submitting it returns the same SCT.
 */

interface Sct {
  timestamp: number;
  extensions: string;
  signature: string;
}

function sctCheck(log: string, key: string, items: { chain: TestCert[]; sct: Sct }[]) {
  const bin = buildGo('test/go/ctlog-sct-check');
  return new Promise<{ code: number; out: string }>((resolve) => {
    const child = execFile(
      bin,
      [],
      { timeout: 120_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          out: `${stdout}${stderr}`,
        }),
    );
    child.stdin!.end(
      JSON.stringify({
        log,
        key,
        items: items.map((i) => ({ chain: i.chain.map((c) => b64(c.der)), sct: i.sct })),
      }),
    );
  });
}

describe('ctlog process', () => {
  let work: string;
  const { root, intermediate } = makeHierarchy();
  let rootsFile: string;
  const procs: CtlogProcess[] = [];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'mayfly-ctlog-proc-'));
    rootsFile = join(work, 'roots.pem');
    writeFileSync(rootsFile, pem(root.der));
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    rmSync(work, { recursive: true, force: true });
  });

  async function start(env: Record<string, string>): Promise<CtlogProcess> {
    const p = await startCtlogProcess(env);
    procs.push(p);
    return p;
  }

  it('starts on embedded defaults alone (no roots, no directory, no key) and stops on SIGTERM', async () => {
    const p = await start({});
    const meta = await getJson<{ log_id: string }>(`${p.url}/log.json`);
    expect(meta.log_id).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await until(
      async () => (await fetch(`${p.url}/checkpoint`)).status === 200,
      'a first checkpoint',
    );
    expect(await p.kill('SIGTERM')).toBe(0);
  });

  it('refuses a bad setting with exit status 2 and a clear message', async () => {
    await expect(start({ MAYFLY_CTLOG_PORT: 'eighty' })).rejects.toThrow(
      /exited \(2\)[\s\S]*MAYFLY_CTLOG_PORT: expected an integer/,
    );
    await expect(start({ MAYFLY_CTLOG_ROOTS: join(work, 'missing.pem') })).rejects.toThrow(
      /exited \(2\)[\s\S]*cannot read MAYFLY_CTLOG_ROOTS/,
    );
  });

  it('a directory is used by one process only', async () => {
    const dir = join(work, 'locked');
    const first = await start({ MAYFLY_CTLOG_DIR: dir, MAYFLY_CTLOG_ROOTS: rootsFile });
    await expect(start({ MAYFLY_CTLOG_DIR: dir, MAYFLY_CTLOG_ROOTS: rootsFile })).rejects.toThrow(
      /exited \(2\)[\s\S]*in use by process/,
    );
    expect(await first.kill('SIGTERM')).toBe(0);
  });

  it('SIGKILL mid-burst on the directory backend loses nothing acknowledged, and duplicates stay exactly once', async () => {
    const dir = join(work, 'crash');
    const env = {
      MAYFLY_CTLOG_DIR: dir,
      MAYFLY_CTLOG_ROOTS: rootsFile,
      MAYFLY_CTLOG_URL: 'https://crash.test/log',
    };
    let p = await start(env);
    const key = (await getJson<{ key: string }>(`${p.url}/log.json`)).key;
    const chains = Array.from({ length: 400 }, (_, i) => [
      makeCert({ issuer: intermediate, ...(i % 3 === 0 ? { poison: 'critical' as const } : {}) }),
      intermediate,
    ]);
    const acked: { chain: TestCert[]; sct: Sct; precert: boolean }[] = [];
    let failures = 0;
    const url = p.url;
    let next = 0;
    const worker = async () => {
      while (next < chains.length) {
        const i = next++;
        const precert = i % 3 === 0;
        try {
          const r = await postJson(`${url}/ct/v1/${precert ? 'add-pre-chain' : 'add-chain'}`, {
            chain: chains[i]!.map((c) => b64(c.der)),
          });
          if (r.status === 200) acked.push({ chain: chains[i]!, sct: r.json as Sct, precert });
          else failures++;
        } catch {
          failures++;
        }
      }
    };
    const load = Promise.all(Array.from({ length: 16 }, worker));
    await until(() => acked.length >= 100, 'a hundred acknowledged submissions');
    expect(await p.kill('SIGKILL')).toBeNull();
    await load;
    expect(failures).toBeGreaterThan(0); // the kill really was mid-burst
    p = await start(env);
    expect((await getJson<{ key: string }>(`${p.url}/log.json`)).key).toBe(key);
    const sth = await getJson<{ tree_size: number }>(`${p.url}/ct/v1/get-sth`);
    expect(sth.tree_size).toBeGreaterThanOrEqual(acked.length);
    const check = await sctCheck(p.url, key, acked);
    expect(check.out).not.toMatch(/FAIL/);
    expect(check.code).toBe(0);
    expect(check.out.match(/^ok item/gm)?.length).toBe(acked.length);
    // Exactly once: every acknowledged submission, sent again, gets its SCT back unchanged.
    for (const a of acked.slice(0, 60)) {
      const r = await postJson(`${p.url}/ct/v1/${a.precert ? 'add-pre-chain' : 'add-chain'}`, {
        chain: a.chain.map((c) => b64(c.der)),
      });
      expect(r.json).toEqual(a.sct);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect((await getJson<{ tree_size: number }>(`${p.url}/ct/v1/get-sth`)).tree_size).toBe(
      sth.tree_size,
    );
    expect(await p.kill('SIGTERM')).toBe(0);
  }, 180_000);
});
