import { createHmac, createPublicKey, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, decodeProtectedHeader, generateKeyPair, type JWK, type JWTPayload } from 'jose';
import { ManualClock } from '../../../../services/common/clock';
import { silentLogger } from '../../../../services/common/logger';
import {
  OidcVerifier,
  TokenVerificationError,
  type FetchLike,
  type OidcVerifierOptions,
} from '../../../../services/ca/identity/oidc-verifier';
import {
  startDevIssuer,
  type DevIssuer,
  type MintOptions,
} from '../../../../services/dev-issuer/dev-issuer';

/** A fixed "now" for every verifier here, in seconds; tokens carry explicit exp/nbf. */
const T = 1_900_000_000;
const clock = new ManualClock(new Date(T * 1000));

let issuer: DevIssuer;
const extraServers: Server[] = [];
const extraIssuers: DevIssuer[] = [];

beforeAll(async () => {
  issuer = await startDevIssuer();
});

beforeEach(() => {
  clock.set(new Date(T * 1000));
});

afterAll(async () => {
  await issuer.close();
  await Promise.all(extraIssuers.map((i) => i.close()));
  await Promise.all(
    extraServers.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        }),
    ),
  );
});

function verifierFor(
  url: string,
  options: Partial<OidcVerifierOptions> = {},
  clientId = 'sigstore',
): OidcVerifier {
  return new OidcVerifier(url, clientId, {
    discoveryTimeoutMs: 5000,
    jwksCooldownMs: 0,
    discoveryRetryMs: 0,
    clock,
    logger: silentLogger,
    ...options,
  });
}

/** A token from the dev issuer valid at T (exp T+300) unless the claims say otherwise. */
function mint(
  claims: JWTPayload = {},
  options: MintOptions = {},
  from: DevIssuer = issuer,
): Promise<string> {
  return from.mint({ sub: 'alice', exp: T + 300, ...claims }, { omitExp: true, ...options });
}

/** The reason a verification was refused (fails the test if it was not refused). */
async function reasonOf(verification: Promise<unknown>): Promise<string> {
  const err = await verification.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenVerificationError);
  return (err as TokenVerificationError).reason;
}

async function errorOf(verification: Promise<unknown>): Promise<TokenVerificationError> {
  const err = await verification.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenVerificationError);
  return err as TokenVerificationError;
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

async function issuerJwks(): Promise<JWK[]> {
  const response = await fetch(`${issuer.url}/keys`);
  return ((await response.json()) as { keys: JWK[] }).keys;
}

