import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { b64, makeCert, makeHierarchy, pem, type TestCert } from '../../helpers/ct-certs';
import { freshDatabase, getJson, postJson } from '../../helpers/ctlog';
import { startCtlogProcess, type CtlogProcess } from '../../helpers/ctlog-process';
import { buildGo } from '../../helpers/go-refs';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../../helpers/postgres';
import { until } from '../../helpers/wait';

/**
 * One sequencer, many front ends, on a real PostgreSQL: two replicas take submissions while
 * the sequencing one is SIGKILLed (the other takes over) and PostgreSQL itself crashes and
 * restarts (immediate shutdown, WAL recovery). Afterwards every SCT any replica returned
 * must be in the tree at its leaf_index with a valid inclusion proof, checked by ct-go
 * (test/go/ctlog-sct-check), and no index may be used twice.
 */

interface Sct {
  timestamp: number;
  extensions: string;
  signature: string;
}

const leads = (p: CtlogProcess) =>
  p.logs().filter((l) => l.msg === 'sequencing: this instance leads').length;

describe('ctlog failover on PostgreSQL', () => {
  let pg: PostgresProcess;
  let work: string;
  const { root, intermediate } = makeHierarchy();

  beforeAll(async () => {
    pg = await startPostgres();
    work = mkdtempSync(join(tmpdir(), 'mayfly-ctlog-failover-'));
  }, 60_000);

  afterAll(async () => {
    await stopAllPostgres();
    rmSync(work, { recursive: true, force: true });
  });

  it('kill the leader, restart PostgreSQL: nothing acknowledged is lost', async () => {
    const rootsFile = join(work, 'roots.pem');
    writeFileSync(rootsFile, pem(root.der));
    const env = {
      MAYFLY_CTLOG_DATABASE_URL: await freshDatabase(pg),
      MAYFLY_CTLOG_ROOTS: rootsFile,
      MAYFLY_CTLOG_URL: 'https://failover.test/log',
      MAYFLY_CTLOG_SEQUENCE_INTERVAL_MS: '50',
      MAYFLY_CTLOG_SUBMIT_TIMEOUT_MS: '5000',
    };
    const a = await startCtlogProcess(env);
    await until(() => leads(a) === 1, 'replica A to lead');
    let b = await startCtlogProcess(env);
    const replicas: CtlogProcess[] = [a, b];
    const key = (await getJson<{ key: string }>(`${a.url}/log.json`)).key;
    expect((await getJson<{ key: string }>(`${b.url}/log.json`)).key).toBe(key);

    const chains = Array.from({ length: 900 }, (_, i) => [
      makeCert({ issuer: intermediate, ...(i % 4 === 0 ? { poison: 'critical' as const } : {}) }),
      intermediate,
    ]);
    const acked = new Map<number, { chain: TestCert[]; sct: Sct }>();
    let errors = 0;
    let next = 0;
    let turn = 0;
    const worker = async () => {
      while (next < chains.length) {
        const i = next++;
        const precert = i % 4 === 0;
        // A client retries on another replica, as the CA's CT client does.
        for (let attempt = 0; attempt < 20 && !acked.has(i); attempt++) {
          const live = replicas.filter(
            (r) => r.child.exitCode === null && r.child.signalCode === null,
          );
          const target = live[turn++ % live.length]!;
          try {
            const r = await postJson(
              `${target.url}/ct/v1/${precert ? 'add-pre-chain' : 'add-chain'}`,
              {
                chain: chains[i]!.map((c) => b64(c.der)),
              },
            );
            if (r.status === 200) acked.set(i, { chain: chains[i]!, sct: r.json as Sct });
            else errors++;
          } catch {
            errors++;
          }
          if (!acked.has(i)) await new Promise((res) => setTimeout(res, 100));
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, worker));

    await until(() => acked.size >= 150, 'load to be flowing');
    // 1. The sequencing replica dies.
    await a.kill('SIGKILL');
    await until(() => leads(b) === 1, 'replica B to take over', 15_000);
    const tookOverAt = acked.size;
    await until(() => acked.size >= tookOverAt + 100, 'sequencing to resume under B');
    // The dead replica comes back as a front end.
    const a2 = await startCtlogProcess(env);
    replicas[0] = a2;
    // 2. PostgreSQL crashes and restarts under load.
    const beforeRestart = acked.size;
    await pg.restart();
    await until(
      () => acked.size >= beforeRestart + 100,
      'sequencing to resume after the PostgreSQL restart',
      30_000,
    );
    await load;
    // Both replicas rode out the faults (a crash would show here with its output).
    for (const r of [a2, b])
      expect([r.child.exitCode, r.output().slice(-3000)]).toEqual([null, expect.anything()]);
    expect(acked.size).toBe(chains.length);
    expect(errors).toBeGreaterThan(0); // the faults were really felt by clients

    // Every acknowledged SCT: distinct indices, and ct-go verifies SCT, entry and inclusion.
    const items = [...acked.values()];
    const indices = items.map((x) => Buffer.from(x.sct.extensions, 'base64').readUIntBE(3, 5));
    expect(new Set(indices).size).toBe(items.length);
    const sth = await getJson<{ tree_size: number }>(`${a2.url}/ct/v1/get-sth`);
    expect(sth.tree_size).toBe(chains.length);
    const bin = buildGo('test/go/ctlog-sct-check');
    const check = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = execFile(
        bin,
        [],
        { timeout: 180_000, maxBuffer: 64 << 20 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? ((err as { code?: number }).code ?? 1) : 0,
            out: `${stdout}${stderr}`,
          }),
      );
      child.stdin!.end(
        JSON.stringify({
          log: b.url,
          key,
          items: items.map((i) => ({ chain: i.chain.map((c) => b64(c.der)), sct: i.sct })),
        }),
      );
    });
    expect(check.out).not.toMatch(/FAIL/);
    expect(check.code).toBe(0);
    expect(check.out.match(/^ok item/gm)?.length).toBe(items.length);
    b = replicas[1]!;
    expect(await a2.kill('SIGTERM')).toBe(0);
    expect(await b.kill('SIGTERM')).toBe(0);
  }, 300_000);
});
