import type { JWTPayload } from 'jose';
import type { CertificateIdentity } from '../../../../services/ca/certificate-identity/certificate-identity';
import { CaError } from '../../../../services/ca/common/errors';
import type { OidcIssuerConfig } from '../../../../services/ca/config/identity-config';
import { ISSUER_TYPE_HANDLERS } from '../../../../services/ca/identity/types/registry';
import { ClaimError } from '../../../../services/ca/identity/types/types';

/**
 * Principal construction per issuer type, table by table, with Fulcio's own principal
 * tests as the checklist (pkg/identity/<type>/principal_test.go): each required claim
 * missing, wrong trust domain, wrong host, `!` in a username, an email where a URI is
 * expected, and the SAN, name and extensions each type produces.
 */

const ISS = 'https://issuer.example.com';

function issuerConfig(type: string, changes: Partial<OidcIssuerConfig> = {}): OidcIssuerConfig {
  return {
    issuerUrl: ISS,
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

function principal(type: string, claims: JWTPayload, changes: Partial<OidcIssuerConfig> = {}) {
  const handler = ISSUER_TYPE_HANDLERS.get(type);
  if (!handler) throw new Error(`no handler for ${type}`);
  return handler.principal({ iss: ISS, ...claims }, issuerConfig(type, changes));
}

/** The extensions as OID → value, in certificate order. */
function extensions(identity: CertificateIdentity): [string, string, string][] {
  return identity.extensions.map((e) => [
    e.oid.replace('1.3.6.1.4.1.57264.1.', '.'),
    e.value,
    e.encoding,
  ]);
}

function claimError(attempt: () => unknown): string {
  try {
    attempt();
  } catch (err) {
    expect(err).toBeInstanceOf(ClaimError);
    return (err as Error).message;
  }
  throw new Error('expected a ClaimError');
}

function embedError(attempt: () => unknown): string {
  try {
    attempt();
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    expect((err as CaError).code).toBe('identity_validation');
    return (err as CaError).clientMessage;
  }
  throw new Error('expected an identity_validation CaError');
}

describe('every Fulcio issuer type has a handler', () => {
  it.each([
    'email',
    'username',
    'uri',
    'spiffe',
    'kubernetes',
    'ci-provider',
    'github-workflow',
    'gitlab-pipeline',
    'buildkite-job',
    'codefresh-workflow',
    'chainguard-identity',
  ])('%s', (type) => {
    expect(ISSUER_TYPE_HANDLERS.get(type)?.type).toBe(type);
  });
});

describe('username', () => {
  const domain = { subjectDomain: 'example.com' };

  it('puts sub!SubjectDomain in an otherName SAN and signs sub', () => {
    const p = principal('username', { sub: 'foo' }, domain);
    expect(p.name).toBe('foo');
    expect(p.subject).toBe('foo');
    const identity = p.certificateIdentity();
    expect(identity.san).toEqual({ type: 'otherName', value: 'foo!example.com' });
    expect(extensions(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', 'foo', 'utf8'],
    ]);
  });

  it.each([
    ['a ! in the name', 'foo!bar', 'username cannot contain ! character'],
    ['an email', 'foo@example.com', 'uri subject should not be an email address'],
  ])('refuses %s', (_what, sub, message) => {
    expect(claimError(() => principal('username', { sub }, domain))).toBe(message);
  });
});

describe('uri', () => {
  const domain = { subjectDomain: 'https://example.com' };

  it('uses sub as the URI SAN and the name', () => {
    const p = principal('uri', { sub: 'https://example.com/users/1' }, domain);
    expect(p.name).toBe('https://example.com/users/1');
    const identity = p.certificateIdentity();
    expect(identity.san).toEqual({ type: 'uri', value: 'https://example.com/users/1' });
    expect(extensions(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', 'https://example.com/users/1', 'utf8'],
    ]);
  });

  it.each([
    ['an email subject', 'user@example.com', 'uri subject should not be an email address'],
    [
      'another host',
      'https://other.com/users/1',
      'subject hostname (other.com) must match expected domain (example.com)',
    ],
    [
      'another scheme',
      'http://example.com/users/1',
      'subject URI scheme (http) must match expected domain URI scheme (https)',
    ],
    [
      'a host in other letter case (Go compares hosts as written)',
      'https://Example.com/users/1',
      'subject hostname (Example.com) must match expected domain (example.com)',
    ],
    ['an invalid URI', 'https://example.com/%zz', 'invalid URL escape "%zz"'],
  ])('refuses %s', (_what, sub, message) => {
    expect(claimError(() => principal('uri', { sub }, domain))).toContain(message);
  });

  it('writes the SAN as Go prints the URL (a space is escaped)', () => {
    const p = principal('uri', { sub: 'https://example.com/a b' }, domain);
    expect(p.certificateIdentity().san.value).toBe('https://example.com/a%20b');
    expect(p.name).toBe('https://example.com/a b');
  });
});

describe('spiffe', () => {
  const td = { spiffeTrustDomain: 'foo.com' };

  it('uses the SPIFFE ID as the URI SAN and the name', () => {
    const p = principal('spiffe', { sub: 'spiffe://foo.com/bar' }, td);
    expect(p.name).toBe('spiffe://foo.com/bar');
    expect(p.certificateIdentity().san).toEqual({ type: 'uri', value: 'spiffe://foo.com/bar' });
    expect(extensions(p.certificateIdentity())).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', 'spiffe://foo.com/bar', 'utf8'],
    ]);
  });

  it.each([
    ['the wrong trust domain', 'spiffe://baz.com/bar', "doesn't match configured trust domain"],
    ['a sub without the spiffe scheme', 'https://foo.com/bar', 'invalid spiffe ID'],
    ['an upper-case trust domain', 'spiffe://Foo.com/bar', 'invalid spiffe ID'],
    ['a trailing slash', 'spiffe://foo.com/bar/', 'invalid spiffe ID'],
    ['a dot segment', 'spiffe://foo.com/./bar', 'invalid spiffe ID'],
    ['an empty segment', 'spiffe://foo.com//bar', 'invalid spiffe ID'],
    ['a percent-encoded path', 'spiffe://foo.com/b%20r', 'invalid spiffe ID'],
  ])('refuses %s', (_what, sub, message) => {
    expect(claimError(() => principal('spiffe', { sub }, td))).toContain(message);
  });
});

