import { startDevIssuer, type DevIssuer } from '../../services/dev-issuer/dev-issuer';
import {
  chainsTo,
  ensureBuilt,
  identityConfigFor,
  postSigningRequest,
  signingBody,
  startMayflyProcess,
  trustBundle,
} from '../helpers/mayfly-process';
import { GrpcTestClient } from '../helpers/grpc';

/**
 * MAYFLY_WORKERS=2: two worker processes behind one port. They sign with one ephemeral CA
 * (made by the primary), serve the same trust bundle, and the primary's metrics add up
 * what both workers did. SIGTERM drains both and the primary exits 0.
 */

let issuer: DevIssuer;
let identityConfig: string;

beforeAll(async () => {
  ensureBuilt();
  issuer = await startDevIssuer();
  identityConfig = identityConfigFor(issuer);
}, 120_000);

afterAll(async () => {
  await issuer?.close();
});

test('two workers: one CA, both serving, metrics aggregated, clean stop', async () => {
  const proc = await startMayflyProcess({
    MAYFLY_IDENTITY_CONFIG: identityConfig,
    MAYFLY_RATELIMITS: 'off',
    MAYFLY_WORKERS: '2',
  });
  try {
    expect(proc.stdout()).toContain('mayfly: 2 worker processes (MAYFLY_WORKERS=2)');
    // The primary prints the gRPC port the workers share, as one process does.
    const grpc = new GrpcTestClient(`127.0.0.1:${proc.grpcPort!}`);
    try {
      const health = await grpc.call<{ status: string }>(grpc.health, 'Check', { service: '' });
      expect(health.value?.status).toBe('SERVING');
    } finally {
      grpc.close();
    }
    const bundles = await Promise.all(Array.from({ length: 6 }, () => trustBundle(proc.url)));
    const fingerprints = new Set(bundles.map((b) => b[0]![0]!.fingerprint256));
    expect(fingerprints.size).toBe(1);
    const [chain] = bundles[0]!;

    const count = 12;
    const outcomes = [];
    for (let i = 0; i < count; i++) {
      // A connection per request: the primary hands connections to workers in turn.
      outcomes.push(
        await postSigningRequest(proc.url, await signingBody(issuer, `worker-${i}@example.com`)),
      );
    }
    expect(outcomes.map((o) => o.status)).toEqual(Array(count).fill(200));
    for (const o of outcomes) expect(chainsTo(o.certificates![0]!, chain!)).toBe(true);

    const issuedBy = new Set(
      proc
        .logs()
        .filter((l) => l.msg === 'signing certificate issued')
        .map((l) => l.worker),
    );
    expect([...issuedBy].sort()).toEqual([1, 2]);

    const metrics = await (await fetch(`http://127.0.0.1:${proc.metricsPort}/metrics`)).text();
    // Summed over every series (labels: issuer, type) and over both workers.
    const issued = metrics
      .split('\n')
      .filter((line) => line.startsWith('mayfly_certificates_issued_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
    expect(issued).toBe(count);
    expect(metrics).toMatch(/mayfly_build_info\{[^}]*\} 1\b/);

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.logs().filter((l) => l.msg === 'stopped' && l.worker !== undefined)).toHaveLength(
      2,
    );
  } finally {
    proc.child.kill('SIGKILL');
  }
}, 60_000);

test('refuses MAYFLY_DEV_ISSUER: the CA holds no development issuer, with workers or without', async () => {
  await expect(
    startMayflyProcess({
      MAYFLY_IDENTITY_CONFIG: identityConfig,
      MAYFLY_WORKERS: '2',
      MAYFLY_DEV_ISSUER: 'true',
      MAYFLY_DEV_ISSUER_PORT: '0',
    }),
  ).rejects.toThrow(
    /exited with 2[\s\S]*MAYFLY_DEV_ISSUER: the development OIDC issuer is no longer part of the CA/,
  );
});
