import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goTool } from './go-refs';
import { freePort } from './redis';
import { until } from './wait';

/**
 * The reference Fulcio (1.8.8, built offline by scripts/go-refs.sh) serving HTTP and gRPC on
 * loopback with a file CA and an identity config trusting one email issuer: the peer of the
 * differential tests and of the CT interop test.
 */

export interface FulcioOptions {
  /** Working directory; Fulcio's identity config is written here. */
  readonly work: string;
  readonly chainFile: string;
  readonly keyFile: string;
  readonly keyPassword: string;
  /** The OIDC issuer it trusts (as `email`, client ID `sigstore`). */
  readonly issuerUrl: string;
  /** `--ct-log-url` and `--ct-log-public-key-path`; none: no CT log (`--ct-log-url=`). */
  readonly ctLog?: { readonly url: string; readonly publicKeyFile: string };
  /** Names its abstract unix socket: other Fulcio processes on the machine use the default. */
  readonly tag: string;
  /** Ready once this is true; default: its HTTP API answers the trust bundle. */
  readonly ready?: (fulcio: RunningFulcio) => Promise<boolean>;
}

export interface RunningFulcio {
  readonly url: string;
  readonly grpcAddress: string;
  readonly child: ChildProcess;
  /** Everything it wrote so far (stdout and stderr). */
  output(): string;
  stop(): void;
}

export async function startFulcio(options: FulcioOptions): Promise<RunningFulcio> {
  const identity = join(options.work, 'fulcio-config.json');
  writeFileSync(
    identity,
    JSON.stringify({
      OIDCIssuers: {
        [options.issuerUrl]: { IssuerURL: options.issuerUrl, ClientID: 'sigstore', Type: 'email' },
      },
    }),
  );
  const [httpPort, grpcPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(
    goTool('fulcio'),
    [
      'serve',
      '--ca=fileca',
      `--fileca-cert=${options.chainFile}`,
      `--fileca-key=${options.keyFile}`,
      `--fileca-key-passwd=${options.keyPassword}`,
      '--fileca-watch=false',
      `--config-path=${identity}`,
      ...(options.ctLog
        ? [
            `--ct-log-url=${options.ctLog.url}`,
            `--ct-log-public-key-path=${options.ctLog.publicKeyFile}`,
          ]
        : ['--ct-log-url=']),
      '--host=127.0.0.1',
      `--port=${httpPort}`,
      '--grpc-host=127.0.0.1',
      `--grpc-port=${grpcPort}`,
      `--metrics-port=${metricsPort}`,
      `--legacy-unix-domain-socket=@mayfly-${options.tag}-${process.pid}-${grpcPort}`,
      '--log_type=prod',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.work },
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const fulcio: RunningFulcio = {
    url: `http://127.0.0.1:${httpPort}`,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    child,
    output: () => output,
    stop: () => {
      child.kill('SIGKILL');
    },
  };
  const ready =
    options.ready ??
    (async (f: RunningFulcio) => {
      try {
        return (await fetch(`${f.url}/api/v2/trustBundle`)).status === 200;
      } catch {
        return false;
      }
    });
  try {
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`fulcio exited: ${output}`);
        return ready(fulcio);
      },
      'Fulcio to serve',
      60_000,
    );
  } catch (err) {
    fulcio.stop();
    throw err;
  }
  return fulcio;
}
