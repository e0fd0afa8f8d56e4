import { Metadata, status } from '@grpc/grpc-js';
import { startDevIssuer, type DevIssuer } from '../../../services/dev-issuer/dev-issuer';
import { GrpcTestClient, v2Message } from '../../helpers/grpc';
import { makeKey, proofFor } from '../../helpers/keys';
import {
  ensureBuilt,
  identityConfigFor,
  startMayflyProcess,
  type MayflyProcess,
} from '../../helpers/mayfly-process';

/**
 * The compiled service with its gRPC port: MAYFLY_GRPC_PORT=0 prints the port it got,
 * `off` serves no gRPC, unreadable TLS files stop the start with status 2, and SIGTERM
 * drains the gRPC listener beside the HTTP one.
 */

let issuer: DevIssuer;
const procs: MayflyProcess[] = [];

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
}, 120_000);
afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await issuer.close();
});

async function start(env: Record<string, string>) {
  const proc = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: identityConfigFor(issuer),
    ...env,
  });
  procs.push(proc);
  return proc;
}

test('MAYFLY_GRPC_PORT=0 serves gRPC on a printed free port; SIGTERM drains it', async () => {
  const proc = await start({ MAYFLY_GRPC_PORT: '0' });
  expect(proc.grpcPort).toBeGreaterThan(0);
  const client = new GrpcTestClient(`127.0.0.1:${proc.grpcPort}`);
  try {
    const health = await client.call<{ status: string }>(client.health, 'Check', { service: '' });
    expect(health.value?.status).toBe('SERVING');
    const key = makeKey('p256');
    const email = 'process@example.com';
    const metadata = new Metadata();
    metadata.set('oidcidentitytoken', await issuer.mintEmail(email));
    const signed = await client.sign(v2Message(undefined, key.pem, proofFor(key, email)), metadata);
    expect(signed.error).toBeUndefined();
    expect(signed.value?.signedCertificateDetachedSct?.chain.certificates).toHaveLength(3);
    const metrics = await (await fetch(`http://127.0.0.1:${proc.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(
      /mayfly_grpc_server_handled_total\{grpc_service="dev.sigstore.fulcio.v2.CA",grpc_method="CreateSigningCertificate",grpc_code="OK",grpc_type="unary"\} 1/,
    );
  } finally {
    client.close();
  }
  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
  const stopped = proc.logs().find((l) => l.msg === 'stopped');
  expect(stopped?.forced).toBe(false);
  const after = new GrpcTestClient(`127.0.0.1:${proc.grpcPort}`);
  expect((await after.call(after.health, 'Check', { service: '' })).error?.code).toBe(
    status.UNAVAILABLE,
  );
  after.close();
});

test('MAYFLY_GRPC_PORT=off serves no gRPC', async () => {
  const proc = await start({ MAYFLY_GRPC_PORT: 'off' });
  expect(proc.grpcPort).toBeUndefined();
  expect(proc.stdout()).not.toContain('gRPC listening');
  const listening = proc.logs().find((l) => l.msg === 'mayfly listening');
  expect(listening?.grpcPort).toBeUndefined();
  proc.child.kill('SIGTERM');
  expect(await proc.exited).toBe(0);
});

test('unreadable gRPC TLS files stop the start with status 2 and a clear message', async () => {
  await expect(
    start({
      MAYFLY_GRPC_PORT: '0',
      MAYFLY_GRPC_TLS_CERT: '/nonexistent/tls.crt',
      MAYFLY_GRPC_TLS_KEY: '/nonexistent/tls.key',
    }),
  ).rejects.toThrow(/exited with 2[\s\S]*cannot read the gRPC TLS files/);
});
