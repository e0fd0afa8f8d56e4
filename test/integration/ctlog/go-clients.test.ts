import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { b64, makeCert, makeHierarchy, pem, type TestCert } from '../../helpers/ct-certs';
import {
  freshDatabase,
  getJson,
  postJson,
  startTestCtlog,
  type TestCtlog,
} from '../../helpers/ctlog';
import { buildGo, goTool } from '../../helpers/go-refs';
import { startPostgres, stopAllPostgres, type PostgresProcess } from '../../helpers/postgres';

/**
 * The log checked by implementations we did not write, built from Debian's Go sources
 * (scripts/go-refs.sh): certificate-transparency-go's ctclient (get-sth with STH signature
 * verification, get-roots, get-entries, get-inclusion-proof, get-consistency-proof), our
 * small program on ct-go's ctutil/client packages (test/go/ctlog-sct-check: every SCT over the
 * exact (pre)certificate, the entry at its leaf_index, inclusion), and our small program on
 * golang.org/x/mod/sumdb/{note,tlog} (test/go/ctlog-tlog-check: the note-signed checkpoint,
 * tiles, inclusion of each certificate, consistency with an older checkpoint). Each check is
 * also shown to fail on a tampered input.
 */

const run = promisify(execFile);

interface Sct {
  sct_version: number;
  id: string;
  timestamp: number;
  extensions: string;
  signature: string;
}

