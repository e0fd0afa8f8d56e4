import {
  constants,
  promises as fs,
  openSync,
  closeSync,
  writeSync,
  readFileSync,
  mkdirSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { decodeTreeHead, encodeTreeHead, type SignedTreeHead } from '../checkpoint';
import { fingerprint } from '../entry';
import { encodeTileIndex } from '../merkle';
import { TlsReader } from '../tls';
import {
  CommitConflictError,
  encodeRecord,
  readRecord,
  type Commit,
  type LogStorage,
  type PendingEntry,
  type SequencedRecord,
} from './storage';

/**
 * The directory backend: one process owns the directory (a lock file holding its pid), and
 * is both the only front end and the sequencer. The files are what static-ct-api serves:
 * `tile/<L>/<N>`, `tile/data/<N>`, `issuer/<hex>`; the tree head (`checkpoint.bin`) is
 * written last, by rename, and is the commit point. The dedup records go to an append-only
 * `sequenced.log` before the tree head; on open, records past the committed tree size (a
 * batch cut short by a crash) are cut off, so they can never claim an index that the next
 * batch reuses. Pending submissions live in memory only: none of them has had an SCT.
 *
 * Sequenced records and the leaf-hash index are held in memory (about 150 bytes an entry):
 * this backend is for development and single-node logs; PostgreSQL is for large ones.
 */

export class DirectoryLockedError extends Error {}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lock files this process holds (the pid alone cannot tell two opens in one process apart). */
const heldLocks = new Set<string>();

function takeLock(file: string): void {
  if (heldLocks.has(file))
    throw new DirectoryLockedError(`the log directory is already open in this process (${file})`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      heldLocks.add(file);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid))
        throw new DirectoryLockedError(
          `the log directory is in use by process ${pid} (lock file ${file})`,
        );
      // A stale lock from a process that died: take it over.
      unlinkSync(file);
    }
  }
  throw new DirectoryLockedError(`cannot take the lock file ${file}`);
}

async function writeAtomic(path: string, data: Buffer): Promise<void> {
  await fs.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
}

