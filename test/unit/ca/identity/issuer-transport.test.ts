import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWTPayload } from 'jose';
import { CaError } from '../../../../services/ca/common/errors';
import { ManualClock } from '../../../../services/common/clock';
import { silentLogger } from '../../../../services/common/logger';
import type {
  IdentityConfig,
  OidcIssuerConfig,
} from '../../../../services/ca/config/identity-config';
import { IssuerPool, type IdentityOptions } from '../../../../services/ca/identity/issuer-pool';
import { isInClusterIssuer } from '../../../../services/ca/identity/issuer-transport';
import { startDevIssuer, type DevIssuer } from '../../../../services/dev-issuer/dev-issuer';
import { loopbackLookup, makeTestTls, type TestTls } from '../../../helpers/tls';

/**
 * Issuers with an HTTP client of their own (fulcio-reference §4.3): a per-issuer CACert
 * for a private CA, and the in-cluster Kubernetes issuer, whose discovery and JWKS are
 * checked against the cluster CA file and get the pod's service-account token, on the
 * issuer's own host only. Everything is served on 127.0.0.1 over https; host names reach
 * it through a test name resolver.
 */

const T = 1_900_000_000;
const clock = new ManualClock(new Date(T * 1000));

let tls: TestTls;
let dir: string;
let caFile: string;
let tokenFile: string;
const issuers: DevIssuer[] = [];

interface Seen {
  readonly host: string;
  readonly path: string;
  readonly authorization: string | undefined;
}

async function httpsIssuer(
  publicHost: string,
  options: { jwksUri?: (url: string) => string } = {},
): Promise<{ issuer: DevIssuer; seen: Seen[] }> {
  const seen: Seen[] = [];
  const issuer = await startDevIssuer({
    tls: { key: tls.key, cert: tls.cert },
    publicHost,
    ...options,
    onRequest: (req: IncomingMessage) =>
      seen.push({
        host: req.headers.host ?? '',
        path: req.url ?? '',
        authorization: req.headers.authorization,
      }),
  });
  issuers.push(issuer);
  return { issuer, seen };
}

beforeAll(() => {
  tls = makeTestTls([
    'kubernetes.default.svc',
    'jwks.default.svc',
    'tenant-a.default.svc',
    'issuer.example.test',
  ]);
  dir = mkdtempSync(join(tmpdir(), 'mayfly-transport-'));
  caFile = join(dir, 'ca.crt');
  tokenFile = join(dir, 'token');
  writeFileSync(caFile, tls.caPem);
  writeFileSync(tokenFile, 'pod-sa-token\n');
});

afterAll(async () => {
  await Promise.all(issuers.map((i) => i.close()));
  rmSync(dir, { recursive: true, force: true });
});

function config(type: string, changes: Partial<OidcIssuerConfig> = {}): OidcIssuerConfig {
  return {
    issuerUrl: '',
    clientId: 'sigstore',
    type,
    ciProvider: '',
    issuerClaim: '',
    subjectDomain: '',
    spiffeTrustDomain: '',
    challengeClaim: '',
    description: '',
    contact: '',
    environment: '',
    caCert: '',
    skipEmailVerification: false,
    ...changes,
  };
}

function pool(
  oidc: [string, OidcIssuerConfig][],
  meta: [string, OidcIssuerConfig][] = [],
  options: Partial<IdentityOptions> = {},
): IssuerPool {
  const identity: IdentityConfig = {
    oidcIssuers: new Map(oidc.map(([url, c]) => [url, { ...c, issuerUrl: url }])),
    metaIssuers: new Map(meta),
    ciIssuerMetadata: new Map(),
  };
  return new IssuerPool(identity, {
    discoveryTimeoutMs: 5000,
    jwksCooldownMs: 0,
    discoveryRetryMs: 0,
    maxTokenBytes: 32768,
    clock,
    logger: silentLogger,
    kubernetes: { caFile, tokenFile },
    lookup: loopbackLookup,
    ...options,
  });
}

const K8S_CLAIMS: JWTPayload = {
  sub: 'system:serviceaccount:builds:builder',
  'kubernetes.io': { namespace: 'builds', serviceaccount: { name: 'builder' } },
};

function mint(issuer: DevIssuer, claims: JWTPayload, iss?: string): Promise<string> {
  return issuer.mint(
    { exp: T + 300, ...claims },
    { omitExp: true, ...(iss === undefined ? {} : { issuer: iss }) },
  );
}

async function refused(attempt: Promise<unknown>): Promise<CaError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CaError);
  return err as CaError;
}

describe('isInClusterIssuer', () => {
  it.each([
    ['https://kubernetes.default.svc', true],
    ['https://kubernetes.default.svc:6443', true],
    ['https://kubernetes.default.svc.cluster.local', true],
    ['http://kubernetes.default.svc', false],
    ['https://kubernetes.default.svc.evil.example', false],
    ['https://oidc.eks.us-west-2.amazonaws.com/id/X', false],
  ])('%s → %s', (url, want) => {
    expect(isInClusterIssuer(url)).toBe(want);
  });
});

