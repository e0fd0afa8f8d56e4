import { createHmac } from 'node:crypto';
import { Metadata, status } from '@grpc/grpc-js';
import request from 'supertest';
import { systemClock } from '../../../services/common/clock';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import { startTestGrpc, v2Message, type TestGrpc } from '../../helpers/grpc';
import { makeCsr, makeKey, proofFor, toPem, weakKeys } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';

/**
 * Fulcio's error table (fulcio-reference §1.5) row by row over gRPC, with a client generated
 * from fulcio.proto: each row's gRPC status code and fixed message, and no certificate
 * signed. Where a row also exists over HTTP, the same request is sent there too and the
 * answers must agree (the JSON body carries the gRPC code and the message), since both
 * transports answer from one error table.
 */

const TOKEN = 'There was an error processing the identity token';
const CSR = 'The certificate signing request could not be parsed';
const KEY = 'The public key supplied in the request could not be parsed';
const INSECURE = 'The public key supplied in the request is insecure';
const SIGNATURE = 'The signature supplied in the request could not be verified';
const EMAIL = 'alice@example.com';

let ca: TestCa;
let grpc: TestGrpc;
let token: string;
const key = makeKey('p256');

beforeAll(async () => {
  ca = await startTestCa({
    env: { MAYFLY_CLIENT_SIGNING_ALGORITHMS: 'ecdsa-sha2-256-nistp256,rsa-sign-pkcs1-2048-sha256' },
  });
  grpc = await startTestGrpc(ca);
  token = await ca.issuer.mintEmail(EMAIL);
});
afterAll(async () => {
  grpc.close();
  await ca.close();
});

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** The HTTP (protojson) form of a gRPC request message: bytes as base64. */
function asJson(message: unknown): unknown {
  return JSON.parse(
    JSON.stringify(message, (_k, v: unknown) =>
      v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer'
        ? Buffer.from((v as { data: number[] }).data).toString('base64')
        : v,
    ),
  );
}

async function expectRefusal(
  message: unknown,
  code: number,
  details: string,
  options: { metadata?: Metadata; http?: boolean } = {},
): Promise<void> {
  const before = ca.signCount();
  const { error, value } = await grpc.client.sign(message, options.metadata);
  expect(value).toBeUndefined();
  expect({ code: error?.code, details: error?.details }).toEqual({ code, details });
  expect(ca.signCount()).toBe(before);
  if (options.http === false) return;
  const res = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .send(asJson(message) as object);
  expect(res.body).toEqual({ code, message: details, details: [] });
}

const withToken = (t: string) => v2Message(t, key.pem, proofFor(key, EMAIL));

describe('identity token rows', () => {
  test('refuses a request with no token', async () => {
    await expectRefusal(v2Message(undefined, key.pem, proofFor(key, EMAIL)), 3, TOKEN);
  });

  test.each([
    ['two parts', () => 'a.b'],
    ['four parts', () => 'a.b.c.d'],
    ['10,000 dots', () => '.'.repeat(10000)],
    [
      'a padded payload',
      () =>
        `${b64url({ alg: 'ES256' })}.${Buffer.from(JSON.stringify({ iss: 'x' })).toString('base64')}=.sig`,
    ],
    [
      'a payload that is not JSON',
      () => `${b64url({ alg: 'ES256' })}.${Buffer.from('nope').toString('base64url')}.sig`,
    ],
    ['an unconfigured issuer', () => ca.issuer.mintEmail(EMAIL, { issuer: 'https://x.invalid' })],
    [
      'a bad signature',
      () => {
        const [h, p, s] = token.split('.') as [string, string, string];
        return `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`;
      },
    ],
    ['an audience that is not sigstore', () => ca.issuer.mintEmail(EMAIL, { audience: 'other' })],
    ['an expired token', () => ca.issuer.mintEmail(EMAIL, { expiresIn: -1 })],
    ['no exp', () => ca.issuer.mintEmail(EMAIL, { omitExp: true })],
    [
      'nbf more than five minutes ahead',
      () =>
        ca.issuer.mint({
          sub: EMAIL,
          email: EMAIL,
          email_verified: true,
          nbf: Math.floor(Date.now() / 1000) + 400,
        }),
    ],
    [
      'alg none',
      () =>
        `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({
          iss: ca.issuer.url,
          aud: 'sigstore',
          sub: EMAIL,
          email: EMAIL,
          email_verified: true,
          exp: Math.floor(Date.now() / 1000) + 300,
        })}.`,
    ],
    [
      'HS256 keyed with the issuer public key',
      async () => {
        const jwks = (await (await fetch(`${ca.issuer.url}/keys`)).json()) as {
          keys: { kid: string; alg: string }[];
        };
        const rsa = jwks.keys.find((k) => k.alg === 'RS256')!;
        const header = b64url({ alg: 'HS256', kid: rsa.kid });
        const payload = b64url({
          iss: ca.issuer.url,
          aud: 'sigstore',
          sub: EMAIL,
          email: EMAIL,
          email_verified: true,
          exp: Math.floor(Date.now() / 1000) + 300,
        });
        const sig = createHmac('sha256', JSON.stringify(rsa))
          .update(`${header}.${payload}`)
          .digest('base64url');
        return `${header}.${payload}.${sig}`;
      },
    ],
    [
      'an unverified email',
      () => ca.issuer.mint({ sub: EMAIL, email: EMAIL, email_verified: false }),
    ],
    ['no email claim', () => ca.issuer.mint({ sub: EMAIL })],
  ])('refuses %s', async (_name, bad) => {
    await expectRefusal(withToken(await bad()), 3, TOKEN);
  });
});