describe('kubernetes', () => {
  it('builds the SAN from the namespace and service account, and signs sub', () => {
    const p = principal('kubernetes', {
      sub: 'system:serviceaccount:default:builder',
      'kubernetes.io': {
        namespace: 'default',
        pod: { name: 'p', uid: 'u1' },
        serviceaccount: { name: 'builder', uid: 'u2' },
      },
    });
    expect(p.name).toBe('system:serviceaccount:default:builder');
    expect(p.certificateIdentity().san).toEqual({
      type: 'uri',
      value: 'https://kubernetes.io/namespaces/default/serviceaccounts/builder',
    });
    expect(extensions(p.certificateIdentity())).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', 'system:serviceaccount:default:builder', 'utf8'],
    ]);
  });

  it('does not check the values, as Fulcio does not (empty ones make an empty path)', () => {
    const p = principal('kubernetes', { sub: 'x' });
    expect(p.certificateIdentity().san.value).toBe(
      'https://kubernetes.io/namespaces//serviceaccounts/',
    );
  });

  it.each([
    ['kubernetes.io is not an object', { 'kubernetes.io': 'default' }],
    ['the namespace is not a string', { 'kubernetes.io': { namespace: 1 } }],
    ['the pod uid is not a string', { 'kubernetes.io': { pod: { uid: 7 } } }],
  ])('refuses a token where %s (Go cannot decode it)', (_what, claims) => {
    expect(claimError(() => principal('kubernetes', { sub: 'x', ...claims }))).toContain(
      'cannot unmarshal',
    );
  });
});

