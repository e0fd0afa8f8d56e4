import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { loadServerConfig } from '../../../services/ca/config/loader';
import { CA_ENV, CA_NODE_ARGS } from '../../../services/common/ca-runtime';
import { envOf, readDockerfile, type Stage } from '../../helpers/dockerfile';

/**
 * The Dockerfile, read as text (no Docker engine here): a multi-stage build on a pinned
 * Node 20 base, the build steps CI runs, production dependencies only, a numeric non-root
 * user, nothing written outside /tmp at run time, and the API and metrics ports exposed.
 * test/integration/deploy/image-build.test.ts runs its steps.
 */

const root = resolve(__dirname, '../../..');
const dockerfile = readDockerfile(join(root, 'Dockerfile'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};
const testScript = readFileSync(join(root, 'scripts/test.sh'), 'utf8');

const stage = (name: string): Stage => {
  const found = dockerfile.stages.find((s) => s.name === name);
  if (!found) throw new Error(`no stage ${name}`);
  return found;
};
const build = stage('build');
const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
const runs = (s: Stage) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const one = (s: Stage, keyword: string) => {
  const found = s.instructions.filter((i) => i.keyword === keyword);
  expect(found).toHaveLength(1);
  return found[0]!;
};

/**
 * The folders of services/ that an entry point needs at run time: its relative imports (and
 * requires), followed file by file from the TypeScript sources.
 */
function importedFolders(entry: string): string[] {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const m of source.matchAll(
      /(?:\bfrom|\bimport|\brequire\()\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g,
    )) {
      const target = resolve(dirname(file), m[1]!);
      const found = [`${target}.ts`, join(target, 'index.ts'), target].find(
        (c) => existsSync(c) && statSync(c).isFile(),
      );
      if (!found) throw new Error(`${file}: cannot resolve ${m[1]}`);
      queue.push(found);
    }
  }
  return [
    ...new Set([...seen].map((f) => relative(join(root, 'services'), f).split('/')[0]!)),
  ].sort();
}

