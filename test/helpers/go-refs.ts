/**
 * Go reference implementations for tests: paths of binaries built by `scripts/go-refs.sh`
 * from Debian's Go source packages (see that script and README "Go reference
 * implementations").
 *
 * Both functions are synchronous: they run the script, which answers from its cache in
 * milliseconds once things are built. `scripts/test.sh` builds everything before jest starts,
 * so a test never waits for a Go build within its timeout; run
 * `bash scripts/go-refs.sh all` once yourself before running such tests by hand.
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export type GoTool = 'go' | 'fulcio' | 'timestamp-server' | 'timestamp-cli' | 'ctclient';

const repoRoot = resolve(__dirname, '..', '..');
const script = resolve(repoRoot, 'scripts', 'go-refs.sh');

function run(args: string[]): string {
  let out: string;
  try {
    out = execFileSync('bash', [script, ...args], {
      cwd: repoRoot,
      encoding: 'utf8',
      // Progress and errors go to the test's stderr; stdout is only the path.
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 20,
    });
  } catch (err) {
    throw new Error(`scripts/go-refs.sh ${args.join(' ')} failed: ${(err as Error).message}`);
  }
  const path = out.trim();
  if (path === '' || path.includes('\n')) {
    throw new Error(`scripts/go-refs.sh ${args.join(' ')} printed no single path: ${out}`);
  }
  return path;
}

/** Absolute path of a Go reference binary (`go` is Debian's Go toolchain). */
export function goTool(name: GoTool): string {
  return run([name]);
}

/** Builds our own Go main package in `dir` (repo-relative, e.g. `test/go/hello-tlog`). */
export function buildGo(dir: string): string {
  return run(['build', resolve(repoRoot, dir)]);
}

/** The GOPATH holding the unpacked Go sources (for `go vet`, reading sources, ...). */
export function goPath(): string {
  return run(['gopath']);
}
