import { createVerify, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { compactVerify, SignJWT } from 'jose';
import {
  decodeJws,
  JwsFormatError,
  jwsSignatureVerifies,
} from '../../../../services/ca/identity/jws';

/**
 * The token signature check that replaced jose's WebCrypto call: for every algorithm an
 * issuer may use it must agree with jose itself, and refuse what jose refuses.
 */

type Alg =
  'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA';

function keyPairFor(alg: Alg): { privateKey: KeyObject; publicKey: KeyObject } {
  if (alg.startsWith('RS') || alg.startsWith('PS'))
    return generateKeyPairSync('rsa', { modulusLength: 2048 });
  if (alg === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  if (alg === 'ES384') return generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  if (alg === 'ES512') return generateKeyPairSync('ec', { namedCurve: 'secp521r1' });
  return generateKeyPairSync('ed25519');
}

const ALGS: readonly Alg[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

async function tokenFor(alg: Alg, privateKey: KeyObject) {
  return new SignJWT({ sub: 'ci' })
    .setProtectedHeader({ alg })
    .setIssuer('https://issuer.example.com')
    .setAudience('sigstore')
    .setExpirationTime('5m')
    .sign(privateKey);
}

function flipLastByte(signature: Buffer): Buffer {
  const copy = Buffer.from(signature);
  copy[copy.length - 1] = copy[copy.length - 1]! ^ 0x01;
  return copy;
}

describe.each(ALGS)('jwsSignatureVerifies with %s', (alg) => {
  const pair = keyPairFor(alg);

  it('accepts a token jose signed, as jose does', async () => {
    const token = await tokenFor(alg, pair.privateKey);
    await expect(compactVerify(token, pair.publicKey)).resolves.toBeDefined();
    const jws = decodeJws(token);
    expect(jwsSignatureVerifies(alg, pair.publicKey, jws.signingInput, jws.signature)).toBe(true);
  });

  it('refuses the token with one signature bit flipped, as jose does', async () => {
    const jws = decodeJws(await tokenFor(alg, pair.privateKey));
    const flipped = flipLastByte(jws.signature);
    expect(jwsSignatureVerifies(alg, pair.publicKey, jws.signingInput, flipped)).toBe(false);
  });

  it('refuses the token under another key of the same type', async () => {
    const jws = decodeJws(await tokenFor(alg, pair.privateKey));
    const other = keyPairFor(alg).publicKey;
    expect(jwsSignatureVerifies(alg, other, jws.signingInput, jws.signature)).toBe(false);
  });

  it('refuses the token with a changed payload', async () => {
    const token = await tokenFor(alg, pair.privateKey);
    const [h, , s] = token.split('.') as [string, string, string];
    const forged = Buffer.from('{"sub":"admin"}').toString('base64url');
    const jws = decodeJws(`${h}.${forged}.${s}`);
    expect(jwsSignatureVerifies(alg, pair.publicKey, jws.signingInput, jws.signature)).toBe(false);
  });
});

describe('jwsSignatureVerifies refuses', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

  it('an HMAC algorithm, whatever the key', async () => {
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    expect(jwsSignatureVerifies('HS256', ec.publicKey, jws.signingInput, jws.signature)).toBe(
      false,
    );
  });

  it('alg none', async () => {
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    expect(jwsSignatureVerifies('none', ec.publicKey, jws.signingInput, jws.signature)).toBe(false);
  });

  it('an ES256 signature checked against a P-384 key (curve must match the algorithm)', async () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const jws = decodeJws(await tokenFor('ES384', p384.privateKey));
    expect(jwsSignatureVerifies('ES256', p384.publicKey, jws.signingInput, jws.signature)).toBe(
      false,
    );
  });

  it('an ES256 signature in DER form (JWS signatures are r || s)', async () => {
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    const r = jws.signature.subarray(0, 32);
    const s = jws.signature.subarray(32);
    const int = (v: Buffer) => {
      const trimmed = v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v;
      return Buffer.concat([Buffer.from([0x02, trimmed.length]), trimmed]);
    };
    const body = Buffer.concat([int(r), int(s)]);
    const der = Buffer.concat([Buffer.from([0x30, body.length]), body]);
    expect(jwsSignatureVerifies('ES256', ec.publicKey, jws.signingInput, der)).toBe(false);
  });

  it('an RS256 token whose key is under 2048 bits, as jose does', () => {
    // jose will not even sign with it, so the token is made by hand.
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const h = Buffer.from('{"alg":"RS256"}').toString('base64url');
    const p = Buffer.from('{"sub":"ci"}').toString('base64url');
    const s = sign('sha256', Buffer.from(`${h}.${p}`), small.privateKey).toString('base64url');
    const jws = decodeJws(`${h}.${p}.${s}`);
    expect(
      createVerify('sha256').update(jws.signingInput).verify(small.publicKey, jws.signature),
    ).toBe(true);
    expect(jwsSignatureVerifies('RS256', small.publicKey, jws.signingInput, jws.signature)).toBe(
      false,
    );
  });

  it('a private key in place of the public key', async () => {
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    expect(jwsSignatureVerifies('ES256', ec.privateKey, jws.signingInput, jws.signature)).toBe(
      false,
    );
  });

  it('an RSA key for an ES256 token', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    expect(jwsSignatureVerifies('ES256', rsa, jws.signingInput, jws.signature)).toBe(false);
  });

  it('an algorithm named like an Object.prototype member', async () => {
    const jws = decodeJws(await tokenFor('ES256', ec.privateKey));
    for (const alg of ['constructor', '__proto__', 'toString']) {
      expect(jwsSignatureVerifies(alg, ec.publicKey, jws.signingInput, jws.signature)).toBe(false);
    }
  });
});

describe('decodeJws', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

  it('refuses a header with critical extensions (go-jose understands none)', () => {
    const h = Buffer.from('{"alg":"ES256","crit":["exp"],"exp":1}').toString('base64url');
    const p = Buffer.from('{}').toString('base64url');
    expect(() => decodeJws(`${h}.${p}.AAAA`)).toThrow('header names critical extensions');
  });

  it('refuses a header with b64', () => {
    const h = Buffer.from('{"alg":"ES256","b64":true}').toString('base64url');
    const p = Buffer.from('{}').toString('base64url');
    expect(() => decodeJws(`${h}.${p}.AAAA`)).toThrow('header has b64');
  });

  it.each([
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['a header that is not base64url', '***.e30.AAAA'],
    ['a header that is not JSON', `${Buffer.from('nope').toString('base64url')}.e30.AAAA`],
    ['a header that is an array', `${Buffer.from('[]').toString('base64url')}.e30.AAAA`],
    ['a header without alg', `${Buffer.from('{}').toString('base64url')}.e30.AAAA`],
    [
      'a payload that is a string',
      `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from('"x"').toString('base64url')}.AAAA`,
    ],
    ['an empty signature', `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.e30.`],
    ['a padded signature', `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.e30.AA==`],
  ])('refuses %s', (_what, token) => {
    expect(() => decodeJws(token)).toThrow(JwsFormatError);
  });

  it('keeps the signing input byte for byte', async () => {
    const token = await tokenFor('ES256', ec.privateKey);
    const jws = decodeJws(token);
    expect(jws.signingInput.toString()).toBe(token.slice(0, token.lastIndexOf('.')));
    expect(jws.payload.sub).toBe('ci');
  });
});