const GITHUB_CLAIMS = {
  sub: 'repo:sigstore/fulcio:ref:refs/heads/main',
  job_workflow_ref: 'sigstore/fulcio/.github/workflows/foo.yaml@refs/heads/main',
  sha: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  event_name: 'push',
  repository: 'sigstore/fulcio',
  workflow: 'foo',
  ref: 'refs/heads/main',
  job_workflow_sha: 'example-sha',
  runner_environment: 'cloud-hosted',
  repository_id: '12345',
  repository_owner: 'username',
  repository_owner_id: '345',
  repository_visibility: 'public',
  workflow_ref: 'sigstore/other/.github/workflows/foo.yaml@refs/heads/main',
  workflow_sha: 'example-sha-other',
  run_id: '42',
  run_attempt: '1',
};

describe('github-workflow (deprecated type)', () => {
  it('fills the SAN and every GitHub extension (1.23 excepted) and signs sub', () => {
    const p = principal('github-workflow', GITHUB_CLAIMS);
    expect(p.name).toBe(GITHUB_CLAIMS.sub);
    const identity = p.certificateIdentity();
    const signer = 'https://github.com/sigstore/fulcio/.github/workflows/foo.yaml@refs/heads/main';
    expect(identity.san).toEqual({ type: 'uri', value: signer });
    expect(extensions(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.2', 'push', 'raw'],
      ['.3', GITHUB_CLAIMS.sha, 'raw'],
      ['.4', 'foo', 'raw'],
      ['.5', 'sigstore/fulcio', 'raw'],
      ['.6', 'refs/heads/main', 'raw'],
      ['.8', ISS, 'utf8'],
      ['.9', signer, 'utf8'],
      ['.10', 'example-sha', 'utf8'],
      ['.11', 'cloud-hosted', 'utf8'],
      ['.12', 'https://github.com/sigstore/fulcio', 'utf8'],
      ['.13', GITHUB_CLAIMS.sha, 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.15', '12345', 'utf8'],
      ['.16', 'https://github.com/username', 'utf8'],
      ['.17', '345', 'utf8'],
      [
        '.18',
        'https://github.com/sigstore/other/.github/workflows/foo.yaml@refs/heads/main',
        'utf8',
      ],
      ['.19', 'example-sha-other', 'utf8'],
      ['.20', 'push', 'utf8'],
      ['.21', 'https://github.com/sigstore/fulcio/actions/runs/42/attempts/1', 'utf8'],
      ['.22', 'public', 'utf8'],
      ['.24', GITHUB_CLAIMS.sub, 'utf8'],
    ]);
  });

  it.each(Object.keys(GITHUB_CLAIMS).filter((k) => k !== 'sub'))(
    'refuses a token without %s',
    (missing) => {
      const claims: Record<string, unknown> = { ...GITHUB_CLAIMS };
      delete claims[missing];
      expect(claimError(() => principal('github-workflow', claims))).toBe(
        `missing ${missing} claim in ID token`,
      );
    },
  );

  it('refuses a number where Go expects a string (run_id: 42)', () => {
    expect(
      claimError(() => principal('github-workflow', { ...GITHUB_CLAIMS, run_id: 42 })),
    ).toContain('cannot unmarshal number 42 into Go struct field .run_id of type string');
  });

  it('reads claim names case-insensitively, as Go decodes into a struct', () => {
    const { sha, ...rest } = GITHUB_CLAIMS;
    const p = principal('github-workflow', { ...rest, SHA: sha });
    expect(extensions(p.certificateIdentity())).toContainEqual(['.3', sha, 'raw']);
  });
});

const GITLAB_CLAIMS = {
  sub: 'project_path:cpanato/testing-cosign:ref_type:branch:ref:main',
  project_path: 'cpanato/testing-cosign',
  project_id: '42',
  pipeline_source: 'push',
  pipeline_id: '757451528',
  ci_config_ref_uri: 'gitlab.com/cpanato/testing-cosign//.gitlab-ci.yml@refs/heads/main',
  ci_config_sha: 'ci-sha',
  namespace_path: 'cpanato',
  namespace_id: '1730270',
  job_id: '3659681386',
  ref: 'main',
  ref_type: 'branch',
  sha: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  runner_environment: 'gitlab-hosted',
  runner_id: 1,
  project_visibility: 'public',
};

describe('gitlab-pipeline (deprecated type)', () => {
  const config = 'https://gitlab.com/cpanato/testing-cosign//.gitlab-ci.yml@refs/heads/main';

  it('uses ci_config_ref_uri as https for the SAN and fills the GitLab extensions', () => {
    const p = principal('gitlab-pipeline', GITLAB_CLAIMS);
    expect(p.name).toBe(GITLAB_CLAIMS.sub);
    const identity = p.certificateIdentity();
    expect(identity.san).toEqual({ type: 'uri', value: config });
    expect(extensions(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.9', config, 'utf8'],
      ['.10', 'ci-sha', 'utf8'],
      ['.11', 'gitlab-hosted', 'utf8'],
      ['.12', 'https://gitlab.com/cpanato/testing-cosign', 'utf8'],
      ['.13', GITLAB_CLAIMS.sha, 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.15', '42', 'utf8'],
      ['.16', 'https://gitlab.com/cpanato', 'utf8'],
      ['.17', '1730270', 'utf8'],
      ['.18', config, 'utf8'],
      ['.19', 'ci-sha', 'utf8'],
      ['.20', 'push', 'utf8'],
      ['.21', 'https://gitlab.com/cpanato/testing-cosign/-/jobs/3659681386', 'utf8'],
      ['.22', 'public', 'utf8'],
      ['.24', GITLAB_CLAIMS.sub, 'utf8'],
    ]);
  });

  it('makes a tag ref refs/tags/… and forces https on an http ci_config_ref_uri', () => {
    const p = principal('gitlab-pipeline', {
      ...GITLAB_CLAIMS,
      ref_type: 'tag',
      ref: 'v1',
      ci_config_ref_uri: 'http://gitlab.example.com/g/p//.gitlab-ci.yml@refs/tags/v1',
    });
    const identity = p.certificateIdentity();
    expect(identity.san.value).toBe('https://gitlab.example.com/g/p//.gitlab-ci.yml@refs/tags/v1');
    expect(extensions(identity)).toContainEqual(['.14', 'refs/tags/v1', 'utf8']);
  });

  it.each([
    'project_path',
    'pipeline_source',
    'pipeline_id',
    'ci_config_ref_uri',
    'job_id',
    'ref',
    'ref_type',
    'namespace_path',
    'namespace_id',
    'project_id',
    'sha',
    'runner_environment',
    'runner_id',
  ])('refuses a token without %s', (missing) => {
    const claims: Record<string, unknown> = { ...GITLAB_CLAIMS };
    delete claims[missing];
    expect(claimError(() => principal('gitlab-pipeline', claims))).toBe(
      `missing ${missing} claim in ID token`,
    );
  });

  it.each(['ci_config_sha', 'project_visibility'])(
    'accepts a token without %s and leaves its extensions out',
    (optional) => {
      const claims: Record<string, unknown> = { ...GITLAB_CLAIMS };
      delete claims[optional];
      const identity = principal('gitlab-pipeline', claims).certificateIdentity();
      const oids = extensions(identity).map(([oid]) => oid);
      if (optional === 'ci_config_sha') expect(oids).not.toContain('.10');
      else expect(oids).not.toContain('.22');
    },
  );

  it.each([
    ['a ref_type other than branch or tag', { ref_type: 'merge' }, 'unexpected ref_type: merge'],
    ['runner_id 0', { runner_id: 0 }, 'missing runner_id claim in ID token'],
    ['a string runner_id', { runner_id: '1' }, 'cannot unmarshal'],
    ['a fractional runner_id', { runner_id: 1.5 }, 'cannot unmarshal'],
  ])('refuses %s', (_what, change, message) => {
    expect(
      claimError(() => principal('gitlab-pipeline', { ...GITLAB_CLAIMS, ...change })),
    ).toContain(message);
  });
});

describe('buildkite-job (deprecated type)', () => {
  const claims = {
    sub: 'organization:acme:pipeline:app',
    organization_slug: 'acme',
    pipeline_slug: 'app',
  };

  it('builds the SAN from the organization and pipeline slugs', () => {
    const p = principal('buildkite-job', claims);
    expect(p.name).toBe(claims.sub);
    expect(p.certificateIdentity().san).toEqual({
      type: 'uri',
      value: 'https://buildkite.com/acme/app',
    });
    expect(extensions(p.certificateIdentity())).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', claims.sub, 'utf8'],
    ]);
  });

  it.each(['organization_slug', 'pipeline_slug'])('refuses a token without %s', (missing) => {
    const without: Record<string, unknown> = { ...claims };
    delete without[missing];
    expect(claimError(() => principal('buildkite-job', without))).toBe(
      `missing ${missing} claim in ID token`,
    );
  });
});

