import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * A tripwire HTTP proxy on 127.0.0.1. cosign's environment names it as HTTP(S)_PROXY: Go never
 * proxies loopback addresses, so mayfly and the TSA are reached directly, while any attempt to
 * reach anything else (TUF, Rekor, the public Fulcio, an OIDC issuer) lands here, is counted and
 * refused, without a DNS lookup or a packet leaving the machine.
 */
export interface Tripwire {
  url: string;
  hits: string[];
  close(): Promise<void>;
}

export async function startTripwire(): Promise<Tripwire> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(`${req.method ?? '?'} ${req.url ?? '?'}`);
    res.writeHead(403).end('no network in tests');
  });
  server.on('connect', (req: { url?: string }, socket: { destroy(): void }) => {
    hits.push(`CONNECT ${req.url ?? '?'}`);
    socket.destroy();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

export interface CosignRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** cosign run in `work`, its HOME and TUF_ROOT inside it, the tripwire its only proxy. */
export function runCosignIn(
  cosign: string,
  work: string,
  tripwire: Tripwire,
  args: string[],
): Promise<CosignRun> {
  return new Promise((done) => {
    execFile(
      cosign,
      args,
      {
        cwd: work,
        timeout: 60_000,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: join(work, 'home'),
          TUF_ROOT: join(work, 'tuf'),
          HTTP_PROXY: tripwire.url,
          HTTPS_PROXY: tripwire.url,
          NO_PROXY: '',
        },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

/** `cosign sign-blob` against mayfly and its TSA, no Rekor, into a new-format bundle. */
export function signBlobArgs(o: {
  blob: string;
  token: string;
  fulcioUrl: string;
  tsaUrl: string;
  bundle: string;
}): string[] {
  return [
    'sign-blob',
    o.blob,
    '--identity-token',
    o.token,
    '--fulcio-url',
    o.fulcioUrl,
    '--insecure-skip-verify=true',
    '--tlog-upload=false',
    '--timestamp-server-url',
    `${o.tsaUrl}/api/v1/timestamp`,
    '--new-bundle-format',
    '--bundle',
    o.bundle,
  ];
}
