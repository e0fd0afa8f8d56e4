import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CA_NODE_ARGS, caProcessEnv } from '../common/ca-runtime';

/**
 * `mayfly serve`: what a user needs to sign and verify, on embedded defaults: the CA, the
 * TSA and a CT log, each its own process on its own port (they share nothing but HTTP); the
 * CA embeds the log's SCTs, so verifiers need no insecure flag. The supervisor
 * forwards SIGTERM/SIGINT to both, waits for them to drain, and stops the other when one
 * exits. Settings pass through the environment (MAYFLY_* for the CA, MAYFLY_TSA_* for the TSA);
 * the CA runs as one process unless MAYFLY_WORKERS says otherwise.
 */

const HELP = `usage: mayfly serve [--dev-issuer]

Starts the CA (MAYFLY_PORT, default 8080), the TSA (MAYFLY_TSA_PORT, default 3000) and a
CT log (MAYFLY_CTLOG_PORT, default 6962; a fresh key and directory; not started when
MAYFLY_CT_LOG_URL is set, even empty) as processes, the CA embedding the log's SCTs; prints
where each listens, forwards SIGTERM and SIGINT, and exits when all have stopped. The CA is
one process unless MAYFLY_WORKERS is set. Then:
mayfly trusted-root --ca-url … --tsa-url … --ctlog URL,KEY.pem --out trusted_root.json

  --dev-issuer   also start the development OIDC issuer (MAYFLY_DEV_ISSUER_PORT, default 5556;
                 tokens from GET /token?email=…) and make the CA trust it alone. Anybody who
                 can reach it can mint identities: for a first run on your own machine only.
`;

interface Deployable {
  readonly name: string;
  readonly entry: string;
  readonly url: string;
}

