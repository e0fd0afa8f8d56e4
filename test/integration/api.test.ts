import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import request from 'supertest';
import { createLogger } from '../../services/common/logger';
import { makeCsr, makeKey, proofFor, spkiDer, type KeyKind } from '../helpers/keys';
import { startTestCa, v1Body, v2Body, type TestCa } from '../helpers/mayfly';

const EMAIL = 'alice@example.com';
const PEM_BLOCK = /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----$/;

const logLines: string[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, done) {
    logLines.push(chunk.toString());
    done();
  },
});

let ca: TestCa;
beforeAll(async () => {
  ca = await startTestCa({ logger: createLogger('debug', logSink) });
});
afterAll(() => ca.close());

function leafOf(res: request.Response): X509Certificate {
  const body = res.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } };
  return new X509Certificate(body.signedCertificateDetachedSct.chain.certificates[0]!);
}

describe('POST /api/v2/signingCert', () => {
  test.each<[KeyKind, 'ES256' | 'RS256']>([
    ['p256', 'ES256'],
    ['p384', 'RS256'],
    ['p521', 'ES256'],
    ['rsa2048', 'ES256'],
    ['rsa3072', 'RS256'],
    ['ed25519', 'ES256'],
  ])('issues a certificate for a %s key with an %s token', async (kind, alg) => {
    const key = makeKey(kind);
    const token = await ca.issuer.mintEmail(EMAIL, { alg });
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const leaf = leafOf(res);
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
    expect(leaf.publicKey.export({ type: 'spki', format: 'der' })).toEqual(spkiDer(key.pem));
    expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe(600_000);
  });

  test('answers in Fulcio’s detached-SCT shape with trimmed PEMs, leaf first and root last', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    const body = res.body as Record<
      string,
      { chain: { certificates: string[] }; signedCertificateTimestamp: string }
    >;
    expect(Object.keys(body)).toEqual(['signedCertificateDetachedSct']);
    const detached = body.signedCertificateDetachedSct!;
    expect(Object.keys(detached)).toEqual(['chain', 'signedCertificateTimestamp']);
    expect(detached.signedCertificateTimestamp).toBe('');
    const certs = detached.chain.certificates;
    expect(certs).toHaveLength(3);
    for (const pem of certs) expect(pem).toMatch(PEM_BLOCK);
    const [leaf, intermediate, root] = certs.map((p) => new X509Certificate(p)) as [
      X509Certificate,
      X509Certificate,
      X509Certificate,
    ];
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
  });

  test('takes the token from Authorization: Bearer when the body has none', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('Authorization', `Bearer ${token}`)
      .send(v2Body(undefined, key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(200);
  });

  test('accepts proto field names (snake_case) like protojson', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send({
        credentials: { oidc_identity_token: token },
        public_key_request: {
          public_key: { algorithm: 2, content: key.pem },
          proof_of_possession: proofFor(key, EMAIL).toString('base64url'),
        },
        ignored_unknown_field: true,
      });
    expect(res.status).toBe(200);
  });

  test('issues for a CSR and ignores its subject', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const csr = makeCsr(key, { subjectCn: 'root@evil.example' });
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send({
        credentials: { oidcIdentityToken: token },
        certificateSigningRequest: Buffer.from(csr).toString('base64'),
      });
    expect(res.status).toBe(200);
    const leaf = leafOf(res);
    expect(leaf.subject ?? '').toBe('');
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
  });

  test('counts issued certificates by issuer type', async () => {
    const text = await ca.app.metrics.registry.getSingleMetricAsString(
      'mayfly_certificates_issued_total',
    );
    expect(text).toMatch(
      /mayfly_certificates_issued_total\{issuer="[^"]+",issuer_type="email"\} [1-9]/,
    );
  });
});

describe('POST /api/v1/signingCert', () => {
  test('answers 201 with a PEM chain, as cosign expects', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v1/signingCert')
      .set('Authorization', `Bearer ${token}`)
      .send(v1Body(key.pem, proofFor(key, EMAIL)));
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/pem-certificate-chain');
    const blocks = res.text.split(/(?<=-----END CERTIFICATE-----)\n/);
    expect(blocks).toHaveLength(3);
    for (const block of blocks) expect(block).toMatch(PEM_BLOCK);
    expect(res.text.endsWith('-----END CERTIFICATE-----')).toBe(true);
    expect(new X509Certificate(blocks[0]!).subjectAltName).toBe(`email:${EMAIL}`);
  });

  test('ignores a token in the body: v1 reads only the Authorization header', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v1/signingCert')
      .send({
        ...v1Body(key.pem, proofFor(key, EMAIL)),
        credentials: { oidcIdentityToken: token },
      });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      code: 3,
      message: 'There was an error processing the identity token',
      details: [],
    });
  });

  test('refuses a missing public key before looking at the token', async () => {
    const res = await request(ca.app.api).post('/api/v1/signingCert').send({});
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      code: 3,
      message: 'The public key supplied in the request could not be parsed',
      details: [],
    });
  });

  test('issues for a CSR', async () => {
    const key = makeKey('rsa2048');
    const token = await ca.issuer.mintEmail(EMAIL);
    const res = await request(ca.app.api)
      .post('/api/v1/signingCert')
      .set('Authorization', `Bearer ${token}`)
      .send({ certificateSigningRequest: Buffer.from(makeCsr(key)).toString('base64') });
    expect(res.status).toBe(201);
  });
});

