import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join, resolve } from 'node:path';
import { freePort } from '../../test/helpers/redis';

/**
 * The real Fulcio as the bench's peer: the binary `scripts/go-refs.sh fulcio` builds offline
 * from Debian's packages (Fulcio 1.8.8), run with the bench's file CA (`--ca fileca`, the same
 * chain and key files mayfly gets as MAYFLY_CA=file), the bench's OIDC issuer in its JSON
 * identity config, no CT log, on loopback ports of its own and its own legacy unix socket.
 */

export interface FulcioBinary {
  readonly path: string;
  readonly version: string;
}

/**
 * The built Fulcio, or the reason it cannot be had on this machine (the bench then says so in
 * its log and its results file and runs without the peer).
 */
export function fulcioBinary(): FulcioBinary | { readonly skipped: string } {
  // Compiled to dist/bench/lib/: the repository is three levels up (test/helpers/go-refs.ts
  // assumes it runs from its source folder).
  const script = resolve(__dirname, '..', '..', '..', 'scripts', 'go-refs.sh');
  let path: string;
  try {
    path = execFileSync('bash', [script, 'fulcio'], {
      encoding: 'utf8',
      // Progress and the reason of a failure go to the bench's stderr; stdout is the path.
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  } catch (err) {
    return {
      skipped: `scripts/go-refs.sh fulcio failed: ${(err as Error).message.split('\n')[0]}; its stderr above says why`,
    };
  }
  if (path === '' || path.includes('\n'))
    return { skipped: `scripts/go-refs.sh fulcio printed no single path: ${path}` };
  let version = '?';
  try {
    const out = execFileSync(path, ['version'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    version = /GitVersion:\s+(\S+)/.exec(out)?.[1] ?? '?';
  } catch {
    // the version is only a label in the report
  }
  return { path, version };
}

export interface RunningFulcio {
  readonly pid: number;
  readonly url: string;
  readonly child: ChildProcess;
}

function status(url: string): Promise<number> {
  return new Promise((resolveStatus) => {
    get(url, (res) => {
      res.resume();
      res.on('end', () => resolveStatus(res.statusCode ?? 0));
    }).on('error', () => resolveStatus(0));
  });
}

export async function startFulcio(options: {
  readonly binary: string;
  readonly dir: string;
  readonly name: string;
  readonly issuerUrl: string;
  readonly chainFile: string;
  readonly keyFile: string;
}): Promise<RunningFulcio> {
  const { dir, name } = options;
  const config = join(dir, `${name}-config.json`);
  writeFileSync(
    config,
    JSON.stringify({
      OIDCIssuers: {
        [options.issuerUrl]: {
          IssuerURL: options.issuerUrl,
          ClientID: 'sigstore',
          Type: 'email',
        },
      },
    }),
  );
  const [http, grpc, metrics] = [await freePort(), await freePort(), await freePort()];
  const out = join(dir, `${name}.log`);
  const fd = openSync(out, 'w');
  const child = spawn(
    options.binary,
    [
      'serve',
      '--ca=fileca',
      `--fileca-cert=${options.chainFile}`,
      `--fileca-key=${options.keyFile}`,
      // The key file is unencrypted PKCS#8 (as mayfly reads it); Fulcio requires the flag and
      // ignores the password for an unencrypted key.
      '--fileca-key-passwd=unused',
      '--fileca-watch=false',
      `--config-path=${config}`,
      '--ct-log-url=', // no CT log: certificates without SCTs, as mayfly's
      '--host=127.0.0.1',
      `--port=${http}`,
      '--grpc-host=127.0.0.1',
      `--grpc-port=${grpc}`,
      `--metrics-port=${metrics}`,
      `--legacy-unix-domain-socket=${join(dir, `${name}-legacy.sock`)}`,
    ],
    { cwd: dir, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  const url = `http://127.0.0.1:${http}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`fulcio exited: ${readFileSync(out, 'utf8').slice(-2000)}`);
    if ((await status(`${url}/api/v2/trustBundle`)) === 200) break;
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(
        `fulcio did not answer within 30 s: ${readFileSync(out, 'utf8').slice(-2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { pid: child.pid!, url, child };
}
