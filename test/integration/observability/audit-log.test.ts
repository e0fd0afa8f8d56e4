import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { AuditLog, createAuditLogger } from '../../../services/ca/audit/audit-log';
import { systemClock } from '../../../services/common/clock';
import { createLogger } from '../../../services/common/logger';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import { makeCsr, makeKey, proofFor, spkiDer } from '../../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../../helpers/mayfly';

/**
 * The audit log: one JSON line per signing request's outcome, on its own logger (its own
 * destination), checked field by field, and never holding a token, a proof or a key.
 */

const EMAIL = 'audit@example.com';

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

const audit = sink();
const operational = sink();
let ca: TestCa;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-audit-'));
  const limits = join(dir, 'ratelimits.yaml');
  writeFileSync(limits, 'defaults:\n  per-identity: { burst: 1, count: 1, period: 1h }\n');
  ca = await startTestCa({
    env: { MAYFLY_RATELIMITS: limits },
    logger: createLogger('info', operational.stream),
    auditLogger: createAuditLogger({ destination: audit.stream }),
  });
});
afterAll(() => ca.close());

/** The audit lines a request produced, parsed. */
async function auditedBy(send: () => Promise<request.Response>) {
  const before = audit.lines.length;
  const res = await send();
  return {
    res,
    lines: audit.lines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The secret material of a request: none of it may appear in any audit line. */
function secretsOf(token: string, proof: Buffer, pem: string): string[] {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const keyBody = pem.replace(/-----[A-Z ]+-----|\s/g, '');
  return [
    token,
    header,
    payload,
    signature,
    proof.toString('base64'),
    keyBody,
    keyBody.slice(20, 60),
  ];
}

describe('a certificate issued', () => {
  test('is two audit lines from the CA, before and after the signature, each field matching the certificate', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const proof = proofFor(key, EMAIL);
    const { res, lines } = await auditedBy(() =>
      request(ca.app.api)
        .post('/api/v2/signingCert')
        .set('X-Request-Id', 'audit-issued-1')
        .send(v2Body(token, key.pem, proof)),
    );
    expect(res.status).toBe(200);
    expect(lines.map((l) => l.event)).toEqual(['certificate_signing', 'certificate_issued']);
    const [before, line] = lines as [Record<string, unknown>, Record<string, unknown>];
    // The line written before the signer was called: the same content, no certificate yet.
    const { time: _t0, msg: beforeMsg, event: _e0, ...signing } = before;
    const { time: _t1, msg: _m1, event: _e1, certificateSha256, ...issued } = line;
    expect(beforeMsg).toBe('signing certificate');
    expect(signing).toEqual(issued);
    expect(certificateSha256).toMatch(/^[0-9a-f]{64}$/);
    const body = res.body as {
      signedCertificateDetachedSct: { chain: { certificates: string[] } };
    };
    const leaf = new X509Certificate(body.signedCertificateDetachedSct.chain.certificates[0]!);

    expect(Object.keys(line).sort()).toEqual(
      [
        'level',
        'time',
        'service',
        'log',
        'event',
        'requestId',
        'route',
        'clientIp',
        'serial',
        'san',
        'issuer',
        'issuerType',
        'subject',
        'keyAlgorithm',
        'publicKeySha256',
        'certificateSha256',
        'notBefore',
        'notAfter',
        'msg',
      ].sort(),
    );
    expect(line.log).toBe('audit');
    expect(line.service).toBe('mayfly');
    expect(line.event).toBe('certificate_issued');
    expect(line.msg).toBe('certificate issued');
    expect(line.level).toBe(30);
    expect(Number.isNaN(Date.parse(line.time as string))).toBe(false);
    expect(line.requestId).toBe('audit-issued-1');
    expect(res.headers['x-request-id']).toBe('audit-issued-1');
    expect(line.route).toBe('/api/v2/signingCert');
    expect(line.clientIp).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
    expect(line.serial).toMatch(/^[0-9a-f]+$/);
    expect(BigInt(`0x${line.serial as string}`)).toBe(BigInt(`0x${leaf.serialNumber}`));
    expect(line.san).toEqual({ type: 'email', value: EMAIL });
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
    expect(line.issuer).toBe(ca.issuer.url);
    expect(line.issuerType).toBe('email');
    expect(line.subject).toBe(EMAIL);
    expect(line.keyAlgorithm).toBe('ecdsa-P-256');
    expect(line.publicKeySha256).toBe(createHash('sha256').update(spkiDer(key.pem)).digest('hex'));
    expect(line.certificateSha256).toBe(leaf.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(line.notBefore).toBe(new Date(leaf.validFrom).toISOString());
    expect(line.notAfter).toBe(new Date(leaf.validTo).toISOString());

    const raw = audit.lines.slice(-2).join('\n');
    for (const secret of secretsOf(token, proof, key.pem)) expect(raw).not.toContain(secret);
  });

  test('names the key algorithm for RSA and Ed25519 keys, and the v1 route', async () => {
    for (const [kind, want] of [
      ['rsa3072', 'rsa-3072'],
      ['ed25519', 'ed25519'],
    ] as const) {
      const email = `audit-${kind}@example.com`;
      const key = makeKey(kind);
      const token = await ca.issuer.mintEmail(email);
      const { res, lines } = await auditedBy(() =>
        request(ca.app.api)
          .post('/api/v1/signingCert')
          .set('Authorization', `Bearer ${token}`)
          .send(v1Body(key.pem, proofFor(key, email))),
      );
      expect(res.status).toBe(201);
      expect(lines.map((l) => [l.event, l.route, l.keyAlgorithm])).toEqual([
        ['certificate_signing', '/api/v1/signingCert', want],
        ['certificate_issued', '/api/v1/signingCert', want],
      ]);
    }
  });

  test('goes to the audit logger only: the operational log keeps its own line', async () => {
    const before = operational.lines.length;
    const key = makeKey('p256');
    const email = 'audit-split@example.com';
    const token = await ca.issuer.mintEmail(email);
    const { lines } = await auditedBy(() =>
      request(ca.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(token, key.pem, proofFor(key, email))),
    );
    expect(lines.map((l) => l.event)).toEqual(['certificate_signing', 'certificate_issued']);
    const ops = operational.lines
      .slice(before)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(ops.some((l) => l.log === 'audit')).toBe(false);
    expect(ops.some((l) => l.msg === 'signing certificate issued')).toBe(true);
  });
});

describe('a request refused', () => {
  test('an expired token: reason token, the token failure, the issuer, and no token', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL, { expiresIn: -60 });
    const proof = proofFor(key, EMAIL);
    const { res, lines } = await auditedBy(() =>
      request(ca.app.api)
        .post('/api/v2/signingCert')
        .set('X-Request-Id', 'audit-refused-1')
        .send(v2Body(token, key.pem, proof)),
    );
    expect(res.status).toBe(400);
    expect(lines).toHaveLength(1);
    const { time, ...rest } = lines[0]!;
    expect(Number.isNaN(Date.parse(time as string))).toBe(false);
    expect(rest).toEqual({
      level: 30,
      service: 'mayfly',
      log: 'audit',
      event: 'signing_refused',
      requestId: 'audit-refused-1',
      route: '/api/v2/signingCert',
      clientIp: expect.stringMatching(/127\.0\.0\.1$/),
      reason: 'token',
      code: 'invalid_token',
      status: 400,
      tokenFailure: 'expired',
      issuer: ca.issuer.url,
      msg: 'signing request refused',
    });
    const raw = audit.lines[audit.lines.length - 1]!;
    for (const secret of secretsOf(token, proof, key.pem)) expect(raw).not.toContain(secret);
  });

  test('a token from an unknown issuer: no issuer field at all', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL, { issuer: 'https://evil.example' });
    const { lines } = await auditedBy(() =>
      request(ca.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(token, key.pem, proofFor(key, EMAIL))),
    );
    expect(lines.map((l) => [l.event, l.reason, l.tokenFailure, 'issuer' in l])).toEqual([
      ['signing_refused', 'token', 'unknown_issuer', false],
    ]);
    expect(JSON.stringify(lines)).not.toContain('evil.example');
  });

  test.each([
    ['proof', 'invalid_signature'],
    ['key', 'invalid_public_key'],
    ['csr', 'invalid_csr'],
  ])(
    'a bad %s: its reason and code, the verified issuer, no key and no proof',
    async (reason, code) => {
      const key = makeKey('p256');
      const token = await ca.issuer.mintEmail(EMAIL);
      const proof = proofFor(key, 'not-the-token-email@example.com');
      const body =
        reason === 'proof'
          ? v2Body(token, key.pem, proof)
          : reason === 'key'
            ? v2Body(token, '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', proof)
            : {
                credentials: { oidcIdentityToken: token },
                certificateSigningRequest: Buffer.from(
                  '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
                ).toString('base64'),
              };
      const { lines } = await auditedBy(() =>
        request(ca.app.api).post('/api/v2/signingCert').send(body),
      );
      expect(
        lines.map((l) => [l.event, l.reason, l.code, l.status, l.issuer, 'tokenFailure' in l]),
      ).toEqual([['signing_refused', reason, code, 400, ca.issuer.url, false]]);
      const raw = audit.lines[audit.lines.length - 1]!;
      for (const secret of secretsOf(token, proof, key.pem)) expect(raw).not.toContain(secret);
      expect(raw).not.toContain(makeCsr(key).slice(40, 80));
    },
  );

  test('a rate-limited identity: reason rate_limit, status 429', async () => {
    const email = 'audit-limited@example.com';
    const send = async () => {
      const key = makeKey('p256');
      const token = await ca.issuer.mintEmail(email);
      return request(ca.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(token, key.pem, proofFor(key, email)));
    };
    expect((await auditedBy(send)).lines.map((l) => l.event)).toEqual([
      'certificate_signing',
      'certificate_issued',
    ]);
    const { lines } = await auditedBy(send);
    expect(lines.map((l) => [l.event, l.reason, l.code, l.status, l.issuer])).toEqual([
      ['signing_refused', 'rate_limit', 'rate_limited', 429, ca.issuer.url],
    ]);
  });

  test('a body that does not parse: reason request, no issuer', async () => {
    const { lines } = await auditedBy(() =>
      request(ca.app.api)
        .post('/api/v2/signingCert')
        .set('Content-Type', 'application/json')
        .send('{not json'),
    );
    expect(lines.map((l) => [l.event, l.reason, l.status, 'issuer' in l])).toEqual([
      ['signing_refused', 'request', 400, false],
    ]);
  });

  test('other routes are not audited', async () => {
    const { lines } = await auditedBy(() => request(ca.app.api).get('/api/v2/trustBundle'));
    expect(lines).toEqual([]);
  });
});

