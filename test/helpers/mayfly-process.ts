import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { DevIssuer } from '../../services/dev-issuer/dev-issuer';

/**
 * The compiled service as an operator runs it (`node dist/services/ca/main.js`), for tests
 * of the process lifecycle: start, signals, drain, reload, cluster workers. Every process
 * started here is killed when the test process exits.
 */

export const repoRoot = resolve(__dirname, '../..');
export const mainJs = join(repoRoot, 'dist/services/ca/main.js');

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Builds dist/ when a test runs without `npm run build` first. */
export function ensureBuilt(): void {
  if (!existsSync(mainJs))
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot, stdio: 'inherit' });
}

export interface MayflyProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  readonly metricsPort: number;
  /** The gRPC port, unless MAYFLY_GRPC_PORT was off (a cluster's workers share it). */
  readonly grpcPort: number | undefined;
  stdout(): string;
  stderr(): string;
  /** JSON log lines (pino) printed so far. */
  logs(): Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

export async function waitFor<T>(
  check: () => T | undefined | null | false,
  what: string,
  ms = 15_000,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every listener of the CA on loopback, on a port of the kernel's choosing. */
export const LOOPBACK_CA_ENV: Readonly<Record<string, string>> = {
  MAYFLY_HOST: '127.0.0.1',
  MAYFLY_PORT: '0',
  MAYFLY_METRICS_HOST: '127.0.0.1',
  MAYFLY_METRICS_PORT: '0',
  MAYFLY_GRPC_HOST: '127.0.0.1',
  MAYFLY_GRPC_PORT: '0',
};

/** Starts mayfly on free loopback ports and waits for its listening line. */
export async function startMayflyProcess(env: Record<string, string>): Promise<MayflyProcess> {
  let out = '';
  let err = '';
  const child = spawn(process.execPath, [mainJs], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? '',
      MAYFLY_LOG_LEVEL: 'info',
      // One process unless the test asks for a cluster (the default is one per core).
      MAYFLY_WORKERS: '1',
      ...LOOPBACK_CA_ENV,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) =>
    child.on('exit', (code) => {
      live.delete(child);
      exitCode = code;
      res(code);
    }),
  );
  const match = await waitFor(
    () => {
      if (exitCode !== undefined)
        throw new Error(`mayfly exited with ${exitCode} before listening:\n${err}\n${out}`);
      return out.match(/listening on http:\/\/127\.0\.0\.1:(\d+) \(metrics on port (\d+)\)/);
    },
    'the listening line',
    30_000,
  );
  const port = Number(match[1]);
  const grpc =
    env.MAYFLY_GRPC_PORT === 'off'
      ? undefined
      : await waitFor(
          () => out.match(/gRPC listening on [^\s]+:(\d+) /),
          'the gRPC listening line',
        );
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    port,
    metricsPort: Number(match[2]),
    grpcPort: grpc ? Number(grpc[1]) : undefined,
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    exited,
  };
}

/**
 * A Fulcio-format identity config trusting the given issuer for email identities, in `dir`
 * (default: a new temporary folder); returns its path. The tests' and bench/'s one copy.
 */
export function identityConfigFor(
  issuer: Pick<DevIssuer, 'url'>,
  dir = mkdtempSync(join(tmpdir(), 'mayfly-identity-')),
): string {
  const path = join(dir, 'identity.yaml');
  writeFileSync(
    path,
    `oidc-issuers:\n  ${issuer.url}:\n    issuer-url: ${issuer.url}\n    client-id: sigstore\n    type: email\n`,
  );
  return path;
}

export interface SigningOutcome {
  /** HTTP status, or undefined when the connection failed before any answer. */
  readonly status?: number;
  /** errno-style code of a connection failure (ECONNREFUSED, ECONNRESET, ...). */
  readonly error?: string;
  /** Leaf first, then the chain. */
  readonly certificates?: X509Certificate[];
  readonly body?: string;
  readonly startedAt: number;
  readonly endedAt: number;
}