describe('CACert', () => {
  const email = { sub: 'u1', email: 'alice@example.com', email_verified: true };

  it('verifies tokens of an https issuer whose certificate its CACert signed', async () => {
    const { issuer } = await httpsIssuer('issuer.example.test');
    const p = pool([[issuer.url, config('email', { caCert: tls.caPem })]]);
    expect((await p.authenticate(await mint(issuer, email))).name).toBe('alice@example.com');
  });

  it('refuses them without the CACert: the private CA is not trusted', async () => {
    const { issuer } = await httpsIssuer('127.0.0.1');
    const failures: string[] = [];
    const p = pool([[issuer.url, config('email')]], [], {
      onFailure: (reason) => failures.push(reason),
    });
    await refused(p.authenticate(await mint(issuer, email)));
    expect(failures).toEqual(['discovery']);
  });

  it('applies to meta issuers too (Fulcio copies CACert to the matched issuer)', async () => {
    const { issuer } = await httpsIssuer('issuer.example.test');
    const p = pool([], [['https://*.example.test:*', config('email', { caCert: tls.caPem })]]);
    expect((await p.authenticate(await mint(issuer, email))).issuer).toBe(issuer.url);
  });
});

describe('the in-cluster Kubernetes issuer', () => {
  it('uses the cluster CA file and sends the service-account token to its host', async () => {
    const { issuer, seen } = await httpsIssuer('kubernetes.default.svc');
    const p = pool([[issuer.url, config('kubernetes')]]);
    const principal = await p.authenticate(await mint(issuer, K8S_CLAIMS));
    expect(principal.certificateIdentity().san.value).toBe(
      'https://kubernetes.io/namespaces/builds/serviceaccounts/builder',
    );
    expect(seen.map((s) => s.path)).toEqual(['/.well-known/openid-configuration', '/keys']);
    for (const request of seen) expect(request.authorization).toBe('Bearer pod-sa-token');
  });

  it('does not send the token to a JWKS on another host (the request goes without it)', async () => {
    const { issuer, seen } = await httpsIssuer('kubernetes.default.svc', {
      jwksUri: (url) => `${url.replace('kubernetes.default.svc', 'jwks.default.svc')}/keys`,
    });
    const p = pool([[issuer.url, config('kubernetes')]]);
    await p.authenticate(await mint(issuer, K8S_CLAIMS));
    expect(seen).toEqual([
      expect.objectContaining({
        host: expect.stringMatching(/^kubernetes\.default\.svc:/),
        authorization: 'Bearer pod-sa-token',
      }),
      expect.objectContaining({
        host: expect.stringMatching(/^jwks\.default\.svc:/),
        authorization: undefined,
      }),
    ]);
  });

  it('never sends the token to a meta issuer, even one of type kubernetes next to it', async () => {
    const inCluster = await httpsIssuer('kubernetes.default.svc');
    const tenant = await httpsIssuer('tenant-a.default.svc');
    const port = new URL(tenant.issuer.url).port;
    const p = pool(
      [[inCluster.issuer.url, config('kubernetes')]],
      [[`https://*.default.svc:${port}`, config('kubernetes', { caCert: tls.caPem })]],
    );
    const principal = await p.authenticate(await mint(tenant.issuer, K8S_CLAIMS));
    expect(principal.issuer).toBe(tenant.issuer.url);
    expect(tenant.seen).toHaveLength(2);
    for (const request of tenant.seen) expect(request.authorization).toBeUndefined();
    expect(inCluster.seen).toEqual([]);
  });

  it('never sends it to a static issuer of another host, kubernetes type or not', async () => {
    const { issuer, seen } = await httpsIssuer('issuer.example.test');
    const p = pool([[issuer.url, config('kubernetes', { caCert: tls.caPem })]]);
    await p.authenticate(await mint(issuer, K8S_CLAIMS));
    expect(seen).toHaveLength(2);
    for (const request of seen) expect(request.authorization).toBeUndefined();
  });

  it('works without a token file (the request goes without a token)', async () => {
    const { issuer, seen } = await httpsIssuer('kubernetes.default.svc');
    const p = pool([[issuer.url, config('kubernetes')]], [], {
      kubernetes: { caFile, tokenFile: join(dir, 'missing-token') },
    });
    await p.authenticate(await mint(issuer, K8S_CLAIMS));
    for (const request of seen) expect(request.authorization).toBeUndefined();
  });

  it('refuses tokens while the cluster CA file is missing (discovery fails)', async () => {
    const { issuer, seen } = await httpsIssuer('kubernetes.default.svc');
    const failures: string[] = [];
    const p = pool([[issuer.url, config('kubernetes')]], [], {
      kubernetes: { caFile: join(dir, 'missing-ca'), tokenFile },
      onFailure: (reason) => failures.push(reason),
    });
    await refused(p.authenticate(await mint(issuer, K8S_CLAIMS)));
    expect(failures).toEqual(['discovery']);
    expect(seen).toEqual([]);
  });
});