describe('a request that failed', () => {
  test('a signer fault is a signing_failed line with the code and status', async () => {
    const inner = await createEphemeralChain(
      generateEphemeralKey(),
      generateEphemeralKey(),
      systemClock,
    );
    const broken: CaSigner = {
      chain: inner.chain,
      publicKey: inner.publicKey,
      hash: inner.hash,
      sign: () => Promise.reject(new Error('HSM unplugged')),
    };
    const own = sink();
    const failing = await startTestCa({
      overrides: { signer: broken },
      auditLogger: createAuditLogger({ destination: own.stream }),
    });
    try {
      const key = makeKey('p256');
      const token = await failing.issuer.mintEmail(EMAIL);
      const res = await request(failing.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
      expect(res.status).toBe(500);
      const lines = own.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => [l.event, l.code, l.status, l.issuer])).toEqual([
        ['certificate_signing', undefined, undefined, failing.issuer.url],
        ['signing_failed', 'ca_backend', 500, failing.issuer.url],
      ]);
      expect(lines[1]!.serial).toBe(lines[0]!.serial);
      expect(own.lines.join('\n')).not.toContain('HSM unplugged');
    } finally {
      await failing.close();
    }
  });
});

describe('the audit log file', () => {
  test('MAYFLY_AUDIT_LOG_FILE appends audit lines to that file, created with its folder', async () => {
    const file = join(dir, 'nested', 'audit.log');
    const logger = createAuditLogger({ file });
    const log = new AuditLog(logger);
    log.refused(
      { requestId: 'r-1', route: '/api/v2/signingCert', clientIp: '192.0.2.1' },
      { reason: 'token', code: 'invalid_token', status: 400, tokenFailure: 'audience' },
    );
    log.failed(
      {
        requestId: 'r-2',
        route: '/api/v1/signingCert',
        clientIp: '192.0.2.1',
        forwardedFor: '198.51.100.7',
      },
      { code: 'internal', status: 500 },
    );
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.log, l.event, l.requestId, l.clientIp, l.forwardedFor])).toEqual([
      ['audit', 'signing_refused', 'r-1', '192.0.2.1', undefined],
      ['audit', 'signing_failed', 'r-2', '192.0.2.1', '198.51.100.7'],
    ]);
  });
});