async function waitReady(
  url: string,
  child: ChildProcess,
  timeoutMs: number,
  path = '/readyz',
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** The CA's trust bundle roots (the last certificate of each chain), as PEM. */
async function caRoots(caUrl: string): Promise<string> {
  const res = await fetch(`${caUrl}/api/v2/trustBundle`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`trust bundle: HTTP ${res.status}`);
  const bundle = (await res.json()) as { chains: { certificates: string[] }[] };
  const roots = bundle.chains.map((c) => c.certificates[c.certificates.length - 1] ?? '');
  return [...new Set(roots)].filter(Boolean).join('');
}

interface CtSetup {
  readonly url: string;
  readonly publicKeyFile: string;
  readonly rootsFile: string;
  readonly env: NodeJS.ProcessEnv;
  readonly stateDir: string;
}

/**
 * The CT log of `mayfly serve`, unless MAYFLY_CT_LOG_URL is set (even empty: then the CA
 * uses that, or none): a fresh P-256 key and a directory in a temporary folder, the roots
 * read from the CA once it runs.
 */
function ctSetup(
  env: NodeJS.ProcessEnv,
  local: (h: string | undefined) => string,
): CtSetup | undefined {
  if (env.MAYFLY_CT_LOG_URL !== undefined) return undefined;
  const stateDir = mkdtempSync(join(tmpdir(), 'mayfly-serve-'));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyFile = join(stateDir, 'ctlog-key.pem');
  const publicKeyFile = join(stateDir, 'ctlog-public-key.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  const rootsFile = join(stateDir, 'ctlog-roots.pem');
  return {
    url: `http://${local(env.MAYFLY_CTLOG_HOST)}:${env.MAYFLY_CTLOG_PORT ?? '6962'}`,
    publicKeyFile,
    rootsFile,
    stateDir,
    env: {
      MAYFLY_CTLOG_KEY: keyFile,
      MAYFLY_CTLOG_ROOTS: rootsFile,
      MAYFLY_CTLOG_DIR: env.MAYFLY_CTLOG_DIR ?? join(stateDir, 'ctlog'),
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' }, 'dev-issuer': { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dist = resolve(__dirname, '..');
  const local = (host: string | undefined) =>
    !host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  // The development issuer is this supervisor's business, never the CA's (which refuses
  // MAYFLY_DEV_ISSUER*): with --dev-issuer it is started here and the CA is pointed at it.
  const { MAYFLY_DEV_ISSUER: devFlag, MAYFLY_DEV_ISSUER_PORT: devPort, ...env } = process.env;
  const devIssuer = values['dev-issuer'] === true || devFlag === 'true';
  // The container image leaves the development issuer out (Dockerfile): say so plainly.
  if (devIssuer && !existsSync(resolve(dist, 'dev-issuer/main.js'))) {
    process.stderr.write(
      'mayfly serve: --dev-issuer needs the development OIDC issuer, which this installation ' +
        'does not include (the container image leaves it out); run it from a checkout\n',
    );
    return 2;
  }
  const ct = ctSetup(env, local);
  const devDir = devIssuer ? mkdtempSync(join(tmpdir(), 'mayfly-dev-issuer-')) : undefined;
  const devIdentity = devDir ? join(devDir, 'identity.json') : undefined;
  const caEnv: NodeJS.ProcessEnv = {
    // One CA process unless the user asks for more: `serve` is a sandbox on a developer's
    // machine beside a TSA, a CT log and maybe an issuer; a worker per core would add a
    // primary and a process per core (some 120 MB each) for a handful of requests.
    MAYFLY_WORKERS: '1',
    ...env,
    ...(ct ? { MAYFLY_CT_LOG_URL: ct.url, MAYFLY_CT_LOG_PUBLIC_KEY_FILE: ct.publicKeyFile } : {}),
    ...(devIdentity ? { MAYFLY_IDENTITY_CONFIG: devIdentity } : {}),
  };
  const deployables: Deployable[] = [
    {
      name: 'ca',
      entry: resolve(dist, 'ca/main.js'),
      url: `http://${local(env.MAYFLY_HOST)}:${env.MAYFLY_PORT ?? '8080'}`,
    },
    {
      name: 'tsa',
      entry: resolve(dist, 'tsa/main.js'),
      url: `http://${local(env.MAYFLY_TSA_HOST)}:${env.MAYFLY_TSA_PORT ?? '3000'}`,
    },
  ];
  const children: { d: Deployable; child: ChildProcess }[] = [];
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const { child } of children) if (child.exitCode === null) child.kill(signal);
  };
  const onSignal = (signal: NodeJS.Signals) => () => {
    if (stopping) {
      // A second signal: stop at once.
      for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL');
      return;
    }
    stopAll(signal);
  };
  process.on('SIGTERM', onSignal('SIGTERM'));
  process.on('SIGINT', onSignal('SIGINT'));
  const exits: Promise<number>[] = [];
  const start = (d: Deployable, childEnv: NodeJS.ProcessEnv, args: string[] = []) => {
    // The CA runs with its memory settings (services/ca/runtime.ts), as `npm start` does.
    const isCa = d.name === 'ca';
    const child = spawn(process.execPath, [...(isCa ? CA_NODE_ARGS : []), d.entry, ...args], {
      stdio: 'inherit',
      env: isCa ? caProcessEnv(childEnv) : childEnv,
    });
    children.push({ d, child });
    exits.push(
      new Promise<number>((done) => {
        child.on('exit', (code, signal) => {
          if (!stopping) {
            process.stderr.write(
              `mayfly serve: the ${d.name} stopped (${signal ?? `status ${code}`}); stopping the rest\n`,
            );
            stopAll('SIGTERM');
          }
          done(code ?? 1);
        });
      }),
    );
    return child;
  };
  const [caD, tsaD] = deployables as [Deployable, Deployable];
  let devD: Deployable | undefined;
  if (devIdentity) {
    devD = {
      name: 'development issuer',
      entry: resolve(dist, 'dev-issuer/main.js'),
      url: `http://127.0.0.1:${devPort ?? '5556'}`,
    };
    const devChild = start(devD, env, [
      '--port',
      devPort ?? '5556',
      '--identity-config',
      devIdentity,
    ]);
    // The CA reads the identity config the issuer writes once it listens.
    if (!(await waitReady(devD.url, devChild, 30_000, '/.well-known/openid-configuration'))) {
      stopAll('SIGTERM');
      await Promise.all(exits);
      return 1;
    }
  }
  const caChild = start(caD, caEnv);
  const tsaChild = start(tsaD, env);
  const ready = await Promise.all([
    waitReady(caD.url, caChild, 60_000),
    waitReady(tsaD.url, tsaChild, 60_000),
  ]);
  // The log accepts the CA's roots: read them from the running CA, then start the log.
  if (ct && ready[0] && !stopping) {
    const logD: Deployable = { name: 'CT log', entry: resolve(dist, 'ctlog/main.js'), url: ct.url };
    try {
      writeFileSync(ct.rootsFile, await caRoots(caD.url));
      ready.push(await waitReady(ct.url, start(logD, { ...env, ...ct.env }), 60_000));
    } catch (err) {
      process.stderr.write(`mayfly serve: cannot start the CT log: ${(err as Error).message}\n`);
      stopAll('SIGTERM');
    }
  }
  if (ready.every(Boolean) && !stopping) {
    const ctlogArg = ct ? ` --ctlog ${ct.url},${ct.publicKeyFile}` : '';
    process.stdout.write(
      `mayfly serve: CA on ${caD.url}, TSA on ${tsaD.url} (${tsaD.url}/api/v1/timestamp)` +
        (ct ? `, CT log on ${ct.url}` : '') +
        (devD ? `, development issuer on ${devD.url} (${devD.url}/token?email=…)` : '') +
        `\n  trusted root: mayfly trusted-root --ca-url ${caD.url} --tsa-url ${tsaD.url}${ctlogArg} --out trusted_root.json\n`,
    );
  }
  const statuses = await Promise.all(exits);
  if (ct) rmSync(ct.stateDir, { recursive: true, force: true });
  if (devDir) rmSync(devDir, { recursive: true, force: true });
  return statuses.every((s) => s === 0) ? 0 : 1;
}
