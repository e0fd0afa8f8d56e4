import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { Writable } from 'node:stream';
import { credentials, Metadata, status, type ClientReadableStream } from '@grpc/grpc-js';
import request from 'supertest';
import { createLogger } from '../../../services/common/logger';
import { closeSelfDraining } from '../../../services/ca/lifecycle';
import { createSigner } from '../../../services/ca/app';
import { systemClock } from '../../../services/common/clock';
import { GrpcTestClient, startTestGrpc, v2Message, type TestGrpc } from '../../helpers/grpc';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';
import { ROOMY, metricValue, writeLimits } from '../../helpers/ratelimit';
import { makeTestTls } from '../../helpers/tls';
import { until } from '../../helpers/wait';

/**
 * The gRPC listener around the CA service: the same rate limits as HTTP (one bucket per
 * client address whichever transport it uses), health, metrics, audit, TLS with hot
 * reload, and the graceful stop that lets a call in flight finish.
 */

const EMAIL = 'grpc@example.com';
const key = makeKey('p256');
const cas: TestCa[] = [];
const servers: TestGrpc[] = [];

async function serve(
  options: Parameters<typeof startTestCa>[0] = {},
  settings: Parameters<typeof startTestGrpc>[1] = {},
) {
  const ca = await startTestCa(options);
  cas.push(ca);
  const grpc = await startTestGrpc(ca, settings);
  servers.push(grpc);
  return { ca, grpc };
}

afterAll(async () => {
  for (const s of servers) s.close();
  await Promise.all(cas.map((ca) => ca.close()));
});

async function goodMessage(ca: TestCa, email = EMAIL) {
  return v2Message(await ca.issuer.mintEmail(email), key.pem, proofFor(key, email));
}

describe('rate limits: a request can do over gRPC only what it can over HTTP', () => {
  const ONE_AN_HOUR = { burst: 1, count: 1, period: '1h' };

  test('the per-identity limit is one bucket across HTTP and gRPC', async () => {
    const file = writeLimits({
      defaults: { 'per-client-ip': ROOMY, 'per-identity': ONE_AN_HOUR, 'per-issuer': ROOMY },
    });
    const { ca, grpc } = await serve({ env: { MAYFLY_RATELIMITS: file } });
    const token = await ca.issuer.mintEmail(EMAIL);
    const http = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    expect(http.status).toBe(200);
    const before = ca.signCount();
    const { error } = await grpc.client.sign(v2Message(token, key.pem, proofFor(key, EMAIL)));
    expect({ code: error?.code, details: error?.details }).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      details: 'rate limit exceeded: per-identity',
    });
    // Retry-After travels as trailing metadata, in whole seconds.
    expect(Number(error?.metadata.get('retry-after')[0])).toBeGreaterThanOrEqual(3599);
    expect(ca.signCount()).toBe(before);
    expect(await metricValue(ca, 'mayfly_signing_refusals_total', { reason: 'rate_limit' })).toBe(
      1,
    );
  });

  test('the per-client-ip limit counts the peer; x-forwarded-for only from trusted proxies', async () => {
    const file = () => writeLimits({ defaults: { 'per-client-ip': ONE_AN_HOUR } });
    const plain = await serve({ env: { MAYFLY_RATELIMITS: file() } });
    const from = (g: TestGrpc, ip: string) => {
      const metadata = new Metadata();
      metadata.set('x-forwarded-for', ip);
      return g.client.sign({}, metadata);
    };
    // The peer (127.0.0.1) is the client: a forged header picks no fresh bucket.
    expect((await from(plain.grpc, '192.0.2.1')).error?.code).toBe(status.INVALID_ARGUMENT);
    expect((await from(plain.grpc, '192.0.2.2')).error?.code).toBe(status.RESOURCE_EXHAUSTED);
    // HTTP from the same address shares that bucket.
    expect((await request(plain.ca.app.api).post('/api/v2/signingCert').send({})).status).toBe(429);

    const proxied = await serve({
      env: { MAYFLY_RATELIMITS: file(), MAYFLY_TRUSTED_PROXIES: 'loopback' },
    });
    expect((await from(proxied.grpc, '192.0.2.1')).error?.code).toBe(status.INVALID_ARGUMENT);
    expect((await from(proxied.grpc, '192.0.2.2')).error?.code).toBe(status.INVALID_ARGUMENT);
    expect((await from(proxied.grpc, '192.0.2.1')).error?.code).toBe(status.RESOURCE_EXHAUSTED);
    // Only the right-most untrusted entry counts.
    expect((await from(proxied.grpc, '198.51.100.7, 192.0.2.2')).error?.code).toBe(
      status.RESOURCE_EXHAUSTED,
    );
  });
});