/** A v2 signing request body for a fresh P-256 key and the given identity. */
export async function signingBody(issuer: DevIssuer, email: string): Promise<string> {
  const token = await issuer.mintEmail(email);
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return JSON.stringify({
    credentials: { oidcIdentityToken: token },
    publicKeyRequest: {
      publicKey: {
        algorithm: 'ECDSA',
        content: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      },
      proofOfPossession: sign('sha256', Buffer.from(email), privateKey).toString('base64'),
    },
  });
}

function parseCertificates(status: number, body: string): X509Certificate[] | undefined {
  if (status !== 200) return undefined;
  const parsed = JSON.parse(body) as {
    signedCertificateDetachedSct?: { chain?: { certificates?: string[] } };
  };
  return parsed.signedCertificateDetachedSct?.chain?.certificates?.map(
    (pem) => new X509Certificate(pem),
  );
}

/**
 * POST /api/v2/signingCert on a connection of its own (no keep-alive), so that a failure
 * is unambiguous: either the server answered, or the connection failed (refused or reset)
 * before any answer.
 */
export function postSigningRequest(url: string, body: string): Promise<SigningOutcome> {
  const startedAt = Date.now();
  return new Promise((resolvePromise) => {
    const req = httpRequest(
      `${url}/api/v2/signingCert`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolvePromise({
            status: res.statusCode!,
            body: text,
            certificates: parseCertificates(res.statusCode!, text),
            startedAt,
            endedAt: Date.now(),
          }),
        );
        res.on('error', (err: NodeJS.ErrnoException) =>
          resolvePromise({
            status: res.statusCode!,
            error: err.code ?? err.message,
            startedAt,
            endedAt: Date.now(),
          }),
        );
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolvePromise({ error: err.code ?? err.message, startedAt, endedAt: Date.now() }),
    );
    req.end(body);
  });
}

/**
 * A signing request sent in two halves: the headers and the first half of the body now,
 * the rest when `finish()` is called. Between the two the request is in flight on the
 * server (accepted, its body still arriving).
 */
export function slowSigningRequest(
  url: string,
  body: string,
): { finish(): void; outcome: Promise<SigningOutcome> } {
  const startedAt = Date.now();
  const half = Math.floor(body.length / 2);
  let req!: ReturnType<typeof httpRequest>;
  const outcome = new Promise<SigningOutcome>((resolvePromise) => {
    req = httpRequest(
      `${url}/api/v2/signingCert`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolvePromise({
            status: res.statusCode!,
            body: text,
            certificates: parseCertificates(res.statusCode!, text),
            startedAt,
            endedAt: Date.now(),
          }),
        );
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolvePromise({ error: err.code ?? err.message, startedAt, endedAt: Date.now() }),
    );
    req.flushHeaders();
    req.write(body.slice(0, half));
  });
  return { finish: () => req.end(body.slice(half)), outcome };
}

/** GET a path on a fresh connection: the status, or the connection error code. */
export function probe(url: string): Promise<number | string> {
  return new Promise((resolvePromise) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolvePromise(res.statusCode!));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolvePromise(err.code ?? err.message));
    req.end();
  });
}

/** The trust bundle's chains, as parsed certificates. */
export async function trustBundle(url: string): Promise<X509Certificate[][]> {
  const res = await fetch(`${url}/api/v2/trustBundle`);
  const body = (await res.json()) as { chains: { certificates: string[] }[] };
  return body.chains.map((c) => c.certificates.map((pem) => new X509Certificate(pem)));
}

/** Whether a leaf verifies up to the root of `chain` (each link checked with node:crypto). */
export function chainsTo(leaf: X509Certificate, chain: readonly X509Certificate[]): boolean {
  let child = leaf;
  for (const parent of chain) {
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) return false;
    child = parent;
  }
  const root = chain[chain.length - 1];
  return !!root && root.checkIssued(root) && root.verify(root.publicKey);
}
