import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  challengeClaimWith,
  parseIdentityConfigWith,
  type IssuerTypeRules,
} from '../../../../services/ca/config/identity-config';
import { ISSUER_TYPES } from '../../../../services/ca/identity/identity-config';
import { ISSUER_TYPE_HANDLERS } from '../../../../services/ca/identity/types/registry';
import { ManualClock } from '../../../../services/common/clock';
import { certificatePem } from '../../../../services/common/encoding';
import {
  IdentityConfigError,
  type IdentityConfig,
  type OidcIssuerConfig,
} from '../../../../services/ca/config/identity-config';
import {
  challengeClaimOf,
  loadIdentityConfig,
  parseIdentityConfig,
} from '../../../../services/ca/identity/identity-config';
import { createEphemeralChain } from '../../../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../../../../services/common/signer/signer';

const repoRoot = resolve(__dirname, '../../../..');
const publicGoodPath = join(repoRoot, 'test', 'fixtures', 'fulcio-public-good-config.yaml');

/** The IdentityConfigError a parse throws (fails the test if it does not throw one). */
function problemsOf(text: string): readonly string[] {
  let caught: unknown;
  try {
    parseIdentityConfig(text);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(IdentityConfigError);
  return (caught as IdentityConfigError).problems;
}

function issuer(config: IdentityConfig, url: string): OidcIssuerConfig {
  const found = config.oidcIssuers.get(url) ?? config.metaIssuers.get(url);
  expect(found).toBeDefined();
  return found!;
}

/** One issuer entry in kebab YAML, with the given extra fields. */
function yamlIssuer(url: string, fields: Record<string, string>, section = 'oidc-issuers'): string {
  const lines = [`${section}:`, `  ${url}:`, `    client-id: sigstore`];
  for (const [key, value] of Object.entries(fields)) lines.push(`    ${key}: ${value}`);
  return `${lines.join('\n')}\n`;
}

describe('parseIdentityConfig: formats', () => {
  it("ships config/identity.yaml as the equivalent of Fulcio's public-good config", () => {
    const shipped = loadIdentityConfig(join(repoRoot, 'config', 'identity.yaml'));
    const fulcio = loadIdentityConfig(publicGoodPath);
    expect(shipped).toEqual(fulcio);
    expect(shipped.oidcIssuers.size).toBe(22);
    expect(shipped.metaIssuers.size).toBe(9);
    expect([...shipped.ciIssuerMetadata.keys()].sort()).toEqual([
      'buddy-pipeline',
      'buildkite-job',
      'circleci-job',
      'codefresh-workflow',
      'github-workflow',
      'gitlab-pipeline',
    ]);
  });

  it('loads the company example: Dex with issuer-claim, GitHub Actions, in-cluster Kubernetes', () => {
    const config = loadIdentityConfig(
      join(repoRoot, 'config', 'examples', 'company-identity.yaml'),
    );
    expect(issuer(config, 'https://dex.example.com')).toMatchObject({
      type: 'email',
      issuerClaim: '$.federated_claims.connector_id',
    });
    expect(issuer(config, 'https://keycloak.example.com/realms/engineering').type).toBe('email');
    expect(issuer(config, 'https://token.actions.githubusercontent.com')).toMatchObject({
      type: 'ci-provider',
      ciProvider: 'github-workflow',
    });
    expect(issuer(config, 'https://kubernetes.default.svc').type).toBe('kubernetes');
    expect(issuer(config, 'https://token.actions.githubusercontent.com/*').type).toBe(
      'ci-provider',
    );
    expect(config.ciIssuerMetadata.get('github-workflow')).toEqual(
      loadIdentityConfig(publicGoodPath).ciIssuerMetadata.get('github-workflow'),
    );
  });

  it("loads JSON with Fulcio's Go field names", () => {
    const config = parseIdentityConfig(
      JSON.stringify({
        OIDCIssuers: {
          'https://accounts.example.com': {
            IssuerURL: 'https://accounts.example.com',
            ClientID: 'sigstore',
            Type: 'email',
            SkipEmailVerification: true,
            Description: 'an example',
            Contact: 'ops@example.com',
            Environment: 'staging',
          },
          'https://ci.example.com': {
            IssuerURL: 'https://ci.example.com',
            ClientID: 'sigstore',
            Type: 'ci-provider',
            CIProvider: 'example-ci',
          },
        },
        MetaIssuers: {
          'https://oidc.eks.*.amazonaws.com/id/*': { ClientID: 'sigstore', Type: 'kubernetes' },
        },
        CIIssuerMetadata: {
          'example-ci': {
            DefaultTemplateValues: { url: 'https://ci.example.com' },
            ExtensionTemplates: { BuildSignerURI: '{{ .url }}/{{ .workflow }}' },
            SubjectAlternativeNameTemplate: '{{ .url }}/{{ .workflow }}',
          },
        },
      }),
    );
    expect(issuer(config, 'https://accounts.example.com')).toEqual({
      issuerUrl: 'https://accounts.example.com',
      clientId: 'sigstore',
      type: 'email',
      ciProvider: '',
      issuerClaim: '',
      subjectDomain: '',
      spiffeTrustDomain: '',
      challengeClaim: '',
      description: 'an example',
      contact: 'ops@example.com',
      environment: 'staging',
      caCert: '',
      skipEmailVerification: true,
    });
    expect(issuer(config, 'https://ci.example.com').ciProvider).toBe('example-ci');
    expect(issuer(config, 'https://oidc.eks.*.amazonaws.com/id/*').type).toBe('kubernetes');
    const meta = config.ciIssuerMetadata.get('example-ci');
    expect(meta?.defaultTemplateValues).toEqual({ url: 'https://ci.example.com' });
    expect(Object.values(meta?.extensionTemplates ?? {})).toEqual(['{{ .url }}/{{ .workflow }}']);
    expect(meta?.subjectAlternativeNameTemplate).toBe('{{ .url }}/{{ .workflow }}');
  });

  it('reads JSON field names case-insensitively, as Go does (CiProvider, issuerurl)', () => {
    const config = parseIdentityConfig(
      JSON.stringify({
        oidcissuers: {
          'https://ci.example.com': {
            issuerurl: 'https://ci.example.com',
            clientId: 'sigstore',
            TYPE: 'ci-provider',
            CiProvider: 'example-ci',
          },
        },
        ciIssuerMetadata: { 'example-ci': { subjectAlternativeNameTemplate: '{{ .sub }}' } },
      }),
    );
    expect(issuer(config, 'https://ci.example.com')).toMatchObject({
      issuerUrl: 'https://ci.example.com',
      clientId: 'sigstore',
      type: 'ci-provider',
      ciProvider: 'example-ci',
    });
    expect(config.ciIssuerMetadata.get('example-ci')?.subjectAlternativeNameTemplate).toBe(
      '{{ .sub }}',
    );
  });

  it('loads YAML with kebab-case keys', () => {
    const config = parseIdentityConfig(
      [
        'oidc-issuers:',
        '  https://login.example.com:',
        '    issuer-url: https://login.example.com',
        '    client-id: sigstore',
        '    type: email',
        '    skip-email-verification: true',
        '    issuer-claim: $.federated_claims.connector_id',
        '  https://spiffe.example.com:',
        '    issuer-url: https://spiffe.example.com',
        '    client-id: sigstore',
        '    type: spiffe',
        '    spiffe-trust-domain: example.com',
        '  https://uri.example.com:',
        '    issuer-url: https://uri.example.com',
        '    client-id: sigstore',
        '    type: uri',
        '    subject-domain: https://example.com',
        '    challenge-claim: email',
        'meta-issuers:',
        '  https://container.googleapis.com/v1/projects/*/locations/*/clusters/*:',
        '    client-id: sigstore',
        '    type: kubernetes',
        'ci-issuer-metadata:',
        '  example-ci:',
        '    default-template-values:',
        '      url: https://ci.example.com',
        '      build_number: 7',
        '    extension-templates:',
        '      build-signer-uri: "{{ .url }}/{{ .workflow }}"',
        '    subject-alternative-name-template: "{{ .url }}/{{ .workflow }}"',
      ].join('\n'),
    );
    expect(issuer(config, 'https://login.example.com')).toMatchObject({
      clientId: 'sigstore',
      type: 'email',
      skipEmailVerification: true,
      issuerClaim: '$.federated_claims.connector_id',
    });
    expect(issuer(config, 'https://spiffe.example.com').spiffeTrustDomain).toBe('example.com');
    expect(issuer(config, 'https://uri.example.com')).toMatchObject({
      subjectDomain: 'https://example.com',
      challengeClaim: 'email',
    });
    expect(
      issuer(config, 'https://container.googleapis.com/v1/projects/*/locations/*/clusters/*').type,
    ).toBe('kubernetes');
    const meta = config.ciIssuerMetadata.get('example-ci');
    expect(meta?.defaultTemplateValues).toEqual({
      url: 'https://ci.example.com',
      build_number: '7',
    });
    // Both spellings (JSON BuildSignerURI, YAML build-signer-uri) land on the Go field name.
    expect(meta?.extensionTemplates).toEqual({ BuildSignerURI: '{{ .url }}/{{ .workflow }}' });
    expect(meta?.subjectAlternativeNameTemplate).toBe('{{ .url }}/{{ .workflow }}');
  });

  it('takes the issuer URL from the map key when issuer-url is left out (meta issuers)', () => {
    const config = parseIdentityConfig(
      yamlIssuer('https://oidc.eks.*.amazonaws.com/id/*', { type: 'kubernetes' }, 'meta-issuers'),
    );
    expect(issuer(config, 'https://oidc.eks.*.amazonaws.com/id/*').issuerUrl).toBe(
      'https://oidc.eks.*.amazonaws.com/id/*',
    );
  });

  it('ignores unknown keys such as a define: block of YAML anchors, and resolves the aliases', () => {
    const config = parseIdentityConfig(
      [
        'define:',
        '  - &gitlab-type "gitlab-pipeline"',
        '  - &sigstore sigstore',
        'comment-for-humans: not a Fulcio field',
        'oidc-issuers:',
        '  https://gitlab.example.com:',
        '    issuer-url: https://gitlab.example.com',
        '    client-id: *sigstore',
        '    type: ci-provider',
        '    ci-provider: *gitlab-type',
        '    colour: blue',
        'ci-issuer-metadata:',
        '  *gitlab-type:',
        '    subject-alternative-name-template: "https://{{ .ci_config_ref_uri }}"',
      ].join('\n'),
    );
    expect(issuer(config, 'https://gitlab.example.com')).toMatchObject({
      clientId: 'sigstore',
      ciProvider: 'gitlab-pipeline',
    });
    expect([...config.ciIssuerMetadata.keys()]).toEqual(['gitlab-pipeline']);
  });

  it('reads an alias written straight before the colon of a key (*name:) as Go does', () => {
    const config = parseIdentityConfig(
      [
        'define:',
        '  - &buddy-type "buddy-pipeline"',
        'oidc-issuers:',
        '  https://oidc.example.com:',
        '    client-id: sigstore',
        '    type: ci-provider',
        '    ci-provider: *buddy-type',
        '    description: "*buddy-type: stays text"',
        'ci-issuer-metadata:',
        '  *buddy-type:',
        '    subject-alternative-name-template: |',
        '      *buddy-type: stays text',
      ].join('\n'),
    );
    expect(config.ciIssuerMetadata.get('buddy-pipeline')?.subjectAlternativeNameTemplate).toBe(
      '*buddy-type: stays text\n',
    );
    expect(issuer(config, 'https://oidc.example.com').description).toBe('*buddy-type: stays text');
  });

  it('accepts an empty file as a config with no issuers', () => {
    const config = parseIdentityConfig('');
    expect(config.oidcIssuers.size).toBe(0);
    expect(config.metaIssuers.size).toBe(0);
  });

  it('refuses text that is neither JSON nor YAML', () => {
    const problems = problemsOf('oidc-issuers: [unclosed\n  - "');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('neither JSON nor YAML');
  });

  it.each([
    ['a YAML list', '- a\n- b\n'],
    ['a JSON string', '"hello"'],
  ])('refuses %s at the top level', (_what, text) => {
    expect(problemsOf(text)).toEqual(['identity config: top level must be a mapping']);
  });

  it('refuses a field of the wrong type', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'email',
        'skip-email-verification': '[1]',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('SkipEmailVerification must be true or false');
  });

  it('names the file it could not read', () => {
    const path = join(repoRoot, 'no-such-folder', 'identity.yaml');
    expect(() => loadIdentityConfig(path)).toThrow(IdentityConfigError);
    expect(() => loadIdentityConfig(path)).toThrow(path);
  });
});