describe('health', () => {
  test('Check, List and Watch follow readiness; unknown services are NOT_FOUND', async () => {
    const { ca, grpc } = await serve();
    const check = (service: string) =>
      grpc.client.call<{ status: string }>(grpc.client.health, 'Check', { service });
    expect((await check('')).value?.status).toBe('SERVING');
    expect((await check('dev.sigstore.fulcio.v2.CA')).value?.status).toBe('SERVING');
    expect((await check('nope')).error?.code).toBe(status.NOT_FOUND);
    const list = await grpc.client.call<{ statuses: Record<string, { status: string }> }>(
      grpc.client.health,
      'List',
      {},
    );
    expect(Object.keys(list.value!.statuses).sort()).toEqual([
      '',
      'dev.sigstore.fulcio.v2.CA',
      'grpc.health.v1.Health',
    ]);

    const seen: string[] = [];
    const watch = (
      grpc.client.health as unknown as {
        Watch(req: object): ClientReadableStream<{ status: string }>;
      }
    ).Watch({ service: '' });
    watch.on('data', (m: { status: string }) => seen.push(m.status));
    watch.on('error', () => undefined);
    await until(() => seen.length === 1, 'the first Watch message');
    ca.app.setReady(false);
    expect((await check('')).value?.status).toBe('NOT_SERVING');
    await until(() => seen.length === 2, 'the Watch update', 5000);
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    watch.cancel();
    ca.app.setReady(true);
  });
});

describe('metrics and audit', () => {
  test('each call is counted by method and code, in the gRPC and the request families', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const { ca, grpc } = await serve({ auditLogger: createLogger('info', sink) });
    expect((await grpc.client.sign(await goodMessage(ca))).error).toBeUndefined();
    expect((await grpc.client.sign({})).error?.code).toBe(status.INVALID_ARGUMENT);
    const method = { grpc_service: 'dev.sigstore.fulcio.v2.CA' };
    expect(
      await metricValue(ca, 'mayfly_grpc_server_handled_total', {
        ...method,
        grpc_method: 'CreateSigningCertificate',
        grpc_code: 'OK',
      }),
    ).toBe(1);
    expect(
      await metricValue(ca, 'mayfly_grpc_server_handled_total', {
        ...method,
        grpc_method: 'CreateSigningCertificate',
        grpc_code: 'InvalidArgument',
      }),
    ).toBe(1);
    const route = '/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate';
    expect(
      await metricValue(ca, 'mayfly_http_request_duration_seconds_count', {
        route,
        method: 'POST',
        code: '400',
      }),
    ).toBe(1);
    expect(
      await metricValue(ca, 'mayfly_certificates_issued_total', { issuer_type: 'email' }),
    ).toBe(1);
    const audit = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    // The CA audits the certificate it is about to sign, then the result (as for HTTP).
    expect(audit.map((a) => [a.event, a.route])).toEqual([
      ['certificate_signing', route],
      ['certificate_issued', route],
      ['signing_refused', route],
    ]);
    expect(lines.join('')).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
  });
});