describe('where the token comes from', () => {
  const noCredentials = () => v2Message(undefined, key.pem, proofFor(key, EMAIL));

  test('the oidcidentitytoken metadata key is read when the field is empty', async () => {
    const metadata = new Metadata();
    metadata.set('oidcidentitytoken', token);
    const { value, error } = await grpc.client.sign(noCredentials(), metadata);
    expect(error).toBeUndefined();
    expect(value?.signedCertificateDetachedSct?.chain.certificates).toHaveLength(3);
  });

  test('the field wins over the metadata key', async () => {
    const metadata = new Metadata();
    metadata.set('oidcidentitytoken', 'not.a.token');
    const { error } = await grpc.client.sign(withToken(token), metadata);
    expect(error).toBeUndefined();
  });

  test('authorization metadata is not read over gRPC (Fulcio maps it for HTTP only)', async () => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    await expectRefusal(noCredentials(), 3, TOKEN, { metadata, http: false });
  });

  test('two oidcidentitytoken values are no token (Fulcio takes exactly one)', async () => {
    const metadata = new Metadata();
    metadata.add('oidcidentitytoken', token);
    metadata.add('oidcidentitytoken', token);
    await expectRefusal(noCredentials(), 3, TOKEN, { metadata, http: false });
  });
});

describe('CSR rows (raw PEM bytes, as Fulcio expects over gRPC)', () => {
  const csr = (pem: string | Buffer) => ({
    credentials: { oidcIdentityToken: token },
    certificateSigningRequest: Buffer.from(pem),
  });

  test.each([
    ['not PEM', () => csr('invalid'), CSR],
    ['a PEM block of the wrong type', () => csr(key.pem), CSR],
    ['broken DER', () => csr(toPem('CERTIFICATE REQUEST', Buffer.from('3003020100', 'hex'))), CSR],
    ['an insecure key', () => csr(makeCsr(weakKeys.rsa1024())), INSECURE],
    [
      'a self-signature that does not verify',
      () => csr(makeCsr(key, { corrupt: true })),
      SIGNATURE,
    ],
    [
      'a hash the allow-list does not permit',
      () => csr(makeCsr(key, { hash: 'sha384' })),
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384',
    ],
  ])('refuses %s', async (_name, message, details) => {
    await expectRefusal(message(), 3, details);
  });

  test('issues for a good CSR', async () => {
    const { value, error } = await grpc.client.sign(csr(makeCsr(key)));
    expect(error).toBeUndefined();
    expect(value?.signedCertificateDetachedSct?.chain.certificates).toHaveLength(3);
  });
});