describe("parseIdentityConfig: Fulcio's public-good config", () => {
  const text = readFileSync(publicGoodPath, 'utf8');

  it('loads unchanged and validates, including types this build does not implement', () => {
    const config = parseIdentityConfig(text, publicGoodPath);
    expect(config.oidcIssuers.size).toBe(22);
    expect(config.metaIssuers.size).toBe(9);
    expect([...config.ciIssuerMetadata.keys()].sort()).toEqual([
      'buddy-pipeline',
      'buildkite-job',
      'circleci-job',
      'codefresh-workflow',
      'github-workflow',
      'gitlab-pipeline',
    ]);
    for (const entry of [...config.oidcIssuers.values(), ...config.metaIssuers.values()]) {
      expect(entry.clientId).toBe('sigstore');
    }
  });

  it('reads its issuers field by field', () => {
    const config = parseIdentityConfig(text);
    expect(issuer(config, 'https://oauth2.sigstore.dev/auth')).toMatchObject({
      type: 'email',
      issuerClaim: '$.federated_claims.connector_id',
      environment: 'production',
    });
    expect(issuer(config, 'https://dev-oidc.buddyusercontent.com')).toMatchObject({
      type: 'ci-provider',
      ciProvider: 'buddy-pipeline',
      environment: 'staging',
    });
    expect(issuer(config, 'https://token.actions.githubusercontent.com')).toMatchObject({
      type: 'ci-provider',
      ciProvider: 'github-workflow',
    });
    expect(issuer(config, 'https://issuer.enforce.dev').type).toBe('chainguard-identity');
    expect(issuer(config, 'https://oidc.eks.*.amazonaws.com/id/*').type).toBe('kubernetes');
    expect(issuer(config, 'https://oidc.circleci.com/org/*').ciProvider).toBe('circleci-job');
    const github = config.ciIssuerMetadata.get('github-workflow');
    expect(github?.subjectAlternativeNameTemplate).toBe('{{ .url }}/{{ .job_workflow_ref }}');
    expect(github?.defaultTemplateValues).toEqual({ url: 'https://github.com', environment: '' });
    expect(github?.extensionTemplates.BuildSignerURI).toBe('{{ .url }}/{{ .job_workflow_ref }}');
  });
});