async function syncDir(path: string): Promise<void> {
  const fh = await fs.open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class DirectoryStorage implements LogStorage {
  readonly kind = 'directory' as const;
  private readonly records = new Map<string, SequencedRecord>();
  private readonly byLeafHash = new Map<string, number>();
  private readonly queue = new Map<string, PendingEntry>();
  private head: SignedTreeHead | undefined;
  private log: fs.FileHandle | undefined;
  private closed = false;

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<DirectoryStorage> {
    mkdirSync(dir, { recursive: true });
    takeLock(join(dir, 'lock'));
    const s = new DirectoryStorage(dir);
    try {
      await s.load();
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  private async load(): Promise<void> {
    const head = await readOptional(join(this.dir, 'checkpoint.bin'));
    this.head = head ? decodeTreeHead(head) : undefined;
    const size = this.head?.size ?? 0;
    const logPath = join(this.dir, 'sequenced.log');
    const bytes = (await readOptional(logPath)) ?? Buffer.alloc(0);
    const r = new TlsReader(bytes);
    let valid = 0;
    while (!r.done) {
      let rec: SequencedRecord;
      try {
        rec = readRecord(r);
      } catch {
        break; // a torn final record
      }
      if (rec.index >= size) break;
      this.records.set(rec.key.toString('hex'), rec);
      this.byLeafHash.set(rec.leafHash.toString('hex'), rec.index);
      valid = r.position;
    }
    this.log = await fs.open(logPath, 'a+');
    if (valid < bytes.length) {
      await this.log.truncate(valid);
      await this.log.sync();
    }
  }

  async setting(name: string, value: () => Buffer): Promise<Buffer> {
    const path = join(this.dir, 'settings', name);
    const existing = await readOptional(path);
    if (existing) return existing;
    const v = value();
    await writeAtomic(path, v);
    await syncDir(dirname(path));
    return v;
  }

  sequenced(keys: readonly Buffer[]): Promise<Map<string, SequencedRecord>> {
    const out = new Map<string, SequencedRecord>();
    for (const k of keys) {
      const hex = k.toString('hex');
      const rec = this.records.get(hex);
      if (rec) out.set(hex, rec);
    }
    return Promise.resolve(out);
  }

  enqueue(entries: readonly PendingEntry[]): Promise<void> {
    for (const entry of entries) {
      const hex = entry.key.toString('hex');
      if (!this.queue.has(hex)) this.queue.set(hex, entry);
    }
    return Promise.resolve();
  }

  indexOfLeafHash(hash: Buffer): Promise<number | undefined> {
    return Promise.resolve(this.byLeafHash.get(hash.toString('hex')));
  }

  treeHead(): Promise<SignedTreeHead | undefined> {
    return Promise.resolve(this.head);
  }

  tile(level: number, index: number): Promise<Buffer | undefined> {
    return readOptional(join(this.dir, 'tile', String(level), encodeTileIndex(index)));
  }

  dataTile(index: number): Promise<Buffer | undefined> {
    return readOptional(join(this.dir, 'tile', 'data', encodeTileIndex(index)));
  }

  issuer(fingerprint: Buffer): Promise<Buffer | undefined> {
    return readOptional(join(this.dir, 'issuer', fingerprint.toString('hex')));
  }

  lead(): Promise<boolean> {
    return Promise.resolve(!this.closed);
  }

  pending(limit: number): Promise<PendingEntry[]> {
    const out: PendingEntry[] = [];
    for (const [hex, e] of this.queue) {
      if (out.length >= limit) break;
      if (this.records.has(hex)) this.queue.delete(hex);
      else out.push(e);
    }
    return Promise.resolve(out);
  }

  async commit(c: Commit): Promise<void> {
    if (this.closed) throw new Error('storage closed');
    if ((c.previous?.timestamp ?? -1) !== (this.head?.timestamp ?? -1))
      throw new CommitConflictError();
    const dirs = new Set<string>();
    const write = async (path: string, data: Buffer) => {
      await writeAtomic(path, data);
      dirs.add(dirname(path));
    };
    // Everything the new tree head refers to is made durable first, in parallel (issuers,
    // the records' log, tiles), then their directories; the tree head is written last, so a
    // crash at any point leaves the previous head with all it needs. Each step waits for a
    // disk flush: doing them side by side rather than one after the other is most of a
    // batch's time on a directory.
    const appendRecords = async () => {
      if (c.records.length === 0) return;
      await this.log!.appendFile(Buffer.concat(c.records.map(encodeRecord)));
      await this.log!.sync();
    };
    await Promise.all([
      ...c.issuers.map(async (der) => {
        const path = join(this.dir, 'issuer', fingerprint(der).toString('hex'));
        if (!(await readOptional(path))) await write(path, der);
      }),
      appendRecords(),
      ...c.tiles.map((t) =>
        write(join(this.dir, 'tile', String(t.level), encodeTileIndex(t.index)), t.data),
      ),
      ...c.dataTiles.map((t) =>
        write(join(this.dir, 'tile', 'data', encodeTileIndex(t.index)), t.data),
      ),
    ]);
    await Promise.all([...dirs].map((d) => syncDir(d)));
    await writeAtomic(join(this.dir, 'checkpoint.bin'), encodeTreeHead(c.treeHead));
    await syncDir(this.dir);
    this.head = c.treeHead;
    for (const rec of c.records) {
      this.records.set(rec.key.toString('hex'), rec);
      this.byLeafHash.set(rec.leafHash.toString('hex'), rec.index);
    }
    for (const k of c.done) this.queue.delete(k.toString('hex'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.log?.close();
    try {
      const pid = Number(readFileSync(join(this.dir, 'lock'), 'utf8').trim());
      if (pid === process.pid) unlinkSync(join(this.dir, 'lock'));
      heldLocks.delete(join(this.dir, 'lock'));
    } catch {
      // Already gone.
    }
  }
}
