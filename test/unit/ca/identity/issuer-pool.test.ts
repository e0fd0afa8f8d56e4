import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JWTPayload } from 'jose';
import { CaError } from '../../../../services/ca/common/errors';
import { ManualClock } from '../../../../services/common/clock';
import { silentLogger } from '../../../../services/common/logger';
import {
  type IdentityConfig,
  type OidcIssuerConfig,
} from '../../../../services/ca/config/identity-config';
import { parseIdentityConfig } from '../../../../services/ca/identity/identity-config';
import {
  IssuerPool,
  metaIssuerPattern,
  type IdentityOptions,
} from '../../../../services/ca/identity/issuer-pool';
import type { FetchLike } from '../../../../services/ca/identity/oidc-verifier';
import {
  startDevIssuer,
  type DevIssuer,
  type MintOptions,
} from '../../../../services/dev-issuer/dev-issuer';

const CLIENT_MESSAGE = 'There was an error processing the identity token';
const OID = {
  issuerV1: '1.3.6.1.4.1.57264.1.1',
  issuerV2: '1.3.6.1.4.1.57264.1.8',
  tokenSubject: '1.3.6.1.4.1.57264.1.24',
};

/** A fixed "now", in seconds; tokens carry an explicit exp. */
const T = 1_900_000_000;
const clock = new ManualClock(new Date(T * 1000));

let issuer: DevIssuer;

beforeAll(async () => {
  issuer = await startDevIssuer();
});

afterAll(async () => {
  await issuer.close();
});

/**
 * The real fetch, wrapped to record every request the pool makes. Requests that would leave
 * 127.0.0.1 are recorded and then stopped, so a test can see that one was attempted.
 */
function recordingFetch(): { fetch: FetchLike; calls: string[] } {
  const calls: string[] = [];
  const wrapped: FetchLike = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    calls.push(url.href);
    if (url.hostname !== '127.0.0.1') {
      return Promise.reject(new Error(`this test does not reach ${url.host}`));
    }
    return fetch(input, init);
  };
  return { fetch: wrapped, calls };
}

function identityConfig(
  oidcIssuers: Iterable<readonly [string, OidcIssuerConfig]>,
  metaIssuers: Iterable<readonly [string, OidcIssuerConfig]> = [],
): IdentityConfig {
  return {
    oidcIssuers: new Map(oidcIssuers),
    metaIssuers: new Map(metaIssuers),
    ciIssuerMetadata: new Map(),
  };
}

interface PoolUnderTest {
  readonly pool: IssuerPool;
  readonly calls: string[];
  readonly failures: string[];
}

function poolFor(config: IdentityConfig, options: Partial<IdentityOptions> = {}): PoolUnderTest {
  const { fetch: recording, calls } = recordingFetch();
  const failures: string[] = [];
  const pool = new IssuerPool(config, {
    discoveryTimeoutMs: 5000,
    jwksCooldownMs: 0,
    discoveryRetryMs: 0,
    maxTokenBytes: 32768,
    clock,
    logger: silentLogger,
    fetch: recording,
    onFailure: (reason) => failures.push(reason),
    ...options,
  });
  return { pool, calls, failures };
}

/** A pool trusting the dev issuer as an email issuer, with changes to its entry. */
function devPool(changes: Partial<OidcIssuerConfig> = {}): PoolUnderTest {
  return poolFor(identityConfig([[issuer.url, { ...issuer.issuerConfig, ...changes }]]));
}

function mint(claims: JWTPayload, options: MintOptions = {}): Promise<string> {
  return issuer.mint({ exp: T + 300, ...claims }, { omitExp: true, ...options });
}

function emailClaims(extra: JWTPayload = {}): JWTPayload {
  return { sub: 'user-1234', email: 'alice@example.com', email_verified: true, ...extra };
}

/** The CaError an authentication threw (fails the test if it did not throw one). */
async function refusalOf(attempt: Promise<unknown>): Promise<CaError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CaError);
  const caError = err as CaError;
  expect(caError.code).toBe('invalid_token');
  expect(caError.clientMessage).toBe(CLIENT_MESSAGE);
  return caError;
}

