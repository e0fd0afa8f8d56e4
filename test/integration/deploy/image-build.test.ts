import { execSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix, resolve } from 'node:path';
import { envOf, readDockerfile, type Stage } from '../../helpers/dockerfile';
import { LOOPBACK_CA_ENV, waitFor } from '../../helpers/mayfly-process';

/**
 * The Dockerfile's steps, run for real without a Docker engine: each stage gets a folder
 * that stands for its filesystem, COPY copies from the build context (the repository) or
 * from another stage's folder, RUN runs the command there (`npm ci`, `npm run build`,
 * `npm prune --omit=dev`: the commands CI runs), and the runtime stage's ENTRYPOINT is then
 * started with its ENV, as the image's numeric user when the test runs as root, and must
 * serve. This proves the runtime stage has everything it needs (and no dev dependency) and
 * writes nothing into the application folder; the base image itself (Node 20) is the Node
 * running this test.
 */

const root = resolve(__dirname, '../../..');
const dockerfile = readDockerfile(join(root, 'Dockerfile'));
let work: string;

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

interface StageResult {
  readonly dir: string;
  readonly workdir: string;
  readonly env: Record<string, string>;
}

function runStage(stage: Stage, built: Map<string, StageResult>): StageResult {
  const dir = join(work, stage.name ?? 'stage');
  mkdirSync(dir, { recursive: true });
  let workdir = '/';
  const env: Record<string, string> = {};
  const inStage = (path: string) => join(dir, posix.resolve(workdir, path));
  for (const i of stage.instructions) {
    switch (i.keyword) {
      case 'WORKDIR':
        workdir = posix.resolve(workdir, i.args);
        mkdirSync(join(dir, workdir), { recursive: true });
        break;
      case 'ENV':
        Object.assign(env, envOf({ ...stage, instructions: [i] }));
        break;
      case 'COPY': {
        const parts = i.args.split(/\s+/);
        const dest = parts.pop()!;
        const from = i.flags.from ? built.get(i.flags.from) : undefined;
        if (i.flags.from && !from) throw new Error(`COPY --from=${i.flags.from}: no such stage`);
        for (const source of parts) {
          const src = from ? join(from.dir, source) : join(root, source);
          const target =
            dest.endsWith('/') || parts.length > 1
              ? join(inStage(dest), basename(source))
              : inStage(dest);
          cpSync(src, target, { recursive: true });
        }
        break;
      }
      case 'RUN':
        execSync(i.args, {
          cwd: join(dir, workdir),
          env: { ...process.env, ...env, npm_config_prefer_offline: 'true' },
          stdio: 'pipe',
        });
        break;
      default:
        // USER, EXPOSE, HEALTHCHECK, ENTRYPOINT: used when the image runs.
        break;
    }
  }
  return { dir, workdir, env };
}