const CODEFRESH_CLAIMS = {
  sub: 'account:628a80b693a15c0f9c13ab75:pipeline:65e6d5551e5ba9d1b6c9c7f7',
  account_id: '628a80b693a15c0f9c13ab75',
  account_name: 'codefresh-account',
  pipeline_id: '65e6d5551e5ba9d1b6c9c7f7',
  pipeline_name: 'oidc-test/get-token',
  workflow_id: '65e6ebe0bfbfa1782876165e',
  scm_repo_url: 'https://github.com/codefresh-user/oidc-test',
  scm_ref: 'main',
  runner_environment: 'saas',
};

describe('codefresh-workflow (deprecated type)', () => {
  it('builds the SAN and the Codefresh extensions from the default platform URL', () => {
    const p = principal('codefresh-workflow', CODEFRESH_CLAIMS);
    expect(p.name).toBe(CODEFRESH_CLAIMS.sub);
    const identity = p.certificateIdentity();
    expect(identity.san).toEqual({
      type: 'uri',
      value:
        'https://g.codefresh.io/codefresh-account/oidc-test/get-token:628a80b693a15c0f9c13ab75/65e6d5551e5ba9d1b6c9c7f7',
    });
    const build = 'https://g.codefresh.io/build/65e6ebe0bfbfa1782876165e';
    expect(extensions(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.9', build, 'utf8'],
      ['.11', 'saas', 'utf8'],
      ['.12', 'https://github.com/codefresh-user/oidc-test', 'utf8'],
      ['.14', 'main', 'utf8'],
      ['.18', 'https://g.codefresh.io/api/pipelines/65e6d5551e5ba9d1b6c9c7f7', 'utf8'],
      ['.21', build, 'utf8'],
      ['.24', CODEFRESH_CLAIMS.sub, 'utf8'],
    ]);
  });

  it('uses the platform_url claim when the token has one', () => {
    const p = principal('codefresh-workflow', {
      ...CODEFRESH_CLAIMS,
      platform_url: 'https://codefresh.example.com',
    });
    expect(p.certificateIdentity().san.value).toMatch(
      /^https:\/\/codefresh\.example\.com\/codefresh-account\//,
    );
  });

  it.each([
    ['account_id', 'missing account_id in token'],
    ['pipeline_id', 'missing pipeline_id in token'],
    ['workflow_id', 'missing workflow_id in token'],
  ])('refuses a token without %s', (missing, message) => {
    const claims: Record<string, unknown> = { ...CODEFRESH_CLAIMS };
    delete claims[missing];
    expect(claimError(() => principal('codefresh-workflow', claims))).toBe(message);
  });
});