describe('trust bundle, root and configuration', () => {
  test('the trust bundle is one chain, intermediate then root, with untrimmed PEMs', async () => {
    const res = await request(ca.app.api).get('/api/v2/trustBundle');
    expect(res.status).toBe(200);
    const body = res.body as { chains: { certificates: string[] }[] };
    expect(body.chains).toHaveLength(1);
    const certs = body.chains[0]!.certificates;
    expect(certs).toHaveLength(2);
    for (const pem of certs) expect(pem.endsWith('-----END CERTIFICATE-----\n')).toBe(true);
    const [intermediate, root] = certs.map((p) => new X509Certificate(p)) as [
      X509Certificate,
      X509Certificate,
    ];
    expect(intermediate.ca).toBe(true);
    expect(intermediate.keyUsage).toEqual(['1.3.6.1.5.5.7.3.3']);
    expect(intermediate.checkIssued(root)).toBe(true);
  });

  test('v1 rootCert holds the same certificates as the v2 trust bundle', async () => {
    const bundle = (await request(ca.app.api).get('/api/v2/trustBundle')).body as {
      chains: { certificates: string[] }[];
    };
    const res = await request(ca.app.api).get('/api/v1/rootCert');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/pem-certificate-chain');
    expect(res.text).toBe(
      bundle.chains[0]!.certificates.map((p) => `${p}\n`)
        .join('')
        .trim(),
    );
  });

  test('configuration lists the issuers with audience and challenge claim', async () => {
    const res = await request(ca.app.api).get('/api/v2/configuration');
    expect(res.status).toBe(200);
    expect((res.body as { issuers: unknown[] }).issuers).toContainEqual({
      issuerUrl: ca.issuer.url,
      audience: 'sigstore',
      challengeClaim: 'email',
      spiffeTrustDomain: '',
      issuerType: 'email',
      subjectDomain: '',
      skipEmailVerification: false,
    });
  });

  test('allows any origin on GET, like Fulcio’s CORS defaults', async () => {
    const res = await request(ca.app.api)
      .get('/api/v2/trustBundle')
      .set('Origin', 'https://example.com');
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('health, request ids and limits', () => {
  test('healthz answers SERVING and readyz follows readiness', async () => {
    expect((await request(ca.app.api).get('/healthz')).body).toEqual({ status: 'SERVING' });
    expect((await request(ca.app.api).get('/readyz')).status).toBe(200);
    ca.app.setReady(false);
    try {
      expect((await request(ca.app.api).get('/readyz')).status).toBe(503);
    } finally {
      ca.app.setReady(true);
    }
  });

  test('echoes a sane X-Request-Id and replaces an unsafe one', async () => {
    expect(
      (await request(ca.app.api).get('/healthz').set('X-Request-Id', 'abc-123')).headers[
        'x-request-id'
      ],
    ).toBe('abc-123');
    const replaced = (
      await request(ca.app.api).get('/healthz').set('X-Request-Id', 'has spaces; and=symbols')
    ).headers['x-request-id'];
    expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('a body of exactly the limit is read; one byte more is refused', async () => {
    const limit = ca.config.maxRequestBytes;
    const body = (n: number) => JSON.stringify({ pad: 'x'.repeat(n - 10) });
    expect(body(limit).length).toBe(limit);
    const atLimit = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('content-type', 'application/json')
      .send(body(limit));
    expect(atLimit.body).toEqual({
      code: 3,
      message: 'There was an error processing the identity token',
      details: [],
    });
    const over = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('content-type', 'application/json')
      .send(body(limit + 1));
    expect(over.body).toEqual({ code: 3, message: 'http: request body too large', details: [] });
  });

  test('no log line carries a token, a proof or key material', async () => {
    const key = makeKey('p256');
    const token = await ca.issuer.mintEmail(EMAIL);
    const proof = proofFor(key, EMAIL).toString('base64');
    await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, Buffer.from(proof, 'base64')));
    await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(`${token}x`, key.pem, Buffer.from(proof, 'base64')));
    await request(ca.app.api)
      .post('/api/v1/signingCert')
      .set('Authorization', `Bearer ${token}`)
      .send(v1Body(key.pem, Buffer.alloc(8)));
    const logs = logLines.join('');
    expect(logs).toContain('request refused');
    const keyBody = key.pem.split('\n')[1]!;
    for (const secret of [token.split('.')[1]!, token.split('.')[2]!, proof, keyBody])
      expect(logs).not.toContain(secret);
  });
});
