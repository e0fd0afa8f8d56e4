import { createHmac } from 'node:crypto';
import request from 'supertest';
import { generateEphemeralKey, type CaSigner } from '../../services/common/signer/signer';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { systemClock } from '../../services/common/clock';
import { makeCsr, makeKey, proofFor, toPem, weakKeys } from '../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../helpers/mayfly';

/**
 * One test per row of Fulcio's error table (fulcio-reference §1.5): the exact status and
 * body, and no certificate signed.
 */

const TOKEN_ERROR = {
  code: 3,
  message: 'There was an error processing the identity token',
  details: [],
};
const CSR_ERROR = {
  code: 3,
  message: 'The certificate signing request could not be parsed',
  details: [],
};
const KEY_ERROR = {
  code: 3,
  message: 'The public key supplied in the request could not be parsed',
  details: [],
};
const INSECURE = {
  code: 3,
  message: 'The public key supplied in the request is insecure',
  details: [],
};
const SIGNATURE = {
  code: 3,
  message: 'The signature supplied in the request could not be verified',
  details: [],
};
const EMAIL = 'alice@example.com';

let ca: TestCa;
let token: string;
const key = makeKey('p256');

beforeAll(async () => {
  ca = await startTestCa({
    env: { MAYFLY_CLIENT_SIGNING_ALGORITHMS: 'ecdsa-sha2-256-nistp256,rsa-sign-pkcs1-2048-sha256' },
  });
  token = await ca.issuer.mintEmail(EMAIL);
});
afterAll(() => ca.close());