describe('a caller of the registration authority outside HTTP', () => {
  /** The value of a counter with exactly these labels (0 when absent). */
  async function counter(name: string, labels: Record<string, string>): Promise<number> {
    const metric = await ca.app.metrics.registry.getSingleMetric(name)!.get();
    const value = metric.values.find((v) =>
      Object.entries(labels).every(([k, want]) => v.labels[k] === want),
    );
    return value?.value ?? 0;
  }

  test('is audited by the CA and counted, issued or refused, like an HTTP request', async () => {
    const email = 'audit-grpc@example.com';
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(email);
    const origin = { requestId: 'grpc-1', route: 'grpc', clientIp: '203.0.113.7' };
    const issuedBefore = await counter('mayfly_certificates_issued_total', {
      issuer_type: 'email',
    });
    const before = audit.lines.length;
    const result = await ca.app.ra.createSigningCertificate(
      { token, key: { kind: 'publicKey', content: key.pem, proof: proofFor(key, email) } },
      origin,
    );
    const lines = audit.lines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.event, l.requestId, l.route, l.clientIp, l.serial])).toEqual([
      ['certificate_signing', 'grpc-1', 'grpc', '203.0.113.7', result.serial],
      ['certificate_issued', 'grpc-1', 'grpc', '203.0.113.7', result.serial],
    ]);
    expect(lines[1]!.certificateSha256).toBe(createHash('sha256').update(result.der).digest('hex'));
    expect(await counter('mayfly_certificates_issued_total', { issuer_type: 'email' })).toBe(
      issuedBefore + 1,
    );

    const refusedBefore = await counter('mayfly_signing_refusals_total', { reason: 'proof' });
    const refusedAt = audit.lines.length;
    await expect(
      ca.app.ra.createSigningCertificate(
        {
          token: await ca.issuer.mintEmail(email),
          key: { kind: 'publicKey', content: key.pem, proof: proofFor(key, 'other@example.com') },
        },
        { ...origin, requestId: 'grpc-2' },
      ),
    ).rejects.toMatchObject({ code: 'invalid_signature' });
    const refused = audit.lines
      .slice(refusedAt)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(refused.map((l) => [l.event, l.requestId, l.route, l.reason, l.issuer])).toEqual([
      ['signing_refused', 'grpc-2', 'grpc', 'proof', ca.issuer.url],
    ]);
    expect(await counter('mayfly_signing_refusals_total', { reason: 'proof' })).toBe(
      refusedBefore + 1,
    );
  });
});