describe('TLS', () => {
  test('serves TLS from files and picks up a new certificate without a restart', async () => {
    const first = makeTestTls(['localhost']);
    const second = makeTestTls(['localhost']);
    const dir = mkdtempSync(join(tmpdir(), 'mayfly-grpc-tls-'));
    const cert = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    writeFileSync(cert, first.cert);
    writeFileSync(keyFile, first.key);
    const { grpc } = await serve({}, { tls: { cert, key: keyFile, reloadIntervalMs: 100 } });
    const options = { 'grpc.ssl_target_name_override': 'localhost' };
    const client = new GrpcTestClient(
      grpc.address,
      credentials.createSsl(Buffer.from(first.caPem)),
      options,
    );
    try {
      const bundle = await client.call(client.ca, 'GetTrustBundle', {});
      expect(bundle.error).toBeUndefined();
      // A plaintext client gets nowhere.
      const plain = new GrpcTestClient(grpc.address);
      expect((await plain.call(plain.ca, 'GetTrustBundle', {})).error?.code).toBe(
        status.UNAVAILABLE,
      );
      plain.close();

      const served = () =>
        new Promise<string>((resolve, reject) => {
          const socket = connect({
            host: '127.0.0.1',
            port: grpc.running.port,
            servername: 'localhost',
            ALPNProtocols: ['h2'],
            rejectUnauthorized: false,
          });
          socket.once('secureConnect', () => {
            resolve(socket.getPeerX509Certificate()!.fingerprint256);
            socket.destroy();
          });
          socket.once('error', reject);
        });
      const firstPrint = await served();
      // A key that does not match is refused; the old pair keeps serving.
      writeFileSync(cert, second.cert);
      await new Promise((r) => setTimeout(r, 300));
      expect(await served()).toBe(firstPrint);
      writeFileSync(keyFile, second.key);
      await until(async () => (await served()) !== firstPrint, 'the new certificate', 5000);
      const fresh = new GrpcTestClient(
        grpc.address,
        credentials.createSsl(Buffer.from(second.caPem)),
        options,
      );
      expect((await fresh.call(fresh.ca, 'GetTrustBundle', {})).error).toBeUndefined();
      fresh.close();
    } finally {
      client.close();
    }
  });
});

describe('graceful stop', () => {
  test('a call in flight finishes; new calls are refused', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const config = { ca: { type: 'ephemeral' } } as never;
    const inner = await createSigner(config, systemClock);
    const { ca, grpc } = await serve({
      overrides: {
        signer: {
          get chain() {
            return inner.chain;
          },
          publicKey: inner.publicKey,
          hash: inner.hash,
          sign: async (tbs) => {
            await held;
            return inner.sign(tbs);
          },
        },
      },
    });
    const inFlight = grpc.client.sign(await goodMessage(ca));
    await until(() => ca.signCount() === 1, 'the call to reach the signer');
    const closing = closeSelfDraining(grpc.running.drainable, 10_000);
    // New connections are refused while the call finishes.
    const late = new GrpcTestClient(grpc.address);
    const refused = await late.call(late.ca, 'GetTrustBundle', {});
    expect(refused.error?.code).toBe(status.UNAVAILABLE);
    late.close();
    release();
    const answer = await inFlight;
    expect(answer.error).toBeUndefined();
    expect(answer.value?.signedCertificateDetachedSct?.chain.certificates).toHaveLength(3);
    expect(await closing).toEqual({ forced: false });
  });

  test('after the grace period the rest is cut', async () => {
    const inner = await createSigner({ ca: { type: 'ephemeral' } } as never, systemClock);
    const { ca, grpc } = await serve({
      // The signer never answers; its timeout must not outlive the test.
      env: { MAYFLY_CA_SIGN_TIMEOUT_MS: '600' },
      overrides: {
        signer: {
          get chain() {
            return inner.chain;
          },
          publicKey: inner.publicKey,
          hash: inner.hash,
          sign: () => new Promise(() => undefined),
        },
      },
    });
    const inFlight = grpc.client.sign(await goodMessage(ca));
    await until(() => ca.signCount() === 1, 'the call to reach the signer');
    expect(await closeSelfDraining(grpc.running.drainable, 200)).toEqual({
      forced: true,
    });
    expect((await inFlight).error).toBeDefined();
  });
});