describe('Dockerfile', () => {
  it('is multi-stage, and the final stage is the runtime one', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    expect(runtime.name).toBe('runtime');
  });

  it('builds and runs on one Node 20 base, pinned by version and digest', () => {
    for (const s of dockerfile.stages) {
      expect(s.from).toMatch(/^node:20\.\d+\.\d+-[a-z0-9-]+@sha256:[0-9a-f]{64}$/);
    }
    expect(new Set(dockerfile.stages.map((s) => s.from)).size).toBe(1);
    // The Node version of the image is the Node major CI builds and tests with.
    const version = /^node:(\d+)\./.exec(runtime.from)![1];
    expect(process.versions.node.split('.')[0]).toBe(version);
  });

  it('runs exactly the build steps CI runs: npm ci, the compile, the production prune', () => {
    const [toolchain, ...steps] = runs(build);
    // First, only when the base lacks them, what node-gyp needs for pkcs11js (a native addon).
    expect(toolchain).toMatch(/^\{ command -v python3 && command -v make && command -v g\+\+; \}/);
    expect(toolchain).toMatch(/apt-get install -y --no-install-recommends python3 make g\+\+/);
    expect(steps).toEqual([
      'npm ci --no-audit --no-fund',
      'npm run build',
      'npm prune --omit=dev --no-audit --no-fund',
    ]);
    // CI (scripts/test.sh) installs and compiles with the same commands...
    expect(testScript).toMatch(/^npm ci --no-audit --no-fund$/m);
    expect(testScript).toMatch(/^npm run build$/m);
    // ...and `npm run build` is the TypeScript compile of the build config.
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
  });

  it('copies into the build stage everything the compile reads', () => {
    const copied = build.instructions
      .filter((i) => i.keyword === 'COPY')
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    const buildConfig = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as {
      extends: string;
      include: string[];
    };
    for (const needed of [
      'package.json',
      'package-lock.json',
      'tsconfig.build.json',
      buildConfig.extends.replace(/^\.\//, ''),
      ...buildConfig.include,
    ]) {
      expect(copied).toContain(needed);
    }
  });

  it('ships only the compiled services, production node_modules and config', () => {
    const copies = runtime.instructions.filter((i) => i.keyword === 'COPY');
    // Every deployable's folder (and the shared one) but the development OIDC issuer's: the
    // CA refuses to start with it, and it runs as its own process from a checkout. A new
    // folder under services/ fails here until it is copied or left out on purpose.
    const shipped = readdirSync(join(root, 'services'), { withFileTypes: true })
      .filter((e) => e.isDirectory() && e.name !== 'dev-issuer')
      .map((e) => e.name)
      .sort();
    expect(shipped).toEqual(expect.arrayContaining(['ca', 'common', 'tsa']));
    expect(copies.map((c) => [c.flags.from ?? '(context)', c.args])).toEqual([
      ['build', '/src/package.json ./package.json'],
      ['build', '/src/node_modules ./node_modules'],
      ...shipped.map((d) => ['build', `/src/dist/services/${d} ./dist/services/${d}`]),
      ['build', '/src/services/common/grpc/proto ./dist/services/common/grpc/proto'],
      ['(context)', 'config ./config'],
    ]);
    // Nothing of the development issuer, under any path, in the CA's stage.
    expect(copies.map((c) => c.args).join('\n')).not.toMatch(/dev-issuer|dist\/services /);
    // node_modules comes from the build stage after `npm prune --omit=dev`.
    expect(runs(build)[runs(build).length - 1]).toMatch(/^npm prune --omit=dev/);
  });

  it('ships the CT log stage with only the folders its entry point imports', () => {
    const ctlog = stage('ctlog');
    const folders = importedFolders(join(root, 'services/ctlog/main.ts'));
    expect(folders).toContain('ctlog');
    expect(folders).not.toContain('dev-issuer');
    expect(folders).not.toContain('ca');
    const copies = ctlog.instructions.filter((i) => i.keyword === 'COPY');
    expect(copies.map((c) => [c.flags.from ?? '(context)', c.args])).toEqual([
      ['build', '/src/package.json ./package.json'],
      ['build', '/src/node_modules ./node_modules'],
      ...folders.map((d) => ['build', `/src/dist/services/${d} ./dist/services/${d}`]),
    ]);
    expect(one(ctlog, 'ENTRYPOINT').exec).toEqual(['node', 'dist/services/ctlog/main.js']);
  });

  it('runs the compiled JavaScript directly, as `npm start` does, with the CA runtime settings', () => {
    const entry = one(runtime, 'ENTRYPOINT');
    expect(entry.exec).toEqual(['node', ...CA_NODE_ARGS, 'dist/services/ca/main.js']);
    const env = Object.entries(CA_ENV)
      .map(([name, value]) => `${name}=\${${name}:-${value}}`)
      .join(' ');
    expect(pkg.scripts.start).toBe(`${env} ${entry.exec!.join(' ')}`);
    // The image sets the same variables (an operator's -e still wins).
    for (const [name, value] of Object.entries(CA_ENV)) expect(envOf(runtime)[name]).toBe(value);
    expect(runtime.instructions.some((i) => i.keyword === 'CMD')).toBe(false);
  });

  it('runs as a numeric non-root user', () => {
    const user = one(runtime, 'USER').args;
    expect(user).toMatch(/^\d+(:\d+)?$/);
    for (const id of user.split(':')) expect(Number(id)).toBeGreaterThan(0);
    // The user is set after the last COPY, so nothing it runs can change the app files.
    const lastCopy = Math.max(
      ...runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.line),
    );
    expect(one(runtime, 'USER').line).toBeGreaterThan(lastCopy);
  });

  it('works with a read-only root filesystem: nothing written outside /tmp at run time', () => {
    // No RUN in the final stage, no shell wrapper that could create folders at start,
    // no VOLUME but /tmp, and every path Node or npm would write to is under /tmp.
    expect(runs(runtime)).toEqual([]);
    const volumes = runtime.instructions.filter((i) => i.keyword === 'VOLUME');
    for (const v of volumes) expect(v.args).toMatch(/^\/tmp\b/);
    const env = envOf(runtime);
    expect(env.HOME).toBe('/tmp');
    expect(env.TMPDIR).toBe('/tmp');
    expect(env.NODE_ENV).toBe('production');
  });

  it('leaves the worker count to the service: a worker per core the container may use', () => {
    // No MAYFLY_WORKERS in the image (nor a config file setting it): the cgroup CPU limit of
    // the container decides outside Kubernetes, one process inside (services/ca/cluster.ts).
    for (const s of dockerfile.stages) expect(envOf(s).MAYFLY_WORKERS).toBeUndefined();
    expect(runtime.instructions.map((i) => i.args).join('\n')).not.toMatch(/MAYFLY_WORKERS=/);
    expect(loadServerConfig({ env: {} }).workers).toBeUndefined();
  });

  it('exposes the API, gRPC and metrics ports, which are the configured defaults', () => {
    const ports = one(runtime, 'EXPOSE').args.split(/\s+/).map(Number);
    const defaults = loadServerConfig({ env: {} });
    expect(ports).toEqual([defaults.port, defaults.grpc.port, defaults.metricsPort]);
    expect(ports).toEqual([8080, 8081, 2112]);
  });

  it('has a health check on /healthz that needs no shell tools', () => {
    const check = one(runtime, 'HEALTHCHECK');
    expect(check.args).toMatch(/CMD \["node", "-e", .*\/healthz/);
  });

  it('keeps the build context to what the Dockerfile copies (.dockerignore)', () => {
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = ignore
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    const fromContext = dockerfile.stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'COPY' && !i.flags.from)
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const source of fromContext) expect(allowed).toContain(source);
    expect(allowed).not.toContain('node_modules');
    expect(allowed).not.toContain('dist');
  });
});