describe('chainguard-identity', () => {
  const base = {
    iss: 'https://issuer.enforce.dev',
    sub: 'ce4a5d2d5a44d0d6b1d5e0f5a/32fa8c2f2e2d0cfa',
  };

  it('signs the verified email when there is one; the SAN is iss joined with sub', () => {
    const p = principal('chainguard-identity', {
      ...base,
      email: 'alice@example.com',
      email_verified: true,
    });
    expect(p.name).toBe('alice@example.com');
    expect(p.certificateIdentity().san).toEqual({
      type: 'uri',
      value: 'https://issuer.enforce.dev/ce4a5d2d5a44d0d6b1d5e0f5a/32fa8c2f2e2d0cfa',
    });
    expect(extensions(p.certificateIdentity())).toEqual([
      ['.1', 'https://issuer.enforce.dev', 'raw'],
      ['.8', 'https://issuer.enforce.dev', 'utf8'],
      ['.24', base.sub, 'utf8'],
    ]);
  });

  it('signs sub when there is no email', () => {
    expect(principal('chainguard-identity', base).name).toBe(base.sub);
  });

  it.each([
    ['an unverified email', { email: 'a@example.com', email_verified: false }, 'not verified'],
    [
      'an email whose email_verified is a string',
      { email: 'a@example.com', email_verified: 'true' },
      'cannot unmarshal',
    ],
    ['no email and no sub', { sub: undefined }, 'no subject found in claims'],
    ['an act claim that is not a map of strings', { act: { sub: 1 } }, 'cannot unmarshal'],
  ])('refuses %s', (_what, change: Record<string, unknown>, message) => {
    const claims: Record<string, unknown> = { ...base, ...change };
    if ('sub' in change && change.sub === undefined) delete claims.sub;
    expect(claimError(() => principal('chainguard-identity', claims))).toContain(message);
  });
});