async function tool(
  path: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(path, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({
        code: err ? ((err as { code?: number }).code ?? 1) : 0,
        out: `${stdout}${stderr}`,
      });
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

describe.each(['directory', 'postgres'] as const)(
  'Go reference clients against the log (%s)',
  (backend) => {
    let pg: PostgresProcess | undefined;
    let log: TestCtlog;
    let work: string;
    let key: string;
    let ctclient: string;
    let sctCheck: string;
    let tlogCheck: string;
    const { root, intermediate } = makeHierarchy();
    const submitted: { chain: TestCert[]; sct: Sct; precert: boolean }[] = [];
    let oldCheckpoint: string;
    let oldSth: { tree_size: number; sha256_root_hash: string };

    async function submit(precert: boolean) {
      const chain = [
        makeCert({ issuer: intermediate, ...(precert ? { poison: 'critical' as const } : {}) }),
        intermediate,
      ];
      const r = await postJson(`${log.url}/ct/v1/${precert ? 'add-pre-chain' : 'add-chain'}`, {
        chain: chain.map((c) => b64(c.der)),
      });
      expect(r.status).toBe(200);
      submitted.push({ chain, sct: r.json as Sct, precert });
    }

    beforeAll(async () => {
      ctclient = goTool('ctclient');
      sctCheck = buildGo('test/go/ctlog-sct-check');
      tlogCheck = buildGo('test/go/ctlog-tlog-check');
      if (backend === 'postgres') pg = await startPostgres();
      log = await startTestCtlog({
        roots: [root],
        ...(pg ? { databaseUrl: await freshDatabase(pg) } : {}),
      });
      work = mkdtempSync(join(tmpdir(), 'mayfly-ctlog-go-'));
      key = (await getJson<{ key: string }>(`${log.url}/log.json`)).key;
      writeFileSync(
        join(work, 'log.pem'),
        `-----BEGIN PUBLIC KEY-----\n${key.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`,
      );
      for (let i = 0; i < 6; i++) await submit(i % 2 === 1);
      oldCheckpoint = await (await fetch(`${log.url}/checkpoint`)).text();
      writeFileSync(join(work, 'old-checkpoint'), oldCheckpoint);
      oldSth = await getJson(`${log.url}/ct/v1/get-sth`);
      // Enough to cross a full tile, so that level-1 tiles and full data tiles exist. The
      // certificates are made first: making them blocks the event loop the log shares.
      const bulk = Array.from({ length: 260 }, (_, i) =>
        b64(makeCert({ issuer: intermediate, cn: `bulk-${i}` }).der),
      );
      await Promise.all(
        bulk.map((der) =>
          postJson(`${log.url}/ct/v1/add-chain`, { chain: [der, b64(intermediate.der)] }),
        ),
      );
      for (let i = 0; i < 4; i++) await submit(i % 2 === 0);
    }, 240_000);

    afterAll(async () => {
      await log?.stop();
      await stopAllPostgres();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    // The subcommand goes first: ctclient's main runs Go's flag.Parse (klog) before cobra.
    const ct = (command: string, ...args: string[]) =>
      run(ctclient, [command, '--log_uri', log.url, '--pub_key', join(work, 'log.pem'), ...args], {
        timeout: 60_000,
      });

    it('ctclient get-sth verifies the STH signature', async () => {
      const { stdout } = await ct('get-sth');
      const sth = await getJson<{ tree_size: number }>(`${log.url}/ct/v1/get-sth`);
      expect(stdout).toMatch(new RegExp(`Got STH for V1 log \\(size=${sth.tree_size}\\)`));
      expect(stdout).toMatch(/Signature:/);
    });

    it('ctclient get-sth fails against the wrong key', async () => {
      const wrong = makeCert();
      writeFileSync(
        join(work, 'wrong.pem'),
        wrong.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      );
      await expect(
        run(ctclient, ['get-sth', '--log_uri', log.url, '--pub_key', join(work, 'wrong.pem')]),
      ).rejects.toThrow();
    });

    it('ctclient get-roots lists the configured root', async () => {
      const { stdout } = await ct('get-roots', '--text=false');
      expect(stdout.replace(/\s/g, '')).toContain(
        pem(root.der).replace(/-----[A-Z ]+-----|\s/g, ''),
      );
    });

    it('ctclient get-entries parses every entry, precertificates included', async () => {
      const { stdout } = await ct('get-entries', '--first', '0', '--last', '5', '--text=false');
      expect(stdout.match(/^Index=\d+/gm)?.length).toBe(6);
      expect(stdout).toMatch(/pre-cert/i);
    });

    it('ctclient get-inclusion-proof verifies each submitted (pre)certificate with its SCT extensions', async () => {
      const sth = await getJson<{ tree_size: number }>(`${log.url}/ct/v1/get-sth`);
      for (const [i, s] of submitted.entries()) {
        const file = join(work, `chain-${i}.pem`);
        writeFileSync(file, s.chain.map((c) => pem(c.der)).join(''));
        const { stdout, stderr } = await ct(
          'get-inclusion-proof',
          '--cert_chain',
          file,
          '--timestamp',
          String(s.sct.timestamp),
          '--extensions',
          Buffer.from(s.sct.extensions, 'base64').toString('hex'),
          '--size',
          String(sth.tree_size),
        );
        // ctclient exits non-zero when the proof does not verify (next test).
        const index = Buffer.from(s.sct.extensions, 'base64').readUIntBE(3, 5);
        expect(`${stdout}${stderr}`).toMatch(
          new RegExp(`Inclusion proof for index ${index} in tree of size ${sth.tree_size}`),
        );
      }
    });

    it('ctclient get-inclusion-proof fails for a timestamp that was not logged', async () => {
      const s = submitted[0]!;
      const file = join(work, 'chain-bad.pem');
      writeFileSync(file, s.chain.map((c) => pem(c.der)).join(''));
      await expect(
        ct(
          'get-inclusion-proof',
          '--cert_chain',
          file,
          '--timestamp',
          String(s.sct.timestamp + 1),
          '--extensions',
          Buffer.from(s.sct.extensions, 'base64').toString('hex'),
        ),
      ).rejects.toThrow();
    });

    it('ctclient get-consistency-proof verifies between two tree heads', async () => {
      const sth = await getJson<{ tree_size: number; sha256_root_hash: string }>(
        `${log.url}/ct/v1/get-sth`,
      );
      const { stdout, stderr } = await ct(
        'get-consistency-proof',
        '--prev_size',
        String(oldSth.tree_size),
        '--prev_hash',
        oldSth.sha256_root_hash,
        '--size',
        String(sth.tree_size),
        '--tree_hash',
        sth.sha256_root_hash,
      );
      expect(`${stdout}${stderr}`).toMatch(/verified/i);
    });

    const sctInput = (items: typeof submitted) =>
      JSON.stringify({
        log: log.url,
        key,
        items: items.map((s) => ({ chain: s.chain.map((c) => b64(c.der)), sct: s.sct })),
      });

    it('ct-go verifies every SCT over the exact (pre)certificate and finds its entry at leaf_index', async () => {
      const r = await tool(sctCheck, [], sctInput(submitted));
      expect(r.out).not.toMatch(/FAIL/);
      expect(r.code).toBe(0);
      expect(r.out.match(/^ok item/gm)?.length).toBe(submitted.length);
      expect(r.out).toMatch(/precert SCT verified/);
    });

    it('ct-go refuses a tampered SCT', async () => {
      const s = submitted[1]!;
      const tampered = { ...s, sct: { ...s.sct, timestamp: s.sct.timestamp - 1 } };
      const r = await tool(sctCheck, [], sctInput([tampered]));
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/FAIL item 0: SCT signature/);
    });

    it('x/mod tlog+note verify the checkpoint, tiles, inclusion and consistency', async () => {
      const r = await tool(tlogCheck, [
        '-url',
        log.url,
        '-key',
        key,
        '-origin',
        'ctlog.test/2026',
        '-old',
        join(work, 'old-checkpoint'),
        ...submitted.flatMap((s) => ['-cert', b64(s.chain[0]!.der)]),
      ]);
      expect(r.out).not.toMatch(/FAIL/);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/checkpoint size=\d+ signature verified/);
      expect(r.out.match(/^ok certificate found/gm)?.length).toBe(submitted.length);
      expect(r.out).toMatch(new RegExp(`ok consistency ${oldSth.tree_size} -> \\d+ verified`));
    });

    it('x/mod note refuses the checkpoint under another origin, and tlog misses a certificate never logged', async () => {
      const wrongOrigin = await tool(tlogCheck, [
        '-url',
        log.url,
        '-key',
        key,
        '-origin',
        'ctlog.test/other',
      ]);
      expect(wrongOrigin.code).toBe(1);
      expect(wrongOrigin.out).toMatch(/FAIL checkpoint signature/);
      const missing = await tool(tlogCheck, [
        '-url',
        log.url,
        '-key',
        key,
        '-origin',
        'ctlog.test/2026',
        '-cert',
        b64(makeCert({ issuer: intermediate }).der),
      ]);
      expect(missing.code).toBe(1);
      expect(missing.out).toMatch(/FAIL found 0 of 1/);
    });
  },
);