describe('metaIssuerPattern', () => {
  const eks = metaIssuerPattern('https://oidc.eks.*.amazonaws.com/id/*');

  it.each([
    [
      'https://oidc.eks.*.amazonaws.com/id/*',
      'https://oidc.eks.us-west-2.amazonaws.com/id/B02C93B6A2D30341AD01E1B6D48164CB',
    ],
    [
      'https://container.googleapis.com/v1/projects/*/locations/*/clusters/*',
      'https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/prod_cluster-1',
    ],
    [
      'https://*.oic.prod-aks.azure.com/*/*',
      'https://eastus.oic.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/a5d3e8e1-0b7e-4f3b-a0f4-5d4b0a2c9e11',
    ],
    [
      'https://*.oic.prod-aks.azure.com/*/*/',
      'https://eastus.oic.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/a5d3e8e1-0b7e-4f3b-a0f4-5d4b0a2c9e11/',
    ],
    ['https://oidc.prod-aks.azure.com/*', 'https://oidc.prod-aks.azure.com/abc-123'],
    [
      'https://token.actions.githubusercontent.com/*',
      'https://token.actions.githubusercontent.com/my-enterprise',
    ],
  ])('%s matches %s', (wildcard, url) => {
    expect(metaIssuerPattern(wildcard).test(url)).toBe(true);
  });

  it.each([
    ['a dot inside a wildcard', 'https://oidc.eks.us-west-2.evil.com.amazonaws.com/id/X'],
    ['a dot in the last wildcard', 'https://oidc.eks.us-west-2.amazonaws.com/id/X.evil.com'],
    ['a slash inside a wildcard', 'https://oidc.eks.us/west.amazonaws.com/id/X'],
    ['an extra path segment', 'https://oidc.eks.us-west-2.amazonaws.com/id/X/Y'],
    ['a trailing slash', 'https://oidc.eks.us-west-2.amazonaws.com/id/X/'],
    [
      'the issuer in a query string',
      'http://localhost?issuer=https://oidc.eks.us-west-2.amazonaws.com/id/X',
    ],
    ['a prefix', 'https://evil.example/https://oidc.eks.us-west-2.amazonaws.com/id/X'],
    ['one extra leading character', 'xhttps://oidc.eks.us-west-2.amazonaws.com/id/X'],
    ['a query suffix', 'https://oidc.eks.us-west-2.amazonaws.com/id/X?x=1'],
    ['a fragment suffix', 'https://oidc.eks.us-west-2.amazonaws.com/id/X#x'],
    ['user info', 'https://oidc.eks.us-west-2.amazonaws.com/id/X@evil.example'],
    ['a trailing newline', 'https://oidc.eks.us-west-2.amazonaws.com/id/X\n'],
    ['an empty wildcard', 'https://oidc.eks..amazonaws.com/id/X'],
    ['an empty last wildcard', 'https://oidc.eks.us-west-2.amazonaws.com/id/'],
    ['a dot that is literal in the pattern', 'https://oidcXeks.us-west-2.amazonaws.com/id/X'],
    ['http instead of https', 'http://oidc.eks.us-west-2.amazonaws.com/id/X'],
  ])('the EKS pattern does not match %s', (_what, url) => {
    expect(eks.test(url)).toBe(false);
  });

  it('quotes regular-expression characters in the wildcard URL', () => {
    const pattern = metaIssuerPattern('https://a.example.com/(x)+?/*');
    expect(pattern.test('https://a.example.com/(x)+?/abc')).toBe(true);
    expect(pattern.test('https://a.example.com/xx/abc')).toBe(false);
  });
});