describe('public key rows', () => {
  test.each([
    ['a request naming no key', () => ({ credentials: { oidcIdentityToken: token } }), KEY],
    [
      'an empty publicKeyRequest',
      () => ({ credentials: { oidcIdentityToken: token }, publicKeyRequest: {} }),
      KEY,
    ],
    [
      'an empty CSR field (Fulcio falls back to the public key)',
      () => ({
        credentials: { oidcIdentityToken: token },
        certificateSigningRequest: Buffer.alloc(0),
      }),
      KEY,
    ],
    [
      'a key that does not parse',
      () =>
        v2Message(
          token,
          '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
          Buffer.from('x'),
        ),
      KEY,
    ],
    ['RSA-1024', () => v2Message(token, weakKeys.rsa1024().pem, Buffer.alloc(0)), INSECURE],
    [
      'RSA with e = 3',
      () => v2Message(token, weakKeys.rsaExponent3().pem, Buffer.alloc(0)),
      INSECURE,
    ],
    ['P-224', () => v2Message(token, weakKeys.p224().pem, Buffer.alloc(0)), INSECURE],
    [
      'an off-curve point',
      () => v2Message(token, weakKeys.offCurveP256Pem(), Buffer.alloc(0)),
      INSECURE,
    ],
    [
      'a proof by another key',
      () => v2Message(token, key.pem, proofFor(makeKey('p256'), EMAIL)),
      SIGNATURE,
    ],
    [
      'a proof over another name',
      () => v2Message(token, key.pem, proofFor(key, 'mallory@example.com')),
      SIGNATURE,
    ],
    [
      'a key the allow-list does not permit',
      () => {
        const p384 = makeKey('p384');
        return v2Message(token, p384.pem, proofFor(p384, EMAIL));
      },
      'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384',
    ],
  ])('refuses %s', async (_name, message, details) => {
    // Over HTTP too: an empty CSR field takes the public key path there as well.
    await expectRefusal(message(), 3, details);
  });
});

describe('identity rendering row', () => {
  test('passes through the message when the issuer claim renders empty', async () => {
    const local = await startTestCa({ issuerConfig: { issuerClaim: '$.connector' } });
    const localGrpc = await startTestGrpc(local);
    try {
      const t = await local.issuer.mint({
        sub: EMAIL,
        email: EMAIL,
        email_verified: true,
        connector: '',
      });
      const { error } = await localGrpc.client.sign(v2Message(t, key.pem, proofFor(key, EMAIL)));
      expect({ code: error?.code, details: error?.details }).toEqual({
        code: status.INVALID_ARGUMENT,
        details: 'extensions must have a non-empty issuer url',
      });
      expect(local.signCount()).toBe(0);
    } finally {
      localGrpc.close();
      await local.close();
    }
  });
});

describe('server-side rows', () => {
  async function caWithSigner(make: (inner: CaSigner) => CaSigner) {
    const inner = await createEphemeralChain(
      generateEphemeralKey(),
      generateEphemeralKey(),
      systemClock,
    );
    const local = await startTestCa({ overrides: { signer: make(inner) } });
    return { local, localGrpc: await startTestGrpc(local) };
  }

  test('answers Internal with a fixed message when the signer fails', async () => {
    const { local, localGrpc } = await caWithSigner((inner) => ({
      chain: inner.chain,
      publicKey: inner.publicKey,
      hash: inner.hash,
      sign: () => Promise.reject(new Error('HSM on fire: key 0xdeadbeef')),
    }));
    try {
      const t = await local.issuer.mintEmail(EMAIL);
      const { error } = await localGrpc.client.sign(v2Message(t, key.pem, proofFor(key, EMAIL)));
      expect({ code: error?.code, details: error?.details }).toEqual({
        code: status.INTERNAL,
        details: 'error communicating with CA backend',
      });
      expect(JSON.stringify(error?.metadata.getMap())).not.toContain('deadbeef');
    } finally {
      localGrpc.close();
      await local.close();
    }
  });

  test('answers Internal with a fixed message when the trust bundle cannot be read', async () => {
    let broken = false;
    const { local, localGrpc } = await caWithSigner((inner) => ({
      get chain() {
        if (broken) throw new Error('chain file vanished');
        return inner.chain;
      },
      publicKey: inner.publicKey,
      hash: inner.hash,
      sign: (tbs) => inner.sign(tbs),
    }));
    try {
      broken = true;
      const { error } = await localGrpc.client.call(localGrpc.client.ca, 'GetTrustBundle', {});
      expect({ code: error?.code, details: error?.details }).toEqual({
        code: status.INTERNAL,
        details: 'error retrieving trust bundle from CA backend',
      });
    } finally {
      localGrpc.close();
      await local.close();
    }
  });
});