/** A small HTTP server on 127.0.0.1 for discovery documents the dev issuer will not serve. */
async function serve(
  handler: (
    path: string,
    url: string,
  ) => { status: number; headers?: Record<string, string>; body?: unknown },
): Promise<string> {
  let url = '';
  const server = createServer((req, res) => {
    const answer = handler((req.url ?? '/').split('?')[0] ?? '/', url);
    const body = answer.body === undefined ? '' : JSON.stringify(answer.body);
    res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  extraServers.push(server);
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return url;
}

/** A port nothing listens on (bound once, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('OidcVerifier accepts', () => {
  it('an ES256 token from its issuer', async () => {
    const token = await mint({ sub: 'alice', email: 'alice@example.com' }, { alg: 'ES256' });
    const claims = await verifierFor(issuer.url).verify(token);
    expect(claims).toMatchObject({
      iss: issuer.url,
      aud: 'sigstore',
      sub: 'alice',
      email: 'alice@example.com',
    });
  });

  it('an RS256 token from its issuer', async () => {
    const token = await mint({ sub: 'bob' }, { alg: 'RS256' });
    expect(decodeProtectedHeader(token).alg).toBe('RS256');
    expect((await verifierFor(issuer.url).verify(token)).sub).toBe('bob');
  });

  it('an audience array that contains sigstore', async () => {
    const token = await mint({}, { audience: ['other', 'sigstore'] });
    expect((await verifierFor(issuer.url).verify(token)).aud).toEqual(['other', 'sigstore']);
  });

  it('a token at the very instant it expires (exp == now)', async () => {
    const token = await mint({ exp: T });
    await expect(verifierFor(issuer.url).verify(token)).resolves.toMatchObject({ exp: T });
  });

  it('a token whose nbf is 4 minutes in the future (5-minute leeway)', async () => {
    const token = await mint({ nbf: T + 240 });
    await expect(verifierFor(issuer.url).verify(token)).resolves.toMatchObject({ nbf: T + 240 });
  });

  it('a token whose nbf is exactly 5 minutes in the future', async () => {
    const token = await mint({ nbf: T + 300 });
    await expect(verifierFor(issuer.url).verify(token)).resolves.toMatchObject({ nbf: T + 300 });
  });
});

describe('OidcVerifier refuses', () => {
  it('a token whose audience is not sigstore', async () => {
    const token = await mint({}, { audience: 'not-sigstore' });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('audience');
  });

  it('an audience array without sigstore', async () => {
    const token = await mint({}, { audience: ['a', 'b', 'sigstore2'] });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('audience');
  });

  it('a token for sigstore when the verifier expects another client id', async () => {
    const token = await mint();
    expect(await reasonOf(verifierFor(issuer.url, {}, 'other-client').verify(token))).toBe(
      'audience',
    );
  });

  it('a token that expired 1 second ago (no leeway on exp)', async () => {
    const token = await mint({ exp: T - 1 });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('expired');
  });

  it('a token that expired 1 millisecond ago', async () => {
    const token = await mint({ exp: T });
    clock.advance(1);
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('expired');
  });

  it('a token that expired long ago', async () => {
    const token = await mint({ exp: T - 3600 });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('expired');
  });

  it('a token without exp', async () => {
    const token = await issuer.mint({ sub: 'alice' }, { omitExp: true });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('expired');
  });

  it('a token whose nbf is 6 minutes in the future', async () => {
    const token = await mint({ nbf: T + 360 });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('not_yet_valid');
  });

  it("a token whose iss differs from the verifier's issuer", async () => {
    const token = await mint({}, { issuer: 'https://accounts.example.com' });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('issuer');
  });

  it('a token signed by another key under the same kid', async () => {
    const genuine = await mint();
    const { kid } = decodeProtectedHeader(genuine);
    expect(kid).toBeDefined();
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ sub: 'mallory', exp: T + 300 })
      .setProtectedHeader({ alg: 'ES256', kid: kid!, typ: 'JWT' })
      .setIssuer(issuer.url)
      .setAudience('sigstore')
      .sign(privateKey);
    const verifier = verifierFor(issuer.url);
    await expect(verifier.verify(genuine)).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(forged))).toBe('signature');
  });

  it('an unsigned token (alg: none)', async () => {
    const genuine = await mint();
    const [, payload] = genuine.split('.');
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    const verifier = verifierFor(issuer.url);
    await expect(verifier.verify(genuine)).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(unsigned))).toBe('signature');
  });

  it("an HS256 token keyed with the issuer's public key (algorithm confusion)", async () => {
    const rsa = (await issuerJwks()).find((k) => k.kty === 'RSA');
    expect(rsa).toBeDefined();
    const publicPem = createPublicKey({ key: rsa!, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    const signingInput = `${b64url({ alg: 'HS256', kid: rsa!.kid, typ: 'JWT' })}.${b64url({
      iss: issuer.url,
      aud: 'sigstore',
      sub: 'mallory',
      exp: T + 300,
    })}`;
    const mac = createHmac('sha256', publicPem).update(signingInput).digest('base64url');
    expect(await reasonOf(verifierFor(issuer.url).verify(`${signingInput}.${mac}`))).toBe(
      'signature',
    );
  });

  it('a token naming a kid the issuer does not have', async () => {
    const token = await mint({}, { kid: 'no-such-key' });
    expect(await reasonOf(verifierFor(issuer.url).verify(token))).toBe('unknown_kid');
  });

  it('a token whose signature was altered', async () => {
    const token = await mint({}, { alg: 'RS256' });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
    expect(await reasonOf(verifierFor(issuer.url).verify(`${header}.${payload}.${flipped}`))).toBe(
      'signature',
    );
  });
});

describe('OidcVerifier discovery', () => {
  it('refuses a discovery document whose issuer is not the configured URL', async () => {
    const before = issuer.requests.discovery;
    // The dev issuer calls itself http://127.0.0.1:PORT; configure it with a trailing slash.
    const err = await errorOf(verifierFor(`${issuer.url}/`).verify(await mint()));
    expect(err.reason).toBe('discovery');
    expect(err.message).toContain('does not match');
    expect(issuer.requests.discovery).toBe(before + 1);
  });

  it('refuses tokens while discovery is unreachable, then verifies once the issuer is up', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const verifier = verifierFor(url, { discoveryRetryMs: 0 });
    expect(await reasonOf(verifier.verify(await mint({}, { issuer: url })))).toBe('discovery');
    const late = await startDevIssuer({ port });
    extraIssuers.push(late);
    expect(late.url).toBe(url);
    const token = await mint({ sub: 'late' }, {}, late);
    expect((await verifier.verify(token)).sub).toBe('late');
    expect(late.requests.discovery).toBe(1);
  });

  it('does not ask again within discoveryRetryMs after a failure', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const calls: string[] = [];
    const recording: FetchLike = (input, init) => {
      calls.push(String(input));
      return fetch(input, init);
    };
    const verifier = verifierFor(url, { discoveryRetryMs: 3_600_000, fetch: recording });
    const token = await mint({}, { issuer: url });
    expect(await reasonOf(verifier.verify(token))).toBe('discovery');
    expect(await reasonOf(verifier.verify(token))).toBe('discovery');
    expect(calls).toEqual([`${url}/.well-known/openid-configuration`]);
  });

  it('runs discovery once for many concurrent first tokens', async () => {
    const fresh = await startDevIssuer();
    extraIssuers.push(fresh);
    const verifier = verifierFor(fresh.url);
    const tokens = await Promise.all(
      Array.from({ length: 10 }, (_, i) => mint({ sub: `user-${i}` }, {}, fresh)),
    );
    const results = await Promise.all(tokens.map((t) => verifier.verify(t)));
    expect(results.map((r) => r.sub)).toEqual(tokens.map((_, i) => `user-${i}`));
    expect(fresh.requests.discovery).toBe(1);
  });

  it('refuses a discovery redirect to another host', async () => {
    const target = `http://localhost:${new URL(issuer.url).port}/.well-known/openid-configuration`;
    const url = await serve(() => ({ status: 302, headers: { location: target } }));
    const before = issuer.requests.discovery;
    const err = await errorOf(verifierFor(url).verify(await mint({}, { issuer: url })));
    expect(err.reason).toBe('discovery');
    expect(err.message).toContain('cross-host redirect');
    expect(issuer.requests.discovery).toBe(before);
  });

  it('follows a discovery redirect on the same host', async () => {
    const url = await serve((path, self) =>
      path === '/.well-known/openid-configuration'
        ? { status: 302, headers: { location: '/moved/openid-configuration' } }
        : {
            status: 200,
            body: {
              issuer: self,
              jwks_uri: `${issuer.url}/keys`,
              id_token_signing_alg_values_supported: ['ES256', 'RS256'],
            },
          },
    );
    const token = await mint({ sub: 'redirected' }, { issuer: url });
    expect((await verifierFor(url).verify(token)).sub).toBe('redirected');
  });

  it('refuses an algorithm the discovery document does not offer', async () => {
    const url = await serve((_path, self) => ({
      status: 200,
      body: {
        issuer: self,
        jwks_uri: `${issuer.url}/keys`,
        id_token_signing_alg_values_supported: ['RS256'],
      },
    }));
    const verifier = verifierFor(url);
    await expect(
      verifier.verify(await mint({}, { issuer: url, alg: 'RS256' })),
    ).resolves.toBeDefined();
    expect(await reasonOf(verifier.verify(await mint({}, { issuer: url, alg: 'ES256' })))).toBe(
      'signature',
    );
  });

  it('refuses an issuer whose discovery document offers only HS256', async () => {
    const url = await serve((_path, self) => ({
      status: 200,
      body: {
        issuer: self,
        jwks_uri: `${issuer.url}/keys`,
        id_token_signing_alg_values_supported: ['HS256', 'none'],
      },
    }));
    const err = await errorOf(verifierFor(url).verify(await mint({}, { issuer: url })));
    expect(err.reason).toBe('discovery');
    expect(err.message).toContain('no acceptable algorithm');
  });
});

describe('OidcVerifier JWKS cache', () => {
  it('refetches the JWKS for a new kid after the issuer rotates its keys', async () => {
    const rotating = await startDevIssuer();
    extraIssuers.push(rotating);
    const verifier = verifierFor(rotating.url, { jwksCooldownMs: 0 });
    await verifier.verify(await mint({}, {}, rotating));
    expect(rotating.requests.jwks).toBe(1);
    await rotating.rotateKeys();
    const token = await mint({ sub: 'after-rotation' }, {}, rotating);
    expect((await verifier.verify(token)).sub).toBe('after-rotation');
    expect(rotating.requests.jwks).toBe(2);
  });

  it('refuses a token signed with a key the issuer has rotated out', async () => {
    const rotating = await startDevIssuer();
    extraIssuers.push(rotating);
    const verifier = verifierFor(rotating.url, { jwksCooldownMs: 0 });
    const old = await mint({}, {}, rotating);
    await verifier.verify(old);
    await rotating.rotateKeys();
    await verifier.verify(await mint({}, {}, rotating));
    expect(await reasonOf(verifier.verify(old))).toBe('unknown_kid');
  });

  it('lets a flood of 50 unknown kids cause at most 1 extra JWKS request', async () => {
    const flooded = await startDevIssuer();
    extraIssuers.push(flooded);
    const verifier = verifierFor(flooded.url, { jwksCooldownMs: 3_600_000 });
    await verifier.verify(await mint({}, {}, flooded));
    const before = flooded.requests.jwks;
    for (let i = 0; i < 50; i++) {
      const token = await mint({}, { kid: randomUUID() }, flooded);
      expect(await reasonOf(verifier.verify(token))).toBe('unknown_kid');
    }
    expect(flooded.requests.jwks - before).toBeLessThanOrEqual(1);
    // Known keys still verify after the flood.
    await expect(verifier.verify(await mint({}, {}, flooded))).resolves.toBeDefined();
  });

  it('refetches for every unknown kid when the cooldown is zero (control for the flood test)', async () => {
    const flooded = await startDevIssuer();
    extraIssuers.push(flooded);
    const verifier = verifierFor(flooded.url, { jwksCooldownMs: 0 });
    await verifier.verify(await mint({}, {}, flooded));
    const before = flooded.requests.jwks;
    for (let i = 0; i < 5; i++) {
      const token = await mint({}, { kid: randomUUID() }, flooded);
      expect(await reasonOf(verifier.verify(token))).toBe('unknown_kid');
    }
    expect(flooded.requests.jwks - before).toBe(5);
  });

  it('keeps verifying tokens signed with cached keys while the JWKS endpoint is down', async () => {
    const flaky = await startDevIssuer();
    extraIssuers.push(flaky);
    const verifier = verifierFor(flaky.url, { jwksCooldownMs: 0 });
    await verifier.verify(await mint({}, {}, flaky));
    await verifier.verify(await mint({}, { alg: 'RS256' }, flaky));
    flaky.setJwksMode('down');
    const before = flaky.requests.jwks;
    for (const alg of ['ES256', 'RS256'] as const) {
      const token = await mint({ sub: `cached-${alg}` }, { alg }, flaky);
      expect((await verifier.verify(token)).sub).toBe(`cached-${alg}`);
    }
    expect(flaky.requests.jwks).toBe(before);
  });
});

describe('OidcVerifier JWKS redirects', () => {
  /** An issuer whose discovery sends jwks_uri to /old-keys, which answers a redirect. */
  async function redirectingJwks(location: (self: string) => string): Promise<string> {
    const keys = await issuerJwks();
    return serve((path, self) => {
      if (path === '/.well-known/openid-configuration') {
        return {
          status: 200,
          body: {
            issuer: self,
            jwks_uri: `${self}/old-keys`,
            id_token_signing_alg_values_supported: ['ES256', 'RS256'],
          },
        };
      }
      if (path === '/old-keys') return { status: 301, headers: { location: location(self) } };
      if (path === '/keys') return { status: 200, body: { keys } };
      return { status: 404 };
    });
  }

  it('follows a JWKS redirect on the same host', async () => {
    const url = await redirectingJwks(() => '/keys');
    const token = await mint({ sub: 'moved-keys' }, { issuer: url });
    expect((await verifierFor(url).verify(token)).sub).toBe('moved-keys');
  });

  it('refuses a JWKS redirect to another host, fetching nothing there', async () => {
    const url = await redirectingJwks(() => `http://localhost:${new URL(issuer.url).port}/keys`);
    const before = issuer.requests.jwks;
    const err = await errorOf(verifierFor(url).verify(await mint({}, { issuer: url })));
    expect(err.message).toContain('cross-host redirect');
    expect(issuer.requests.jwks).toBe(before);
  });
});