describe('IssuerPool.authenticate', () => {
  it('turns a verified email token into an email principal', async () => {
    const { pool, failures } = devPool();
    const principal = await pool.authenticate(await mint(emailClaims()));
    expect(principal.name).toBe('alice@example.com');
    expect(principal.issuer).toBe(issuer.url);
    expect(principal.subject).toBe('user-1234');
    expect(principal.issuerType).toBe('email');
    expect(principal.certificateIdentity()).toEqual({
      san: { type: 'email', value: 'alice@example.com' },
      extensions: [
        { oid: OID.issuerV1, value: issuer.url, encoding: 'raw' },
        { oid: OID.issuerV2, value: issuer.url, encoding: 'utf8' },
        { oid: OID.tokenSubject, value: 'user-1234', encoding: 'utf8' },
      ],
    });
    expect(failures).toEqual([]);
  });

  it('authenticates RS256 tokens too', async () => {
    const { pool } = devPool();
    const principal = await pool.authenticate(await mint(emailClaims(), { alg: 'RS256' }));
    expect(principal.name).toBe('alice@example.com');
  });

  it('refuses a token from an unknown issuer without making any request', async () => {
    const { pool, calls, failures } = devPool();
    const token = await mint(emailClaims(), { issuer: 'https://accounts.example.com' });
    const err = await refusalOf(pool.authenticate(token));
    expect(err.detail).toContain('https://accounts.example.com');
    expect(calls).toEqual([]);
    expect(failures).toEqual(['unknown_issuer']);
  });

  it('refuses a token from another local issuer it was not configured with, without a request', async () => {
    const other = await startDevIssuer();
    try {
      const { pool, calls } = devPool();
      const token = await other.mintEmail('alice@example.com');
      await refusalOf(pool.authenticate(token));
      expect(calls).toEqual([]);
      expect(other.requests.discovery).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('refuses a malformed token without a request', async () => {
    const { pool, calls, failures } = devPool();
    await refusalOf(pool.authenticate('not.a-token'));
    await refusalOf(pool.authenticate(''));
    expect(calls).toEqual([]);
    expect(failures).toEqual(['malformed', 'malformed']);
  });

  it('refuses a token longer than maxTokenBytes without a request', async () => {
    const { fetch: recording, calls } = recordingFetch();
    const failures: string[] = [];
    const pool = new IssuerPool(identityConfig([[issuer.url, issuer.issuerConfig]]), {
      discoveryTimeoutMs: 5000,
      jwksCooldownMs: 0,
      maxTokenBytes: 600,
      clock,
      logger: silentLogger,
      fetch: recording,
      onFailure: (reason) => failures.push(reason),
    });
    const token = await mint(emailClaims({ padding: 'x'.repeat(600) }));
    await refusalOf(pool.authenticate(token));
    expect(calls).toEqual([]);
    expect(failures).toEqual(['malformed']);
  });

  it('refuses a token whose audience is not sigstore, reporting the reason', async () => {
    const { pool, failures } = devPool();
    await refusalOf(pool.authenticate(await mint(emailClaims(), { audience: 'other' })));
    expect(failures).toEqual(['audience']);
  });

  it('refuses an expired token, reporting the reason', async () => {
    const { pool, failures } = devPool();
    await refusalOf(pool.authenticate(await mint(emailClaims({ exp: T - 1 }))));
    expect(failures).toEqual(['expired']);
  });

  it('refuses a token without an email claim', async () => {
    const { pool, failures } = devPool();
    const err = await refusalOf(pool.authenticate(await mint({ sub: 'x', email_verified: true })));
    expect(err.detail).toContain('token missing email claim');
    expect(failures).toEqual(['claims']);
  });

  it('refuses a token whose email_verified is false', async () => {
    const { pool, failures } = devPool();
    const err = await refusalOf(
      pool.authenticate(await mint(emailClaims({ email_verified: false }))),
    );
    expect(err.detail).toContain('email_verified claim was false');
    expect(failures).toEqual(['claims']);
  });

  it('refuses a token without email_verified', async () => {
    const { pool } = devPool();
    const claims = emailClaims();
    delete claims.email_verified;
    const err = await refusalOf(pool.authenticate(await mint(claims)));
    expect(err.detail).toContain('email_verified claim was false');
  });

  it('accepts email_verified false or missing when the issuer skips email verification', async () => {
    const { pool } = devPool({ skipEmailVerification: true });
    const missing = emailClaims();
    delete missing.email_verified;
    expect((await pool.authenticate(await mint(missing))).name).toBe('alice@example.com');
    const unverified = emailClaims({ email_verified: false });
    expect((await pool.authenticate(await mint(unverified))).name).toBe('alice@example.com');
  });

  it.each([['true'], ['True'], [true]])('accepts email_verified %j', async (value) => {
    const { pool } = devPool();
    const principal = await pool.authenticate(await mint(emailClaims({ email_verified: value })));
    expect(principal.name).toBe('alice@example.com');
  });

  it.each([['false'], ['False']])('refuses email_verified %j', async (value) => {
    const { pool } = devPool();
    const err = await refusalOf(
      pool.authenticate(await mint(emailClaims({ email_verified: value }))),
    );
    expect(err.detail).toContain('email_verified claim was false');
  });

  it.each([['yes'], [1], ['TRUE'], [null]])(
    'refuses email_verified %j, which is neither true nor false',
    async (value) => {
      const { pool, failures } = devPool({ skipEmailVerification: true });
      await refusalOf(pool.authenticate(await mint(emailClaims({ email_verified: value }))));
      expect(failures).toEqual(['claims']);
    },
  );

  it.each([
    ['not-an-email'],
    ['alice@'],
    ['@example.com'],
    ['alice@example'],
    ['a..b@example.com'],
  ])('refuses the invalid email address %j', async (email) => {
    const { pool } = devPool();
    const err = await refusalOf(pool.authenticate(await mint(emailClaims({ email }))));
    expect(err.detail).toContain('email address is not valid');
  });

  it('refuses an email claim that is not a string', async () => {
    const { pool } = devPool();
    await refusalOf(pool.authenticate(await mint(emailClaims({ email: ['alice@example.com'] }))));
  });

  it('puts the IssuerClaim value into 1.1 and 1.8 ($.federated_claims.connector_id)', async () => {
    const { pool } = devPool({ issuerClaim: '$.federated_claims.connector_id' });
    const principal = await pool.authenticate(
      await mint(
        emailClaims({
          federated_claims: { connector_id: 'https://github.com/login/oauth', user_id: '42' },
        }),
      ),
    );
    expect(principal.issuer).toBe(issuer.url);
    expect(principal.certificateIdentity().extensions).toEqual([
      { oid: OID.issuerV1, value: 'https://github.com/login/oauth', encoding: 'raw' },
      { oid: OID.issuerV2, value: 'https://github.com/login/oauth', encoding: 'utf8' },
      { oid: OID.tokenSubject, value: 'user-1234', encoding: 'utf8' },
    ]);
  });

  it('refuses a token without the claim its IssuerClaim names', async () => {
    const { pool, failures } = devPool({ issuerClaim: '$.federated_claims.connector_id' });
    await refusalOf(pool.authenticate(await mint(emailClaims({ federated_claims: {} }))));
    await refusalOf(pool.authenticate(await mint(emailClaims())));
    expect(failures).toEqual(['claims', 'claims']);
  });

  it('refuses tokens of an issuer whose type Fulcio does not know (loaded with a challenge claim), without a request', async () => {
    const { pool, calls, failures } = devPool({ type: 'custom-type', challengeClaim: 'sub' });
    await refusalOf(pool.authenticate(await mint(emailClaims())));
    expect(calls).toEqual([]);
    expect(failures).toEqual(['unknown_issuer']);
  });
});

describe('IssuerPool meta issuers', () => {
  const emailMeta = (url: string): [string, OidcIssuerConfig] => [
    url,
    { ...issuer.issuerConfig, issuerUrl: url },
  ];

  it('routes a token whose issuer matches a meta issuer and verifies it', async () => {
    const { pool, calls } = poolFor(identityConfig([], [emailMeta('http://127.0.0.1:*')]));
    const principal = await pool.authenticate(await mint(emailClaims()));
    expect(principal.issuer).toBe(issuer.url);
    expect(calls[0]).toBe(`${issuer.url}/.well-known/openid-configuration`);
  });

  it('sends a matching EKS issuer to discovery (control for the bypass tests)', async () => {
    const { pool, calls, failures } = poolFor(
      identityConfig([], [emailMeta('https://oidc.eks.*.amazonaws.com/id/*')]),
    );
    const iss = 'https://oidc.eks.us-west-2.amazonaws.com/id/B02C93B6A2D30341AD01E1B6D48164CB';
    await refusalOf(pool.authenticate(await mint(emailClaims(), { issuer: iss })));
    expect(calls).toEqual([`${iss}/.well-known/openid-configuration`]);
    expect(failures).toEqual(['discovery']);
  });

  it.each([
    'http://localhost?issuer=https://oidc.eks.us-west-2.amazonaws.com/id/X',
    'http://127.0.0.1:1/?https://oidc.eks.us-west-2.amazonaws.com/id/X',
    'https://oidc.eks.us-west-2.amazonaws.com/id/X/../../evil',
    'https://oidc.eks.us-west-2.evil.example.amazonaws.com/id/X',
    'https://oidc.eks.us-west-2.amazonaws.com/id/X.evil.example',
    'https://oidc.eks.us-west-2.amazonaws.com/id/X@127.0.0.1',
    'http://127.0.0.1:1.evil.example',
    'http://127.0.0.1:1/path',
    'http://evil.example/http://127.0.0.1:1',
  ])('refuses the meta-issuer bypass %s without a request leaving', async (iss) => {
    const { pool, calls, failures } = poolFor(
      identityConfig(
        [],
        [emailMeta('https://oidc.eks.*.amazonaws.com/id/*'), emailMeta('http://127.0.0.1:*')],
      ),
    );
    await refusalOf(pool.authenticate(await mint(emailClaims(), { issuer: iss })));
    expect(calls).toEqual([]);
    expect(failures).toEqual(['unknown_issuer']);
  });

  it('prefers an exact issuer over a meta issuer', async () => {
    const { pool } = poolFor(
      identityConfig(
        [[issuer.url, { ...issuer.issuerConfig, skipEmailVerification: true }]],
        [emailMeta('http://127.0.0.1:*')],
      ),
    );
    const claims = emailClaims();
    delete claims.email_verified;
    expect((await pool.authenticate(await mint(claims))).name).toBe('alice@example.com');
  });
});

describe('IssuerPool warmUp', () => {
  it('runs discovery for static issuers up front, and a failure does not throw', async () => {
    const before = issuer.requests.discovery;
    const { pool, calls } = poolFor(
      identityConfig([
        [issuer.url, issuer.issuerConfig],
        [
          'https://accounts.example.com',
          { ...issuer.issuerConfig, issuerUrl: 'https://accounts.example.com' },
        ],
      ]),
    );
    await expect(pool.warmUp()).resolves.toBeUndefined();
    expect(issuer.requests.discovery).toBe(before + 1);
    expect([...calls].sort()).toEqual([
      `${issuer.url}/.well-known/openid-configuration`,
      'https://accounts.example.com/.well-known/openid-configuration',
    ]);
    await pool.authenticate(await mint(emailClaims()));
    expect(issuer.requests.discovery).toBe(before + 1);
  });
});

describe('IssuerPool.describe', () => {
  it('lists static issuers by issuerUrl and meta issuers by wildcardIssuerUrl', () => {
    const eks = 'https://oidc.eks.*.amazonaws.com/id/*';
    const { pool } = poolFor(
      identityConfig(
        [[issuer.url, { ...issuer.issuerConfig, skipEmailVerification: true }]],
        [
          [
            eks,
            {
              ...issuer.issuerConfig,
              issuerUrl: eks,
              type: 'kubernetes',
              skipEmailVerification: false,
            },
          ],
        ],
      ),
    );
    expect(pool.describe()).toEqual([
      {
        issuerUrl: issuer.url,
        audience: 'sigstore',
        challengeClaim: 'email',
        spiffeTrustDomain: '',
        issuerType: 'email',
        subjectDomain: '',
        skipEmailVerification: true,
      },
      {
        wildcardIssuerUrl: eks,
        audience: 'sigstore',
        challengeClaim: 'sub',
        spiffeTrustDomain: '',
        issuerType: 'kubernetes',
        subjectDomain: '',
        skipEmailVerification: false,
      },
    ]);
  });

  it("describes every issuer of Fulcio's public-good config and makes no request building it", () => {
    const text = readFileSync(
      join(resolve(__dirname, '../../../..'), 'test', 'fixtures', 'fulcio-public-good-config.yaml'),
      'utf8',
    );
    const config = parseIdentityConfig(text);
    const { pool, calls } = poolFor(config);
    const described = pool.describe();
    expect(described).toHaveLength(config.oidcIssuers.size + config.metaIssuers.size);
    expect(described).toContainEqual(
      expect.objectContaining({
        issuerUrl: 'https://accounts.google.com',
        challengeClaim: 'email',
        issuerType: 'email',
      }),
    );
    expect(described).toContainEqual(
      expect.objectContaining({
        wildcardIssuerUrl: 'https://oidc.eks.*.amazonaws.com/id/*',
        challengeClaim: 'sub',
        issuerType: 'kubernetes',
      }),
    );
    expect(calls).toEqual([]);
  });
});

describe('meta issuers of the public-good config', () => {
  const text = readFileSync(
    join(resolve(__dirname, '../../../..'), 'test', 'fixtures', 'fulcio-public-good-config.yaml'),
    'utf8',
  );
  const patterns = [...parseIdentityConfig(text).metaIssuers.keys()];
  const matching = (url: string) => patterns.filter((p) => metaIssuerPattern(p).test(url));

  it.each([
    [
      'https://container.googleapis.com/v1/projects/p/locations/l/clusters/c',
      'https://container.googleapis.com/v1/projects/*/locations/*/clusters/*',
    ],
    ['https://oidc.circleci.com/org/0f9c3a1e-1111', 'https://oidc.circleci.com/org/*'],
    ['https://oidc.prod-aks.azure.com/t-1/', 'https://oidc.prod-aks.azure.com/*/'],
    ['https://oidc.prod-aks.azure.com/t-1/g-2', 'https://oidc.prod-aks.azure.com/*/*'],
  ])('%s matches only %s', (url, pattern) => {
    expect(matching(url)).toEqual([pattern]);
  });

  it.each([
    'https://container.googleapis.com/v1/projects/p/locations/l/clusters/c/extra',
    'https://container.googleapis.com/v1/projects/p.evil/locations/l/clusters/c',
    'https://oidc.circleci.com/org/a/b',
    'https://oidc.circleci.com/org/',
    'https://token.actions.githubusercontent.com/a.b',
    'https://token.actions.githubusercontent.com/',
    'https://eastus.oic.prod-aks.azure.com/t/g/x/',
    'http://localhost?issuer=https://container.googleapis.com/v1/projects/p/locations/l/clusters/c',
    'http://localhost/?x=https://token.actions.githubusercontent.com/e',
  ])('%s matches no pattern', (url) => {
    expect(matching(url)).toEqual([]);
  });
});

describe('IssuerPool meta-issuer verifier cache', () => {
  it('keeps at most 100 meta verifiers, evicting the least recently used', async () => {
    const tenants = await startDevIssuer({ tenants: true });
    try {
      const pattern = `${tenants.url}/tenants/*`;
      const { pool } = poolFor(
        identityConfig([], [[pattern, { ...tenants.issuerConfig, issuerUrl: pattern }]]),
      );
      const login = async (tenant: string) => {
        const iss = `${tenants.url}/tenants/${tenant}`;
        const token = await tenants.mint(
          { exp: T + 300, ...emailClaims() },
          { omitExp: true, issuer: iss },
        );
        return pool.authenticate(token);
      };
      for (let i = 0; i <= 100; i++) await login(`t${i}`);
      expect(tenants.requests.discovery).toBe(101);
      // t0 was the least recently used: evicted when t100 came, so it is discovered again.
      await login('t0');
      expect(tenants.requests.discovery).toBe(102);
      // t100 is still cached.
      await login('t100');
      expect(tenants.requests.discovery).toBe(102);
    } finally {
      await tenants.close();
    }
  });
});