describe('transport rows', () => {
  test('refuses a message over the limit (the HTTP body limit) before parsing it', async () => {
    const before = ca.signCount();
    const big = {
      credentials: { oidcIdentityToken: token },
      certificateSigningRequest: Buffer.alloc(70 * 1024, 0x41),
    };
    const { error } = await grpc.client.sign(big);
    expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(ca.signCount()).toBe(before);
    // The same request is refused over HTTP as well.
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(asJson(big) as object);
    expect(res.status).toBe(400);
  });

  test('a PublicKey.content that is not UTF-8 (raw DER) is refused as an unparsable key', async () => {
    // Hand-encoded protobuf: grpc-js clients, like Go's, refuse to encode such a string.
    const field = (no: number, bytes: Buffer) =>
      Buffer.concat([Buffer.from([(no << 3) | 2]), varint(bytes.length), bytes]);
    const varint = (n: number) => {
      const out: number[] = [];
      while (n > 0x7f) {
        out.push((n & 0x7f) | 0x80);
        n >>>= 7;
      }
      out.push(n);
      return Buffer.from(out);
    };
    const der = key.publicKey.export({ type: 'spki', format: 'der' });
    const message = Buffer.concat([
      field(1, field(1, Buffer.from(token))),
      field(2, Buffer.concat([field(1, field(2, der)), field(2, proofFor(key, EMAIL))])),
    ]);
    const before = ca.signCount();
    const answer = await new Promise<{ code?: number; details?: string }>((resolve) =>
      grpc.client.ca.makeUnaryRequest(
        '/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate',
        (x: Buffer) => x,
        (x: Buffer) => x,
        message,
        (err) => resolve({ code: err?.code, details: err?.details }),
      ),
    );
    expect(answer).toEqual({ code: status.INVALID_ARGUMENT, details: KEY });
    expect(ca.signCount()).toBe(before);
  });

  test('answers an unknown method with Unimplemented', async () => {
    const { error } = await grpc.client.call(grpc.client.health, 'List', {});
    expect(error).toBeUndefined();
    const unknown = await new Promise<{ code?: number }>((resolve) =>
      grpc.client.ca.makeUnaryRequest(
        '/dev.sigstore.fulcio.v2.CA/GetRootCertificate',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (err) => resolve({ code: err?.code }),
      ),
    );
    expect(unknown.code).toBe(status.UNIMPLEMENTED);
  });
});

describe('the answer to a good request', () => {
  test('matches the HTTP API: a detached-SCT chain, leaf then CA, trimmed PEM, no SCT', async () => {
    const { value, error, headers } = await grpc.client.sign(withToken(token));
    expect(error).toBeUndefined();
    expect(value?.certificate).toBe('signedCertificateDetachedSct');
    const detached = value!.signedCertificateDetachedSct!;
    expect(detached.signedCertificateTimestamp).toEqual(Buffer.alloc(0));
    const http = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
    const httpChain = (
      http.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } }
    ).signedCertificateDetachedSct.chain.certificates;
    expect(detached.chain.certificates.slice(1)).toEqual(httpChain.slice(1));
    for (const pem of detached.chain.certificates) expect(pem).toBe(pem.trim());
    expect(headers?.get('x-request-id')[0]).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('GetTrustBundle and GetConfiguration answer what the HTTP API answers', async () => {
    const bundle = await grpc.client.call(grpc.client.ca, 'GetTrustBundle', {});
    const httpBundle = await request(ca.app.api).get('/api/v2/trustBundle');
    expect(bundle.value).toEqual(httpBundle.body);
    const configuration = await grpc.client.call<{ issuers: Record<string, unknown>[] }>(
      grpc.client.ca,
      'GetConfiguration',
      {},
    );
    const httpConfiguration = await request(ca.app.api).get('/api/v2/configuration');
    // proto-loader adds the name of the oneof member that is set.
    const issuers = configuration.value!.issuers.map(({ issuer: _oneof, ...rest }) => rest);
    expect({ issuers }).toEqual(httpConfiguration.body);
  });

  test('echoes a sane x-request-id', async () => {
    const metadata = new Metadata();
    metadata.set('x-request-id', 'trace-42');
    const { headers } = await grpc.client.call(grpc.client.ca, 'GetTrustBundle', {}, metadata);
    expect(headers?.get('x-request-id')).toEqual(['trace-42']);
  });
});
