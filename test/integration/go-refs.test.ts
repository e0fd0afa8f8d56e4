/**
 * The Go reference implementations built by scripts/go-refs.sh are real and run: Debian's Go
 * toolchain, the GOPATH of Debian's Go sources, our own Go programs built against it (checked
 * differentially against an independent TypeScript computation), and the reference tools.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { buildGo, goPath, goTool } from '../helpers/go-refs';

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** RFC 6962 section 2.1 Merkle Tree Hash, written from the RFC (no shared code with Go). */
function merkleTreeHash(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  const [first] = leaves;
  if (leaves.length === 1 && first) return sha256(Buffer.from([0x00]), first);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(
    Buffer.from([0x01]),
    merkleTreeHash(leaves.slice(0, k)),
    merkleTreeHash(leaves.slice(k)),
  );
}

describe('Go reference implementations (scripts/go-refs.sh)', () => {
  it("goTool('go') is Debian's Go toolchain and runs", () => {
    const go = goTool('go');
    const out = execFileSync(go, ['version'], { encoding: 'utf8' });
    expect(out).toMatch(/^go version go1\.\d+/);
    // A second call is answered from the cache with the same path.
    expect(goTool('go')).toBe(go);
  });

  it('the GOPATH holds the Go sources of the reference implementations', () => {
    const src = join(goPath(), 'src');
    for (const pkg of [
      'github.com/sigstore/fulcio/pkg/api',
      'github.com/sigstore/sigstore/pkg/cryptoutils',
      'github.com/sigstore/sigstore-go/pkg/verify',
      'github.com/google/certificate-transparency-go/x509',
      'golang.org/x/mod/sumdb/tlog',
      'golang.org/x/mod/sumdb/note',
      'google.golang.org/grpc',
    ]) {
      expect([pkg, existsSync(join(src, pkg))]).toEqual([pkg, true]);
    }
  });

  it('golang.org/x/mod/sumdb/tlog computes the same Merkle roots as RFC 6962 in TypeScript', () => {
    const bin = buildGo('test/go/hello-tlog');
    // 19 leaves of varied length (one empty) cover balanced and unbalanced tree shapes.
    const leaves = Array.from({ length: 19 }, (_, i) => randomBytes(i === 3 ? 0 : 1 + i * 7));
    const out = execFileSync(
      bin,
      leaves.map((l) => l.toString('hex')),
      { encoding: 'utf8' },
    );
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(leaves.length);
    lines.forEach((line, i) => {
      const expected = merkleTreeHash(leaves.slice(0, i + 1)).toString('hex');
      expect(line).toBe(`${i + 1} ${expected}`);
    });
    // A published vector (Certificate Transparency's Merkle test data): MTH of the one-byte leaf 0x00.
    const one = execFileSync(bin, ['00'], { encoding: 'utf8' }).trim();
    expect(one).toBe('1 96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7');
  });
});