describe('parseIdentityConfig: validation (fulcio-reference §4.1)', () => {
  it('allows issuer-claim only on email issuers', () => {
    const problems = problemsOf(
      yamlIssuer('https://issuer.example.com', {
        type: 'kubernetes',
        'issuer-claim': '$.federated_claims.connector_id',
      }),
    );
    expect(problems).toEqual([
      'identity config: OIDCIssuers[https://issuer.example.com]: only email issuers can use issuer claim mapping',
    ]);
  });

  it('refuses a spiffe meta issuer', () => {
    const problems = problemsOf(
      yamlIssuer(
        'https://spiffe.*.example.com',
        { type: 'spiffe', 'spiffe-trust-domain': 'example.com' },
        'meta-issuers',
      ),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('SPIFFE meta issuers not supported');
  });

  it.each([
    ['"Not A Domain!"', 'spiffe trust domain is invalid'],
    ['""', 'spiffe issuer must have SPIFFETrustDomain set'],
    ['example.com/path', 'spiffe trust domain is invalid'],
  ])('refuses a spiffe issuer with trust domain %s: %s', (domain, message) => {
    const problems = problemsOf(
      yamlIssuer('https://spiffe.example.com', { type: 'spiffe', 'spiffe-trust-domain': domain }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(message);
  });

  it('accepts a spiffe trust domain given as a SPIFFE ID, as go-spiffe does', () => {
    expect(() =>
      parseIdentityConfig(
        yamlIssuer('https://spiffe.example.com', {
          type: 'spiffe',
          'spiffe-trust-domain': 'spiffe://example.com',
        }),
      ),
    ).not.toThrow();
  });

  it('accepts a spiffe issuer with a valid trust domain', () => {
    const config = parseIdentityConfig(
      yamlIssuer('https://spiffe.example.com', {
        type: 'spiffe',
        'spiffe-trust-domain': 'prod.example-1.com',
      }),
    );
    expect(issuer(config, 'https://spiffe.example.com').spiffeTrustDomain).toBe(
      'prod.example-1.com',
    );
  });

  it('refuses a uri issuer whose subject domain has no scheme', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', { type: 'uri', 'subject-domain': 'example.com' }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('SubjectDomain for uri must contain scheme');
  });

  it('refuses a uri issuer whose issuer URL has no scheme', () => {
    const problems = problemsOf(
      yamlIssuer('accounts.example.com', {
        'issuer-url': 'accounts.example.com',
        type: 'uri',
        'subject-domain': 'https://example.com',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('issuer for uri must contain scheme');
  });

  it('refuses a uri issuer whose subject domain scheme differs from the issuer', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'uri',
        'subject-domain': 'http://example.com',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('subject (http) and issuer (https) URI schemes do not match');
  });

  it('refuses a uri issuer whose subject domain is in another domain', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'uri',
        'subject-domain': 'https://example.org',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(
      'hostname top-level and second-level domains do not match: example.org, accounts.example.com',
    );
  });

  it('accepts a uri issuer whose subject domain shares the last two labels', () => {
    const config = parseIdentityConfig(
      yamlIssuer('https://accounts.example.com', {
        type: 'uri',
        'subject-domain': 'https://builds.example.com',
      }),
    );
    expect(issuer(config, 'https://accounts.example.com').subjectDomain).toBe(
      'https://builds.example.com',
    );
  });

  it('refuses a username issuer whose subject domain has a scheme', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'username',
        'subject-domain': 'https://example.com',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('SubjectDomain for username should not contain scheme');
  });

  it('refuses a username issuer whose subject domain is in another domain', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'username',
        'subject-domain': 'example.org',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('hostname top-level and second-level domains do not match');
  });

  it('accepts a username issuer with a scheme-less subject domain in its own domain', () => {
    const config = parseIdentityConfig(
      yamlIssuer('https://accounts.example.com', {
        type: 'username',
        'subject-domain': 'example.com',
      }),
    );
    expect(issuer(config, 'https://accounts.example.com').type).toBe('username');
  });

  it("refuses an unknown type without a challenge claim: 'issuer missing challenge claim'", () => {
    const problems = problemsOf(yamlIssuer('https://issuer.example.com', { type: 'teleport' }));
    expect(problems).toEqual([
      'identity config: OIDCIssuers[https://issuer.example.com]: issuer missing challenge claim',
    ]);
  });

  it('refuses an issuer with no type at all', () => {
    const problems = problemsOf(yamlIssuer('https://issuer.example.com', {}));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('issuer missing challenge claim');
  });

  it('loads an unknown type that names its challenge claim', () => {
    const config = parseIdentityConfig(
      yamlIssuer('https://issuer.example.com', { type: 'teleport', 'challenge-claim': 'sub' }),
    );
    expect(issuer(config, 'https://issuer.example.com').type).toBe('teleport');
  });

  it('refuses a CACert that is not a PEM certificate', () => {
    const problems = problemsOf(
      yamlIssuer('https://accounts.example.com', {
        type: 'email',
        'ca-cert':
          '"-----BEGIN CERTIFICATE-----\\nbm90IGEgY2VydA==\\n-----END CERTIFICATE-----\\n"',
      }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('failed to parse CA certificate for issuer');
  });

  it('accepts a CACert that is a PEM certificate', async () => {
    const signer = await createEphemeralChain(
      generateEphemeralKey(),
      generateEphemeralKey(),
      new ManualClock(new Date('2030-01-01T00:00:00Z')),
    );
    const pem = certificatePem(signer.chain[0]!);
    const config = parseIdentityConfig(
      JSON.stringify({
        OIDCIssuers: {
          'https://accounts.example.com': { ClientID: 'sigstore', Type: 'email', CACert: pem },
        },
      }),
    );
    expect(issuer(config, 'https://accounts.example.com').caCert).toBe(pem);
  });

  it('refuses a ci-provider issuer whose provider has no CIIssuerMetadata', () => {
    const problems = problemsOf(
      yamlIssuer('https://ci.example.com', { type: 'ci-provider', 'ci-provider': 'nowhere-ci' }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('ci-provider "nowhere-ci" has no CIIssuerMetadata');
    expect(problems[0]).toContain('https://ci.example.com');
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(
      [
        'oidc-issuers:',
        '  https://a.example.com:',
        '    client-id: sigstore',
        '    type: teleport',
        '  https://b.example.com:',
        '    client-id: sigstore',
        '    type: uri',
        '    subject-domain: example.com',
        '  https://c.example.com:',
        '    client-id: sigstore',
        '    type: ci-provider',
        '    ci-provider: nowhere-ci',
        'meta-issuers:',
        '  https://*.spiffe.example.com:',
        '    client-id: sigstore',
        '    type: spiffe',
        '    spiffe-trust-domain: example.com',
      ].join('\n'),
    );
    expect(problems).toHaveLength(4);
    expect(problems.some((p) => p.includes('a.example.com') && p.includes('challenge'))).toBe(true);
    expect(problems.some((p) => p.includes('b.example.com') && p.includes('scheme'))).toBe(true);
    expect(problems.some((p) => p.includes('c.example.com') && p.includes('nowhere-ci'))).toBe(
      true,
    );
    expect(problems.some((p) => p.includes('SPIFFE meta issuers not supported'))).toBe(true);
  });

  it('prefixes each problem with the file it came from', () => {
    let caught: unknown;
    try {
      parseIdentityConfig(
        yamlIssuer('https://a.example.com', { type: 'teleport' }),
        '/etc/id.yaml',
      );
    } catch (err) {
      caught = err;
    }
    expect((caught as IdentityConfigError).problems[0]).toMatch(/^\/etc\/id\.yaml: /);
    expect((caught as Error).message).toContain('issuer missing challenge claim');
  });
});

describe('challengeClaimOf', () => {
  const base = parseIdentityConfig(yamlIssuer('https://a.example.com', { type: 'email' }));
  const entry = issuer(base, 'https://a.example.com');

  it.each([
    ['email', 'email'],
    ['kubernetes', 'sub'],
    ['spiffe', 'sub'],
    ['uri', 'sub'],
    ['username', 'sub'],
    ['ci-provider', 'sub'],
    ['github-workflow', 'sub'],
    ['chainguard-identity', 'sub'],
    ['teleport', ''],
  ])('derives the challenge claim of type %s as %j', (type, want) => {
    expect(challengeClaimOf({ ...entry, type })).toBe(want);
  });

  it('prefers a configured challenge claim', () => {
    expect(challengeClaimOf({ ...entry, type: 'email', challengeClaim: 'upn' })).toBe('upn');
    expect(challengeClaimOf({ ...entry, type: 'teleport', challengeClaim: 'sub' })).toBe('sub');
  });
});

describe('parseIdentityConfig: CIIssuerMetadata', () => {
  const template = (templates: Record<string, string>, san = '{{ .url }}') =>
    JSON.stringify({
      CIIssuerMetadata: {
        p: { ExtensionTemplates: templates, SubjectAlternativeNameTemplate: san },
      },
    });

  it('maps every Extensions field name (JSON) and YAML key to the same field', () => {
    const json = parseIdentityConfig(
      template({
        BuildSignerURI: 'a',
        SourceRepositoryVisibilityAtSigning: 'b',
        GithubWorkflowSHA: 'c',
      }),
    );
    const yaml = parseIdentityConfig(
      [
        'ci-issuer-metadata:',
        '  p:',
        '    extension-templates:',
        '      build-signer-uri: a',
        '      source-repository-visibility-at-signing: b',
        '      github-workflow-sha: c',
        '    subject-alternative-name-template: "{{ .url }}"',
      ].join('\n'),
    );
    const want = {
      BuildSignerURI: 'a',
      SourceRepositoryVisibilityAtSigning: 'b',
      GithubWorkflowSHA: 'c',
    };
    expect(json.ciIssuerMetadata.get('p')?.extensionTemplates).toEqual(want);
    expect(yaml.ciIssuerMetadata.get('p')?.extensionTemplates).toEqual(want);
  });

  it('ignores extension keys that name no field, as Go does', () => {
    const config = parseIdentityConfig(template({ NoSuchExtension: 'x', BuildTrigger: 'y' }));
    expect(config.ciIssuerMetadata.get('p')?.extensionTemplates).toEqual({ BuildTrigger: 'y' });
  });

  it.each([
    [
      'an extension template',
      template({ BuildTrigger: '{{}}' }),
      'BuildTrigger: template: :1: missing value for command',
    ],
    [
      'the SAN template',
      template({}, '{{ .url '),
      'SubjectAlternativeNameTemplate: template: :1: unclosed action',
    ],
    [
      'an unknown function',
      template({ BuildTrigger: '{{ lower .x }}' }),
      'function "lower" not defined',
    ],
  ])('refuses %s that does not parse as a Go template', (_what, text, message) => {
    const problems = problemsOf(text);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(message);
  });
});

describe('parseIdentityConfig: Fulcio rules in detail', () => {
  it('accepts a username subject domain equal to a one-label issuer host (equal hosts pass first)', () => {
    expect(() =>
      parseIdentityConfig(
        yamlIssuer('http://localhost:5556', { type: 'username', 'subject-domain': 'localhost' }),
      ),
    ).not.toThrow();
  });

  it('refuses a one-label subject domain that differs from the issuer host', () => {
    expect(
      problemsOf(
        yamlIssuer('https://accounts.example.com', { type: 'username', 'subject-domain': 'corp' }),
      )[0],
    ).toContain('URI hostname too short: corp');
  });

  it('checks meta issuers for CACert, SPIFFE and the challenge claim only, as Fulcio does', () => {
    expect(() =>
      parseIdentityConfig(
        yamlIssuer(
          'https://*.example.com',
          { type: 'uri', 'subject-domain': 'nope' },
          'meta-issuers',
        ),
      ),
    ).not.toThrow();
  });

  it.each([['$..connector_id'], ['federated_claims.connector_id'], ['$.a[?(@.b)]']])(
    'refuses an issuer-claim JSONPath it cannot evaluate: %s',
    (path) => {
      const problems = problemsOf(
        yamlIssuer('https://dex.example.com', { type: 'email', 'issuer-claim': `"${path}"` }),
      );
      expect(problems[0]).toContain('is not a JSONPath mayfly evaluates');
    },
  );
});

const BLANK: OidcIssuerConfig = {
  issuerUrl: 'https://blank.example.com',
  clientId: 'sigstore',
  type: '',
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
};

describe('issuer types come from the registry alone', () => {
  it('lists exactly the registry types and derives each challenge claim from its handler', () => {
    expect([...ISSUER_TYPES].sort()).toEqual([...ISSUER_TYPE_HANDLERS.keys()].sort());
    expect(ISSUER_TYPES).toHaveLength(11);
    for (const [type, handler] of ISSUER_TYPE_HANDLERS)
      expect(challengeClaimWith({ ...BLANK, type }, ISSUER_TYPE_HANDLERS)).toBe(
        handler.challengeClaim,
      );
  });

  it('knows a type only through the table it is given, and runs that type’s own rules', () => {
    const teleport: IssuerTypeRules = {
      type: 'teleport',
      challengeClaim: 'sub',
      validateConfig: (issuer, { isMeta }) =>
        issuer.subjectDomain ? [] : [`teleport needs a SubjectDomain (meta: ${isMeta})`],
    };
    const types = new Map([[teleport.type, teleport]]);
    const text = yamlIssuer('https://t.example.com', { type: 'teleport' });
    let caught: unknown;
    try {
      parseIdentityConfigWith(types, text);
    } catch (err) {
      caught = err;
    }
    expect((caught as IdentityConfigError).problems).toEqual([
      'identity config: OIDCIssuers[https://t.example.com]: teleport needs a SubjectDomain (meta: false)',
    ]);
    const ok = parseIdentityConfigWith(
      types,
      yamlIssuer('https://t.example.com', { type: 'teleport', 'subject-domain': 'example.com' }),
    );
    expect(challengeClaimWith(issuer(ok, 'https://t.example.com'), types)).toBe('sub');
    // Without the handler the same issuer is an unknown type: no challenge claim.
    expect(() => parseIdentityConfigWith(new Map(), text)).toThrow(
      'issuer missing challenge claim',
    );
  });
});