test('the image builds with the CI steps and its runtime stage serves as the numeric user', async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-image-'));
  chmodSync(work, 0o755);
  const built = new Map<string, StageResult>();
  for (const stage of dockerfile.stages) {
    built.set(stage.name ?? 'stage', runStage(stage, built));
  }
  const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
  const result = built.get(runtime.name!)!;
  const app = join(result.dir, result.workdir);

  // Production dependencies only (npm prune leaves empty scope folders; packages count).
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  const installed = (name: string) => existsSync(join(app, 'node_modules', name, 'package.json'));
  for (const dep of Object.keys(pkg.dependencies))
    expect([dep, installed(dep)]).toEqual([dep, true]);
  // A development dependency is gone unless a production one needs it too (the lock file
  // marks dev-only packages: protobufjs, under @grpc/grpc-js, depends on @types/node).
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  for (const dev of Object.keys(pkg.devDependencies)) {
    const devOnly = lock.packages[`node_modules/${dev}`]?.dev === true;
    expect([dev, installed(dev)]).toEqual([dev, !devOnly]);
  }
  expect(existsSync(join(app, 'dist/services/ca/main.js'))).toBe(true);
  // The other deployables run from the same image; the development issuer is not in it.
  for (const entry of ['tsa', 'prober', 'ctlog', 'cli'])
    expect([entry, existsSync(join(app, `dist/services/${entry}/main.js`))]).toEqual([entry, true]);
  expect(existsSync(join(app, 'dist/services/dev-issuer'))).toBe(false);
  // So `mayfly serve --dev-issuer` in the image says why it cannot, and starts nothing.
  const serve = spawnSync(
    process.execPath,
    ['dist/services/cli/main.js', 'serve', '--dev-issuer'],
    {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', ...result.env },
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  expect([serve.status, serve.stderr]).toEqual([
    2,
    expect.stringContaining('the container image leaves it out'),
  ]);
  expect(existsSync(join(built.get('build')!.dir, 'src/dist/services/dev-issuer/main.js'))).toBe(
    true,
  );
  expect(existsSync(join(app, 'dist/scripts'))).toBe(false);
  const before = readdirSync(app).sort();

  const entry = runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.exec!;
  const user = runtime.instructions
    .find((i) => i.keyword === 'USER')!
    .args.split(':')
    .map(Number);
  const asRoot = process.getuid?.() === 0;
  let out = '';
  const child = spawn(entry[0] === 'node' ? process.execPath : entry[0]!, entry.slice(1), {
    cwd: app,
    env: {
      PATH: process.env.PATH ?? '',
      ...result.env,
      ...LOOPBACK_CA_ENV,
      MAYFLY_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asRoot ? { uid: user[0]!, gid: user[1] ?? user[0]! } : {}),
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const match = await waitFor(
      () => out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/),
      `the image's listening line (output so far: ${out})`,
      30_000,
    );
    const url = `http://127.0.0.1:${match[1]}`;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const bundle = (await (await fetch(`${url}/api/v2/trustBundle`)).json()) as {
      chains: unknown[];
    };
    expect(bundle.chains).toHaveLength(1);
    // The gRPC server found its .proto files in the image layout.
    expect(out).toMatch(/gRPC listening on 127\.0\.0\.1:\d+ \(plaintext\)/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(readdirSync(app).sort()).toEqual(before);
  } finally {
    child.kill('SIGKILL');
  }

  // The CT log's stage holds only its own folder and the shared one, and the log starts from
  // it (on its directory backend, in a scratch folder) and answers.
  const ctlogStage = dockerfile.stages.find((s) => s.name === 'ctlog')!;
  const ctlogBuilt = built.get('ctlog')!;
  const ctlogApp = join(ctlogBuilt.dir, ctlogBuilt.workdir);
  expect(readdirSync(join(ctlogApp, 'dist/services')).sort()).toEqual(['common', 'ctlog']);
  const ctlogEntry = ctlogStage.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.exec!;
  let logOut = '';
  const log = spawn(process.execPath, ctlogEntry.slice(1), {
    cwd: ctlogApp,
    env: {
      PATH: process.env.PATH ?? '',
      ...ctlogBuilt.env,
      MAYFLY_CTLOG_HOST: '127.0.0.1',
      MAYFLY_CTLOG_PORT: '0',
      MAYFLY_CTLOG_DIR: join(work, 'ctlog-data'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  log.stdout!.on('data', (d: Buffer) => (logOut += d.toString()));
  log.stderr!.on('data', (d: Buffer) => (logOut += d.toString()));
  const logExited = new Promise<number | null>((r) => log.on('exit', (code) => r(code)));
  try {
    const match = await waitFor(
      () => logOut.match(/mayfly-ctlog listening on (http:\/\/\S+)/),
      `the CT log's listening line (output so far: ${logOut})`,
      30_000,
    );
    const meta = (await (await fetch(`${match[1]!.replace(/\/$/, '')}/log.json`)).json()) as {
      log_id: string;
    };
    expect(meta.log_id).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    log.kill('SIGTERM');
    expect(await logExited).toBe(0);
  } finally {
    log.kill('SIGKILL');
  }
}, 240_000);
