import { createHash } from 'node:crypto';

/**
 * RFC 6962 §2.1 Merkle tree hashing and proofs (RFC 9162 §2.1.3 algorithms), and the
 * c2sp.org/tlog-tiles geometry: tiles of height 8 (256 hashes); a level-L tile holds the
 * hashes of the tree nodes at height 8·L. Sizes and indices are plain numbers (safe up to
 * 2^53, far beyond any log), and never go through 32-bit bit operations.
 */

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
export const HASH_SIZE = 32;

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

export function hashLeaf(leaf: Uint8Array): Buffer {
  return sha256(LEAF_PREFIX, leaf);
}

export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

export const EMPTY_ROOT = sha256();

/** Largest power of two strictly smaller than n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n)) && 2 ** Math.log2(n) === n;
}

/** The root of a perfect subtree whose leaves are the concatenated hashes. */
export function perfectRoot(hashes: Buffer, start: number, count: number): Buffer {
  let level: Buffer[] = [];
  for (let i = 0; i < count; i++)
    level.push(hashes.subarray((start + i) * HASH_SIZE, (start + i + 1) * HASH_SIZE));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(hashChildren(level[i]!, level[i + 1]!));
    level = next;
  }
  return Buffer.from(level[0]!);
}

/** Width of the partial tile at tile level `level` for a tree of `size` (0 = none). */
export function partialWidth(size: number, level: number): number {
  return Math.floor(size / TILE_WIDTH ** level) % TILE_WIDTH;
}

/** MTH of the whole tree from the rightmost (partial) tile of each level. */
export function rootFromEdge(size: number, edge: readonly Buffer[]): Buffer {
  if (size === 0) return EMPTY_ROOT;
  const subtrees: Buffer[] = [];
  for (let level = edge.length - 1; level >= 0; level--) {
    const width = partialWidth(size, level);
    const tile = edge[level] ?? Buffer.alloc(0);
    if (tile.length < width * HASH_SIZE) throw new Error(`edge tile ${level} is short`);
    let offset = 0;
    for (let bit = TILE_HEIGHT - 1; bit >= 0; bit--) {
      const chunk = 2 ** bit;
      if (width & chunk) {
        subtrees.push(perfectRoot(tile, offset, chunk));
        offset += chunk;
      }
    }
  }
  let root = subtrees[subtrees.length - 1]!;
  for (let i = subtrees.length - 2; i >= 0; i--) root = hashChildren(subtrees[i]!, root);
  return root;
}

/** Reads the stored hashes of tile (level, index): its whole stored width, possibly partial. */
export type TileHashReader = (level: number, index: number) => Promise<Buffer | undefined>;

/**
 * Computes hashes of arbitrary subtrees of a tree of `size` leaves from its tiles, caching
 * the tiles it reads. Complete subtrees never change once they exist, so the latest tiles
 * serve proofs for any earlier tree size.
 */
export class TreeHasher {
  private readonly tiles = new Map<string, Promise<Buffer | undefined>>();

  constructor(private readonly read: TileHashReader) {}

  private tile(level: number, index: number): Promise<Buffer | undefined> {
    const key = `${level}/${index}`;
    let t = this.tiles.get(key);
    if (!t) {
      t = this.read(level, index);
      this.tiles.set(key, t);
    }
    return t;
  }

  /** Hash of the perfect subtree at `height` with index `index` (its leaves start at index·2^height). */
  async node(height: number, index: number): Promise<Buffer> {
    const tileLevel = Math.floor(height / TILE_HEIGHT);
    const rest = height - tileLevel * TILE_HEIGHT;
    const first = index * 2 ** rest; // index of the first node at height 8·tileLevel
    const tileIndex = Math.floor(first / TILE_WIDTH);
    const offset = first - tileIndex * TILE_WIDTH;
    const count = 2 ** rest;
    const tile = await this.tile(tileLevel, tileIndex);
    if (!tile || tile.length < (offset + count) * HASH_SIZE)
      throw new MissingTileError(`tile ${tileLevel}/${tileIndex} is missing or short`);
    return perfectRoot(tile, offset, count);
  }

  /** MTH(D[start:end]). */
  async range(start: number, end: number): Promise<Buffer> {
    const n = end - start;
    if (n === 0) return EMPTY_ROOT;
    if (isPowerOfTwo(n) && start % n === 0) return this.node(Math.log2(n), start / n);
    const k = splitPoint(n);
    return hashChildren(await this.range(start, start + k), await this.range(start + k, end));
  }

  /** PATH(m, D[0:n]) (RFC 6962 §2.1.1). */
  async inclusion(m: number, n: number): Promise<Buffer[]> {
    if (m < 0 || m >= n) throw new RangeError('leaf index outside the tree');
    const path: Buffer[] = [];
    const walk = async (m: number, start: number, end: number): Promise<void> => {
      const n = end - start;
      if (n === 1) return;
      const k = splitPoint(n);
      if (m < k) {
        await walk(m, start, start + k);
        path.push(await this.range(start + k, end));
      } else {
        await walk(m - k, start + k, end);
        path.push(await this.range(start, start + k));
      }
    };
    await walk(m, 0, n);
    return path;
  }

  /** PROOF(m, D[0:n]) (RFC 6962 §2.1.2). */
  async consistency(m: number, n: number): Promise<Buffer[]> {
    if (m < 0 || m > n) throw new RangeError('bad tree sizes');
    if (m === 0 || m === n) return [];
    const proof: Buffer[] = [];
    const sub = async (m: number, start: number, end: number, b: boolean): Promise<void> => {
      const n = end - start;
      if (m === n) {
        if (!b) proof.push(await this.range(start, end));
        return;
      }
      const k = splitPoint(n);
      if (m <= k) {
        await sub(m, start, start + k, b);
        proof.push(await this.range(start + k, end));
      } else {
        await sub(m - k, start + k, end, false);
        proof.push(await this.range(start, start + k));
      }
    };
    await sub(m, 0, n, true);
    return proof;
  }
}

export class MissingTileError extends Error {}

/** RFC 9162 §2.1.3.2: verifies an inclusion proof; our own check, used by tests and the SCT path. */
export function rootFromInclusion(
  index: number,
  size: number,
  leafHash: Buffer,
  proof: readonly Buffer[],
): Buffer {
  if (index >= size) throw new RangeError('index beyond size');
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new Error('proof too long');
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('proof too short');
  return r;
}

/** The tile path element for index N: x001/x234/067 (c2sp.org/tlog-tiles). */
export function encodeTileIndex(n: number): string {
  const parts: string[] = [];
  let v = n;
  do {
    parts.unshift(String(v % 1000).padStart(3, '0'));
    v = Math.floor(v / 1000);
  } while (v > 0);
  return parts.map((p, i) => (i < parts.length - 1 ? `x${p}` : p)).join('/');
}

/** Parses "x001/x234/067" back to 1234067; undefined unless canonical. */
export function decodeTileIndex(path: string): number | undefined {
  const parts = path.split('/');
  if (parts.length === 0 || parts.length > 5) return undefined;
  let v = 0;
  for (let i = 0; i < parts.length; i++) {
    const last = i === parts.length - 1;
    const m = (last ? /^(\d{3})$/ : /^x(\d{3})$/).exec(parts[i]!);
    if (!m) return undefined;
    v = v * 1000 + Number(m[1]);
  }
  if (encodeTileIndex(v) !== path) return undefined;
  return v;
}
