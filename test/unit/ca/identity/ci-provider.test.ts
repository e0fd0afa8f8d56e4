import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JWTPayload } from 'jose';
import type { CertificateIdentity } from '../../../../services/ca/certificate-identity/certificate-identity';
import { CaError } from '../../../../services/ca/common/errors';
import {
  type CiIssuerMetadata,
  type IdentityConfig,
  type OidcIssuerConfig,
} from '../../../../services/ca/config/identity-config';
import { parseIdentityConfig } from '../../../../services/ca/identity/identity-config';
import { ciProviderIssuerType } from '../../../../services/ca/identity/types/ci-provider/ci-provider';
import { ClaimError } from '../../../../services/ca/identity/types/types';

/**
 * The ci-provider type against Fulcio's public-good CIIssuerMetadata (the fixture is
 * Fulcio's config/identity/config.yaml, unchanged) and Fulcio's own test cases: the
 * GitHub Actions vector of fulcio-reference §9 value for value, then every other provider
 * of the public config with the values its templates give.
 */

const fixture = readFileSync(
  join(resolve(__dirname, '../../../..'), 'test', 'fixtures', 'fulcio-public-good-config.yaml'),
  'utf8',
);
const PUBLIC = parseIdentityConfig(fixture);

function issuer(url: string, provider: string): OidcIssuerConfig {
  return {
    issuerUrl: url,
    clientId: 'sigstore',
    type: 'ci-provider',
    ciProvider: provider,
    issuerClaim: '',
    subjectDomain: '',
    spiffeTrustDomain: '',
    challengeClaim: '',
    description: '',
    contact: '',
    environment: '',
    caCert: '',
    skipEmailVerification: false,
  };
}

function withMetadata(provider: string, metadata: CiIssuerMetadata): IdentityConfig {
  return {
    oidcIssuers: new Map(),
    metaIssuers: new Map(),
    ciIssuerMetadata: new Map([[provider, metadata]]),
  };
}

function identityOf(
  provider: string,
  iss: string,
  claims: JWTPayload,
  config: IdentityConfig = PUBLIC,
): { name: string; identity: CertificateIdentity } {
  const p = ciProviderIssuerType.principal({ iss, ...claims }, issuer(iss, provider), config);
  return { name: p.name, identity: p.certificateIdentity() };
}

