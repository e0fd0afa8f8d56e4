import { randomBytes } from 'node:crypto';
import {
  HASH_SIZE,
  TILE_WIDTH,
  TreeHasher,
  decodeTileIndex,
  encodeTileIndex,
  hashChildren,
  hashLeaf,
  partialWidth,
  perfectRoot,
  rootFromEdge,
  rootFromInclusion,
  splitPoint,
} from '../../../services/ctlog/merkle';

/**
 * The tile-based hasher against the RFC 6962 §2.1 definitions computed directly over the
 * leaf list (MTH, PATH, PROOF written out recursively here, independently of the tiles).
 */

function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 1) return leaves[0]!;
  const k = splitPoint(leaves.length);
  return hashChildren(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

function path(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length === 1) return [];
  const k = splitPoint(leaves.length);
  return m < k
    ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))]
    : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

function subproof(m: number, leaves: Buffer[], b: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return b ? [] : [mth(leaves)];
  const k = splitPoint(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), b), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}

/** Builds the static-ct-api tiles for `leaves` (hash tiles, full and partial). */
function tilesFor(leaves: Buffer[]): Map<string, Buffer> {
  const tiles = new Map<string, Buffer>();
  let level = 0;
  let row = leaves;
  while (row.length > 0) {
    const next: Buffer[] = [];
    for (let t = 0; t * TILE_WIDTH < row.length; t++) {
      const slice = row.slice(t * TILE_WIDTH, (t + 1) * TILE_WIDTH);
      const data = Buffer.concat(slice);
      tiles.set(`${level}/${t}`, data);
      if (slice.length === TILE_WIDTH) next.push(perfectRoot(data, 0, TILE_WIDTH));
    }
    row = next;
    level++;
  }
  return tiles;
}

describe('RFC 6962 hashing over tiles', () => {
  const leaves = Array.from({ length: 70_000 }, () => hashLeaf(randomBytes(16)));
  const tiles = tilesFor(leaves);
  const hasher = new TreeHasher((l, i) => Promise.resolve(tiles.get(`${l}/${i}`)));

  it('matches the partial tile widths of the static-ct-api example (70,000 entries)', () => {
    expect([0, 1, 2].map((l) => partialWidth(70_000, l))).toEqual([112, 17, 1]);
    expect(tiles.get('0/273')!.length).toBe(112 * HASH_SIZE);
    expect(tiles.get('1/1')!.length).toBe(17 * HASH_SIZE);
    expect(tiles.get('2/0')!.length).toBe(1 * HASH_SIZE);
  });

  it.each([1, 2, 3, 255, 256, 257, 511, 512, 1000, 65_536, 65_537, 70_000])(
    'the root of %i leaves from tiles, from the edge and directly agree',
    async (n) => {
      const expected = mth(leaves.slice(0, n));
      expect((await hasher.range(0, n)).equals(expected)).toBe(true);
      const part = tilesFor(leaves.slice(0, n));
      const edge = [0, 1, 2, 3].map((l) => {
        const w = partialWidth(n, l);
        return w ? part.get(`${l}/${Math.floor(n / TILE_WIDTH ** (l + 1))}`)! : Buffer.alloc(0);
      });
      expect(rootFromEdge(n, edge).equals(expected)).toBe(true);
    },
  );

  it.each([
    [0, 1],
    [0, 2],
    [5, 7],
    [255, 256],
    [256, 257],
    [1000, 1025],
    [69_999, 70_000],
    [12_345, 65_537],
  ])('inclusion proof of %i in %i equals PATH and verifies', async (m, n) => {
    const proof = await hasher.inclusion(m, n);
    const expected = path(m, leaves.slice(0, n));
    expect(proof.map((h) => h.toString('hex'))).toEqual(expected.map((h) => h.toString('hex')));
    const root = rootFromInclusion(m, n, leaves[m]!, proof);
    expect(root.equals(mth(leaves.slice(0, n)))).toBe(true);
  });

  it('a wrong leaf does not verify', async () => {
    const proof = await hasher.inclusion(7, 1000);
    expect(rootFromInclusion(7, 1000, leaves[8]!, proof).equals(mth(leaves.slice(0, 1000)))).toBe(
      false,
    );
  });

  it.each([
    [1, 2],
    [3, 7],
    [4, 8],
    [255, 256],
    [256, 70_000],
    [1000, 65_537],
    [65_536, 70_000],
  ])('consistency proof from %i to %i equals PROOF', async (m, n) => {
    const proof = await hasher.consistency(m, n);
    const expected = subproof(m, leaves.slice(0, n), true);
    expect(proof.map((h) => h.toString('hex'))).toEqual(expected.map((h) => h.toString('hex')));
  });
});

describe('tile paths', () => {
  it.each([
    [0, '000'],
    [5, '005'],
    [999, '999'],
    [1000, 'x001/000'],
    [1_234_067, 'x001/x234/067'],
  ])('%i encodes as %s and back', (n, p) => {
    expect(encodeTileIndex(n)).toBe(p);
    expect(decodeTileIndex(p)).toBe(n);
  });

  it.each(['x000/005', '5', '0005', 'x1/000', '001/002', 'x001/00a', ''])('refuses %s', (p) => {
    expect(decodeTileIndex(p)).toBeUndefined();
  });
});
