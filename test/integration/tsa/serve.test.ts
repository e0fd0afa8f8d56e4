/**
 * `mayfly serve` (what `npm run serve` runs after building): the CA, the TSA and the CT log
 * as processes on their own ports, reachable, and all drained and gone after one SIGTERM to
 * the supervisor. The CA embeds the log's SCTs (checked by certificate-transparency-go), and a
 * trusted root written from the three (with the log the banner names) is complete. With
 * --dev-issuer (the README's walk-through) the development issuer runs beside them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run as trustedRoot } from '../../../services/cli/trusted-root';
import { startDevIssuer } from '../../../services/dev-issuer/dev-issuer';
import { buildGo } from '../../helpers/go-refs';
import {
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  repoRoot,
  signingBody,
} from '../../helpers/mayfly-process';
import { freePort } from '../../helpers/redis';
import { until } from '../../helpers/wait';

jest.setTimeout(120_000);

beforeAll(() => ensureBuilt());

interface ServePorts {
  readonly ca: number;
  readonly caMetrics: number;
  readonly tsa: number;
  readonly tsaMetrics: number;
  readonly ctlog: number;
}

/** Every listener of `mayfly serve` on loopback, on free ports, quiet. */
async function servePorts(): Promise<ServePorts> {
  return {
    ca: await freePort(),
    caMetrics: await freePort(),
    tsa: await freePort(),
    tsaMetrics: await freePort(),
    ctlog: await freePort(),
  };
}

function serveEnv(p: ServePorts, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    MAYFLY_HOST: '127.0.0.1',
    MAYFLY_PORT: String(p.ca),
    MAYFLY_METRICS_HOST: '127.0.0.1',
    MAYFLY_METRICS_PORT: String(p.caMetrics),
    MAYFLY_GRPC_PORT: 'off',
    MAYFLY_TSA_HOST: '127.0.0.1',
    MAYFLY_TSA_PORT: String(p.tsa),
    MAYFLY_TSA_METRICS_HOST: '127.0.0.1',
    MAYFLY_TSA_METRICS_PORT: String(p.tsaMetrics),
    MAYFLY_CTLOG_HOST: '127.0.0.1',
    MAYFLY_CTLOG_PORT: String(p.ctlog),
    MAYFLY_LOG_LEVEL: 'silent',
    MAYFLY_TSA_LOG_LEVEL: 'silent',
    ...extra,
  };
}

test('serve starts the CA, the TSA and the CT log, the CA embeds SCTs, and SIGTERM stops all', async () => {
  const ports = await servePorts();
  const { ca, tsa, ctlog } = ports;
  const issuer = await startDevIssuer();
  const child = spawn(process.execPath, [join(repoRoot, 'dist/services/cli/main.js'), 'serve'], {
    env: serveEnv(ports, { MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer) }),
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  try {
    await until(
      () => output.includes('mayfly serve: CA on'),
      `the serve banner (${output})`,
      60_000,
    );
    expect(output).toContain(`CA on http://127.0.0.1:${ca}, TSA on http://127.0.0.1:${tsa}`);
    expect(output).toContain(`CT log on http://127.0.0.1:${ctlog}`);
    const ctlogArg = new RegExp(`--ctlog (http://127\\.0\\.0\\.1:${ctlog}),(\\S+)`).exec(output);
    expect(ctlogArg).not.toBeNull();
    const logKey = createPublicKey(readFileSync(ctlogArg![2]!, 'utf8'));
    // A certificate from the CA carries an SCT of that log, which ct-go verifies.
    const signed = await postSigningRequest(
      `http://127.0.0.1:${ca}`,
      await signingBody(issuer, 'alice@example.com'),
    );
    expect(signed.status).toBe(200);
    const chain = (
      JSON.parse(signed.body!) as {
        signedCertificateEmbeddedSct: { chain: { certificates: string[] } };
      }
    ).signedCertificateEmbeddedSct.chain.certificates;
    execFileSync(buildGo('test/go/embedded-sct-check'), {
      input: JSON.stringify({
        keys: [logKey.export({ type: 'spki', format: 'der' }).toString('base64')],
        chain: chain.map((p) => new X509Certificate(p).raw.toString('base64')),
      }),
    });
    expect((await fetch(`http://127.0.0.1:${ca}/api/v2/trustBundle`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${tsa}/api/v1/timestamp/certchain`)).status).toBe(200);
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(
        await trustedRoot([
          '--ca-url',
          `http://127.0.0.1:${ca}`,
          '--tsa-url',
          `http://127.0.0.1:${tsa}`,
          '--ctlog',
          `${ctlogArg![1]},${ctlogArg![2]}`,
        ]),
      ).toBe(0);
    } finally {
      stdout.mockRestore();
    }
  } finally {
    child.kill('SIGTERM');
    await issuer.close();
  }
  expect(await exited).toBe(0);
  // Both listeners are gone with their processes.
  await expect(fetch(`http://127.0.0.1:${ca}/healthz`)).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${tsa}/healthz`)).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${ctlog}/healthz`)).rejects.toThrow();
});

test('serve --dev-issuer starts the development issuer beside them and the CA trusts it (and only it)', async () => {
  const ports = await servePorts();
  const { ca } = ports;
  const dev = await freePort();
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'dist/services/cli/main.js'), 'serve', '--dev-issuer'],
    // MAYFLY_DEV_ISSUER_PORT is read by the supervisor, never passed on: the CA refuses
    // MAYFLY_DEV_ISSUER*.
    { env: serveEnv(ports, { MAYFLY_DEV_ISSUER_PORT: String(dev) }) },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  try {
    await until(
      () => output.includes('mayfly serve: CA on'),
      `the serve banner (${output})`,
      60_000,
    );
    expect(output).toContain(`development issuer on http://127.0.0.1:${dev}`);
    const email = 'walk-through@example.com';
    const token = await (
      await fetch(`http://127.0.0.1:${dev}/token?email=${encodeURIComponent(email)}`)
    ).text();
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const body = (t: string) =>
      JSON.stringify({
        credentials: { oidcIdentityToken: t },
        publicKeyRequest: {
          publicKey: { content: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
          proofOfPossession: sign('sha256', Buffer.from(email), privateKey).toString('base64'),
        },
      });
    const signed = await postSigningRequest(`http://127.0.0.1:${ca}`, body(token));
    expect(signed.status).toBe(200);
    const leaf = new X509Certificate(
      (
        JSON.parse(signed.body!) as {
          signedCertificateEmbeddedSct: { chain: { certificates: string[] } };
        }
      ).signedCertificateEmbeddedSct.chain.certificates[0]!,
    );
    expect(leaf.subjectAltName).toBe(`email:${email}`);
    // A token from another issuer is refused: the CA trusts the development issuer alone.
    const other = await startDevIssuer();
    try {
      const refused = await postSigningRequest(
        `http://127.0.0.1:${ca}`,
        body(await other.mintEmail(email)),
      );
      expect(refused.status).toBe(400);
    } finally {
      await other.close();
    }
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  await expect(fetch(`http://127.0.0.1:${dev}/.well-known/openid-configuration`)).rejects.toThrow();
});