describe('an empty issuer fails when the certificate identity is built (every type)', () => {
  const cases: [string, JWTPayload, Partial<OidcIssuerConfig>][] = [
    ['email', { sub: 's', email: 'a@example.com', email_verified: true }, {}],
    ['username', { sub: 'foo' }, { subjectDomain: 'example.com' }],
    ['uri', { sub: 'https://example.com/u' }, { subjectDomain: 'https://example.com' }],
    ['spiffe', { sub: 'spiffe://foo.com/bar' }, { spiffeTrustDomain: 'foo.com' }],
    ['kubernetes', { sub: 's' }, {}],
    ['github-workflow', GITHUB_CLAIMS, {}],
    ['gitlab-pipeline', GITLAB_CLAIMS, {}],
    ['buildkite-job', { sub: 's', organization_slug: 'o', pipeline_slug: 'p' }, {}],
    ['codefresh-workflow', CODEFRESH_CLAIMS, {}],
  ];
  it.each(cases)('%s', (type, claims, changes) => {
    const p = principal(type, { ...claims, iss: '' }, { ...changes, issuerUrl: '' });
    expect(embedError(() => p.certificateIdentity())).toBe(
      'extensions must have a non-empty issuer url',
    );
  });
});

describe('every type refuses a non-string sub (go-oidc cannot decode it)', () => {
  it.each(['username', 'uri', 'kubernetes', 'github-workflow', 'buildkite-job'])('%s', (type) => {
    const claims: Record<string, unknown> = {
      ...GITHUB_CLAIMS,
      organization_slug: 'o',
      pipeline_slug: 'p',
      sub: 7,
    };
    expect(
      claimError(() =>
        principal(type, claims, { subjectDomain: type === 'uri' ? 'https://x.com' : 'x.com' }),
      ),
    ).toContain('cannot unmarshal');
  });
});