async function expectRefusal(
  body: unknown,
  status: number,
  expected: unknown,
  headers: Record<string, string> = {},
) {
  const before = ca.signCount();
  const res = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .set(headers)
    .send(body as object);
  expect({ status: res.status, body: res.body as unknown }).toEqual({ status, body: expected });
  expect(res.headers['content-type']).toBe('application/json');
  expect(ca.signCount()).toBe(before);
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('identity token rows', () => {
  const goodBody = () => v2Body(token, key.pem, proofFor(key, EMAIL));

  test('refuses a request with no token', async () => {
    await expectRefusal(v2Body(undefined, key.pem, proofFor(key, EMAIL)), 400, TOKEN_ERROR);
  });

  test.each([
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['10,000 dots', '.'.repeat(10000)],
    [
      'a padded payload',
      `${b64url({ alg: 'ES256' })}.${Buffer.from(JSON.stringify({ iss: 'x' })).toString('base64')}=.sig`,
    ],
    [
      'a payload that is not JSON',
      `${b64url({ alg: 'ES256' })}.${Buffer.from('nope').toString('base64url')}.sig`,
    ],
  ])('refuses a token with %s', async (_name, bad) => {
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: bad } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token from an issuer that is not configured', async () => {
    const forged = await ca.issuer.mintEmail(EMAIL, { issuer: 'https://accounts.example.invalid' });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: forged } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token with a bad signature', async () => {
    const [h, p, s] = token.split('.') as [string, string, string];
    const flipped = `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`;
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: flipped } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token whose audience is not sigstore', async () => {
    const other = await ca.issuer.mintEmail(EMAIL, { audience: 'not-sigstore' });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: other } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses an expired token', async () => {
    const expired = await ca.issuer.mintEmail(EMAIL, { expiresIn: -1 });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: expired } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token without exp', async () => {
    const noExp = await ca.issuer.mintEmail(EMAIL, { omitExp: true });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: noExp } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token not valid for more than five minutes (nbf)', async () => {
    const future = await ca.issuer.mint({
      sub: EMAIL,
      email: EMAIL,
      email_verified: true,
      nbf: Math.floor(Date.now() / 1000) + 400,
    });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: future } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses alg none', async () => {
    const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({
      iss: ca.issuer.url,
      aud: 'sigstore',
      sub: EMAIL,
      email: EMAIL,
      email_verified: true,
      exp: Math.floor(Date.now() / 1000) + 300,
    })}.`;
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: none } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses HS256 signed with the issuer public key as the secret', async () => {
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
    const secret = JSON.stringify(rsa);
    const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: `${header}.${payload}.${sig}` } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token whose email is not verified', async () => {
    const unverified = await ca.issuer.mint({ sub: EMAIL, email: EMAIL, email_verified: false });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: unverified } },
      400,
      TOKEN_ERROR,
    );
  });

  test('refuses a token with no email claim', async () => {
    const noEmail = await ca.issuer.mint({ sub: EMAIL });
    await expectRefusal(
      { ...goodBody(), credentials: { oidcIdentityToken: noEmail } },
      400,
      TOKEN_ERROR,
    );
  });
});

describe('CSR rows', () => {
  const csrBody = (pem: string) => ({
    credentials: { oidcIdentityToken: token },
    certificateSigningRequest: Buffer.from(pem).toString('base64'),
  });

  test('refuses a CSR that is not PEM', async () => {
    await expectRefusal(csrBody('invalid'), 400, CSR_ERROR);
  });

  test('refuses a PEM block of the wrong type', async () => {
    await expectRefusal(csrBody(key.pem), 400, CSR_ERROR);
  });

  test('refuses a CSR whose DER is broken', async () => {
    await expectRefusal(
      csrBody(toPem('CERTIFICATE REQUEST', Buffer.from('3003020100', 'hex'))),
      400,
      CSR_ERROR,
    );
  });

  test('refuses a CSR for an insecure key', async () => {
    await expectRefusal(csrBody(makeCsr(weakKeys.rsa1024())), 400, INSECURE);
  });

  test('refuses a CSR whose self-signature does not verify', async () => {
    await expectRefusal(csrBody(makeCsr(key, { corrupt: true })), 400, SIGNATURE);
  });

  test('refuses a CSR signed with a hash the allow-list does not permit', async () => {
    const message = 'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384';
    await expectRefusal(csrBody(makeCsr(key, { hash: 'sha384' })), 400, {
      code: 3,
      message,
      details: [],
    });
  });
});

describe('public key rows', () => {
  test('refuses a request that names no key', async () => {
    await expectRefusal({ credentials: { oidcIdentityToken: token } }, 400, KEY_ERROR);
  });

  test('refuses an empty publicKeyRequest', async () => {
    await expectRefusal(
      { credentials: { oidcIdentityToken: token }, publicKeyRequest: {} },
      400,
      KEY_ERROR,
    );
  });

  test('refuses a key that does not parse', async () => {
    await expectRefusal(
      v2Body(
        token,
        '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
        Buffer.from('x'),
      ),
      400,
      KEY_ERROR,
    );
  });

  test.each([
    ['RSA-1024', () => weakKeys.rsa1024().pem],
    ['RSA with e = 3', () => weakKeys.rsaExponent3().pem],
    ['P-224', () => weakKeys.p224().pem],
    ['an off-curve point', () => weakKeys.offCurveP256Pem()],
  ])('refuses %s as insecure', async (_name, pem) => {
    await expectRefusal(v2Body(token, pem(), Buffer.alloc(0)), 400, INSECURE);
  });

  test('refuses a proof that does not verify', async () => {
    await expectRefusal(v2Body(token, key.pem, proofFor(makeKey('p256'), EMAIL)), 400, SIGNATURE);
  });

  test('refuses a proof over another name', async () => {
    await expectRefusal(
      v2Body(token, key.pem, proofFor(key, 'mallory@example.com')),
      400,
      SIGNATURE,
    );
  });

  test('refuses a key the allow-list does not permit', async () => {
    const p384 = makeKey('p384');
    const message = 'signing algorithm not permitted: *ecdsa.PublicKey, SHA-384';
    await expectRefusal(v2Body(token, p384.pem, proofFor(p384, EMAIL)), 400, {
      code: 3,
      message,
      details: [],
    });
  });
});

describe('identity rendering row', () => {
  test('passes through the message when the issuer claim renders empty', async () => {
    const local = await startTestCa({ issuerConfig: { issuerClaim: '$.connector' } });
    try {
      const t = await local.issuer.mint({
        sub: EMAIL,
        email: EMAIL,
        email_verified: true,
        connector: '',
      });
      const before = local.signCount();
      const res = await request(local.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(t, key.pem, proofFor(key, EMAIL)));
      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        code: 3,
        message: 'extensions must have a non-empty issuer url',
        details: [],
      });
      expect(local.signCount()).toBe(before);
    } finally {
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
    return startTestCa({ overrides: { signer: make(inner) } });
  }

  test('answers 500 with a fixed message when the signer fails', async () => {
    const local = await caWithSigner((inner) => ({
      chain: inner.chain,
      publicKey: inner.publicKey,
      hash: inner.hash,
      sign: () => Promise.reject(new Error('HSM on fire: key 0xdeadbeef')),
    }));
    try {
      const t = await local.issuer.mintEmail(EMAIL);
      const res = await request(local.app.api)
        .post('/api/v2/signingCert')
        .send(v2Body(t, key.pem, proofFor(key, EMAIL)));
      expect(res.status).toBe(500);
      expect(res.body).toEqual({
        code: 13,
        message: 'error communicating with CA backend',
        details: [],
      });
      expect(res.text).not.toContain('deadbeef');
    } finally {
      await local.close();
    }
  });

  test('answers 500 with a fixed message when the trust bundle cannot be read', async () => {
    let broken = false;
    const local = await caWithSigner((inner) => ({
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
      const res = await request(local.app.api).get('/api/v2/trustBundle');
      expect(res.status).toBe(500);
      expect(res.body).toEqual({
        code: 13,
        message: 'error retrieving trust bundle from CA backend',
        details: [],
      });
    } finally {
      await local.close();
    }
  });
});

describe('transport rows', () => {
  test('refuses a body over the limit before parsing it', async () => {
    const big = JSON.stringify({ padding: 'x'.repeat(70 * 1024) });
    const before = ca.signCount();
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .set('content-type', 'application/json')
      .send(big);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ code: 3, message: 'http: request body too large', details: [] });
    expect(ca.signCount()).toBe(before);
  });

  test('refuses malformed JSON', async () => {
    await expectRefusal('{"credentials":', 400, {
      code: 3,
      message: 'The request body could not be parsed',
      details: [],
    });
  });

  test('refuses a field of the wrong type', async () => {
    await expectRefusal({ credentials: { oidcIdentityToken: 42 } }, 400, {
      code: 3,
      message: 'The request body could not be parsed',
      details: [],
    });
  });

  test('answers an unknown path with 404', async () => {
    const res = await request(ca.app.api).get('/api/v2/nothing');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ code: 5, message: 'Not Found', details: [] });
  });

  test('answers a wrong method on a known path with 501', async () => {
    const res = await request(ca.app.api).get('/api/v2/signingCert');
    expect(res.status).toBe(501);
    expect(res.body).toEqual({ code: 12, message: 'Method Not Allowed', details: [] });
  });
});