function table(identity: CertificateIdentity): [string, string, string][] {
  return identity.extensions.map((e) => [
    e.oid.replace('1.3.6.1.4.1.57264.1.', '.'),
    e.value,
    e.encoding,
  ]);
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

const GITHUB_ISS = 'https://token.actions.githubusercontent.com';
/** fulcio-reference §9, TestAPIWithCiProvider. */
const GITHUB_VECTOR = {
  sub: 'repo:sigstore/fulcio:ref:refs/heads/main',
  job_workflow_ref: 'job/workflow/ref',
  sha: 'sha',
  event_name: 'trigger',
  repository: 'sigstore/fulcio',
  workflow: 'workflow',
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
  environment: 'production',
};

const GITHUB_EXPECTED: [string, string, string][] = [
  ['.1', GITHUB_ISS, 'raw'],
  ['.2', 'trigger', 'raw'],
  ['.3', 'sha', 'raw'],
  ['.4', 'workflow', 'raw'],
  ['.5', 'sigstore/fulcio', 'raw'],
  ['.6', 'refs/heads/main', 'raw'],
  ['.8', GITHUB_ISS, 'utf8'],
  ['.9', 'https://github.com/job/workflow/ref', 'utf8'],
  ['.10', 'example-sha', 'utf8'],
  ['.11', 'cloud-hosted', 'utf8'],
  ['.12', 'https://github.com/sigstore/fulcio', 'utf8'],
  ['.13', 'sha', 'utf8'],
  ['.14', 'refs/heads/main', 'utf8'],
  ['.15', '12345', 'utf8'],
  ['.16', 'https://github.com/username', 'utf8'],
  ['.17', '345', 'utf8'],
  ['.18', 'https://github.com/sigstore/other/.github/workflows/foo.yaml@refs/heads/main', 'utf8'],
  ['.19', 'example-sha-other', 'utf8'],
  ['.20', 'trigger', 'utf8'],
  ['.21', 'https://github.com/sigstore/fulcio/actions/runs/42/attempts/1', 'utf8'],
  ['.22', 'public', 'utf8'],
  ['.23', 'production', 'utf8'],
  ['.24', 'repo:sigstore/fulcio:ref:refs/heads/main', 'utf8'],
];

describe('ci-provider: the GitHub Actions vector (fulcio-reference §9)', () => {
  it('gives the SAN and every extension value for value, with the public-good metadata', () => {
    const { name, identity } = identityOf('github-workflow', GITHUB_ISS, GITHUB_VECTOR);
    expect(name).toBe(GITHUB_VECTOR.sub);
    expect(identity.san).toEqual({ type: 'uri', value: 'https://github.com/job/workflow/ref' });
    expect(table(identity)).toEqual(GITHUB_EXPECTED);
  });

  it("gives the same with the metadata of Fulcio's test (whose Issuer template is ignored)", () => {
    const metadata: CiIssuerMetadata = {
      ...PUBLIC.ciIssuerMetadata.get('github-workflow')!,
      extensionTemplates: {
        ...PUBLIC.ciIssuerMetadata.get('github-workflow')!.extensionTemplates,
        Issuer: 'issuer',
        Subject: 'repository',
      },
      subjectAlternativeNameTemplate: '{{.url}}/{{.job_workflow_ref}}',
    };
    const { identity } = identityOf(
      'github-workflow',
      GITHUB_ISS,
      GITHUB_VECTOR,
      withMetadata('github-workflow', metadata),
    );
    expect(table(identity)).toEqual(GITHUB_EXPECTED);
  });

  it('leaves 1.23 out when the token has no environment (its default is "")', () => {
    const { environment: _environment, ...claims } = GITHUB_VECTOR;
    const { identity } = identityOf('github-workflow', GITHUB_ISS, claims);
    expect(table(identity).map(([oid]) => oid)).not.toContain('.23');
  });

  it('prints numeric claims as Fulcio does (run_id 42, run_attempt 1.0)', () => {
    const { identity } = identityOf('github-workflow', GITHUB_ISS, {
      ...GITHUB_VECTOR,
      run_id: 42,
      run_attempt: 1.0,
    });
    expect(table(identity)).toContainEqual([
      '.21',
      'https://github.com/sigstore/fulcio/actions/runs/42/attempts/1',
      'utf8',
    ]);
  });

  it('refuses, with the message Fulcio sends, a token without a claim a bare key names', () => {
    const { event_name: _e, ...claims } = GITHUB_VECTOR;
    const p = ciProviderIssuerType.principal(
      { iss: GITHUB_ISS, ...claims },
      issuer(GITHUB_ISS, 'github-workflow'),
      PUBLIC,
    );
    expect(embedError(() => p.certificateIdentity())).toBe(
      [
        'value <event_name> not present in either claims or defaults. {',
        '\t"ExtensionName": "GithubWorkflowTrigger",',
        `\t"Issuer": "${GITHUB_ISS}"`,
        '}',
      ].join('\n'),
    );
  });

  it('refuses, with Go template’s message, a token without a claim a template names', () => {
    const { job_workflow_ref: _j, ...claims } = GITHUB_VECTOR;
    const p = ciProviderIssuerType.principal(
      { iss: GITHUB_ISS, ...claims },
      issuer(GITHUB_ISS, 'github-workflow'),
      PUBLIC,
    );
    expect(embedError(() => p.certificateIdentity())).toBe(
      'template: :1:14: executing "" at <.job_workflow_ref>: map has no entry for key "job_workflow_ref"',
    );
  });

  it('authenticates (the proof signs sub) even when a template will fail later', () => {
    const p = ciProviderIssuerType.principal(
      { iss: GITHUB_ISS, sub: 'x' },
      issuer(GITHUB_ISS, 'github-workflow'),
      PUBLIC,
    );
    expect(p.name).toBe('x');
  });
});

describe('ci-provider: template rules (Fulcio principal_test cases)', () => {
  const ISS = 'https://ci.example.com';
  function metadata(
    san: string,
    extensionTemplates: CiIssuerMetadata['extensionTemplates'] = {},
    defaults: Record<string, string> = {},
  ): IdentityConfig {
    return withMetadata('ci', {
      defaultTemplateValues: defaults,
      extensionTemplates,
      subjectAlternativeNameTemplate: san,
    });
  }
  const render = (config: IdentityConfig, claims: JWTPayload) =>
    identityOf('ci', ISS, { sub: 's', ...claims }, config).identity;

  it('does not HTML-escape', () => {
    const identity = render(
      metadata('https://x.example/{{ .sub }}', { BuildTrigger: '{{ .html_claim }}' }),
      {
        html_claim: '<alert()/>',
      },
    );
    expect(table(identity)).toContainEqual(['.20', '<alert()/>', 'utf8']);
  });

  it('uses a default when the claim is absent, and the claim over the default', () => {
    const config = metadata(
      'https://x.example/{{ .sub }}',
      { BuildTrigger: 'default_foo', RunnerEnvironment: 'claim_foo' },
      { default_foo: 'default_bar', claim_foo: 'default' },
    );
    const identity = render(config, { claim_foo: 'bar' });
    expect(table(identity)).toContainEqual(['.11', 'bar', 'utf8']);
    expect(table(identity)).toContainEqual(['.20', 'default_bar', 'utf8']);
  });

  it('leaves an extension out when its default is "" and the token has no such claim', () => {
    const identity = render(
      metadata(
        'https://x.example/{{ .sub }}',
        { BuildTrigger: 'empty_value' },
        { empty_value: '' },
      ),
      {},
    );
    expect(table(identity).map(([oid]) => oid)).toEqual(['.1', '.8', '.24']);
  });

  it('skips blank templates and never templates Issuer or Subject', () => {
    const identity = render(
      metadata('https://x.example/{{ .sub }}', {
        BuildTrigger: '  ',
        Issuer: 'other',
        Subject: 'other',
      }),
      { other: 'nope' },
    );
    expect(table(identity)).toEqual([
      ['.1', ISS, 'raw'],
      ['.8', ISS, 'utf8'],
      ['.24', 's', 'utf8'],
    ]);
  });

  it('refuses an empty SAN template', () => {
    expect(embedError(() => render(metadata(' '), {}))).toBe(
      `SubjectAlternativeNameTemplate should not be empty. Issuer: ${ISS}`,
    );
  });

  it("refuses a SAN that Go's url.Parse refuses, with Go's message", () => {
    expect(embedError(() => render(metadata('{{ .u }}'), { u: 'https://x.example/%zz' }))).toBe(
      'parse "https://x.example/%zz": invalid URL escape "%zz"',
    );
  });

  it('writes the SAN as url.Parse(x).String() prints it', () => {
    expect(render(metadata('{{ .u }}'), { u: 'https://x.example/a b' }).san.value).toBe(
      'https://x.example/a%20b',
    );
  });

  it('refuses a provider with no CIIssuerMetadata when the token arrives', () => {
    expect(() =>
      ciProviderIssuerType.principal({ iss: ISS, sub: 's' }, issuer(ISS, 'nope'), PUBLIC),
    ).toThrow(ClaimError);
  });
});

describe('ci-provider: the other providers of the public-good config', () => {
  it('gitlab-pipeline', () => {
    const iss = 'https://gitlab.com';
    const sub = 'project_path:cpanato/testing-cosign:ref_type:branch:ref:main';
    const config = 'https://gitlab.com/cpanato/testing-cosign//.gitlab-ci.yml@refs/heads/main';
    const { name, identity } = identityOf('gitlab-pipeline', iss, {
      sub,
      project_path: 'cpanato/testing-cosign',
      project_id: 42,
      pipeline_source: 'push',
      pipeline_id: '757451528',
      ci_config_ref_uri: 'gitlab.com/cpanato/testing-cosign//.gitlab-ci.yml@refs/heads/main',
      ci_config_sha: 'ci-sha',
      namespace_path: 'cpanato',
      namespace_id: '1730270',
      job_id: '3659681386',
      ref: 'main',
      ref_type: 'branch',
      sha: 'abc',
      runner_environment: 'gitlab-hosted',
      runner_id: 1,
      project_visibility: 'public',
    });
    expect(name).toBe(sub);
    expect(identity.san).toEqual({ type: 'uri', value: config });
    expect(table(identity)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', config, 'utf8'],
      ['.10', 'ci-sha', 'utf8'],
      ['.11', 'gitlab-hosted', 'utf8'],
      ['.12', 'https://gitlab.com/cpanato/testing-cosign', 'utf8'],
      ['.13', 'abc', 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.15', '42', 'utf8'],
      ['.16', 'https://gitlab.com/cpanato', 'utf8'],
      ['.17', '1730270', 'utf8'],
      ['.18', config, 'utf8'],
      ['.19', 'ci-sha', 'utf8'],
      ['.20', 'push', 'utf8'],
      ['.21', 'https://gitlab.com/cpanato/testing-cosign/-/jobs/3659681386', 'utf8'],
      ['.22', 'public', 'utf8'],
      ['.24', sub, 'utf8'],
    ]);
  });

  it('buildkite-job', () => {
    const iss = 'https://agent.buildkite.com';
    const sub = 'organization:acme:pipeline:app:ref:refs/heads/main:commit:abc:step:build';
    const { identity } = identityOf('buildkite-job', iss, {
      sub,
      organization_slug: 'acme',
      pipeline_slug: 'app',
      build_number: 42,
      job_id: '0190-job',
      runner_environment: 'buildkite-hosted',
      build_commit: 'abc',
      build_source: 'webhook',
    });
    expect(identity.san).toEqual({ type: 'uri', value: 'https://buildkite.com/acme/app' });
    expect(table(identity)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.11', 'buildkite-hosted', 'utf8'],
      ['.13', 'abc', 'utf8'],
      ['.20', 'webhook', 'utf8'],
      ['.21', 'https://buildkite.com/acme/app/builds/42#0190-job', 'utf8'],
      ['.24', sub, 'utf8'],
    ]);
  });

  it('codefresh-workflow', () => {
    const iss = 'https://oidc.codefresh.io';
    const sub = 'account:628a:pipeline:65e6';
    const { identity } = identityOf('codefresh-workflow', iss, {
      sub,
      account_id: '628a',
      account_name: 'codefresh-account',
      pipeline_id: '65e6',
      pipeline_name: 'oidc-test/get-token',
      workflow_id: '65f0',
    });
    expect(identity.san).toEqual({
      type: 'uri',
      value: 'https://g.codefresh.io/codefresh-account/oidc-test/get-token:628a/65e6',
    });
    expect(table(identity)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', 'https://g.codefresh.io/build/65f0', 'utf8'],
      ['.18', 'https://g.codefresh.io/api/pipelines/65e6', 'utf8'],
      ['.21', 'https://g.codefresh.io/build/65f0', 'utf8'],
      ['.24', sub, 'utf8'],
    ]);
  });

  const circleClaims = {
    sub: 'org/o1/project/p1/user/u1',
    'oidc.circleci.com/project-id': 'p1',
    'oidc.circleci.com/pipeline-definition-id': 'pd1',
    'oidc.circleci.com/pipeline-id': 'pl1',
    'oidc.circleci.com/workflow-id': 'w1',
    'oidc.circleci.com/job-id': 'j1',
    'oidc.circleci.com/ssh-rerun': false,
    'oidc.circleci.com/vcs-ref': 'refs/heads/main',
    'oidc.circleci.com/vcs-origin': 'github.com/acme/app',
  };

  it('circleci-job (claim names with dots and slashes, a boolean claim)', () => {
    const iss = 'https://oidc.circleci.com/org/o1';
    const { identity } = identityOf('circleci-job', iss, circleClaims);
    const signer = 'https://circleci.com/api/v2/projects/p1/pipeline-definitions/pd1';
    expect(identity.san).toEqual({ type: 'uri', value: signer });
    expect(table(identity)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', signer, 'utf8'],
      // The public template prints two quote characters when ssh-rerun is not "true".
      ['.11', '""', 'utf8'],
      ['.12', 'github.com/acme/app', 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.18', 'https://circleci.com/api/v2/pipeline/pl1/config', 'utf8'],
      ['.21', 'https://app.circleci.com//workflow/w1/job/j1', 'utf8'],
      ['.24', circleClaims.sub, 'utf8'],
    ]);
  });

  it('circleci-job with ssh-rerun true', () => {
    const { identity } = identityOf('circleci-job', 'https://oidc.circleci.com/org/o1', {
      ...circleClaims,
      'oidc.circleci.com/ssh-rerun': true,
    });
    expect(table(identity)).toContainEqual(['.11', 'ssh-rerun', 'utf8']);
  });

  it('buddy-pipeline (a base_url claim beats the default)', () => {
    const iss = 'https://eu-oidc.buddyusercontent.com';
    const sub = 'workspace:ws:project:proj:pipeline:7';
    const { identity } = identityOf('buddy-pipeline', iss, {
      sub,
      base_url: 'https://eu.app.buddy.works',
      workspace_domain: 'ws',
      project_name: 'proj',
      pipeline_id: 7,
      execution_id: 99,
      triggered_on: 'CLICK',
      runner_environment: 'platform-hosted',
      revision: 'abc',
      ref: 'refs/heads/main',
    });
    const signer = 'https://eu.app.buddy.works/ws/proj/pipelines/pipeline/7';
    expect(identity.san).toEqual({ type: 'uri', value: signer });
    expect(table(identity)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', signer, 'utf8'],
      ['.11', 'platform-hosted', 'utf8'],
      ['.12', 'https://eu.app.buddy.works/ws/proj', 'utf8'],
      ['.13', 'abc', 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.16', 'https://eu.app.buddy.works/ws', 'utf8'],
      ['.20', 'CLICK', 'utf8'],
      ['.21', `${signer}/execution/99`, 'utf8'],
      ['.24', sub, 'utf8'],
    ]);
  });
});
