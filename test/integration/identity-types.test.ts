import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as asn1js from 'asn1js';
import type { JWTPayload } from 'jose';
import * as pkijs from 'pkijs';
import request from 'supertest';
import { makeKey, proofFor } from '../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../helpers/mayfly';

/**
 * One certificate per issuer type, end to end: a local issuer (the dev issuer serving one
 * issuer per path, /email, /username, ...) mints the claims, mayfly reads its identity
 * config from a Fulcio-format file, the client proves possession over the principal's
 * name, and the certificate that comes back is parsed: the SAN (type, value, critical)
 * and every 1.3.6.1.4.1.57264.1.* extension (value, encoding, non-critical, order).
 */

const repoRoot = resolve(__dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'mayfly-identity-types-'));
const identityFile = join(dir, 'identity.yaml');

/** The github-workflow CIIssuerMetadata of the shipped config, as YAML lines. */
function githubMetadataYaml(): string {
  const shipped = readFileSync(join(repoRoot, 'config', 'identity.yaml'), 'utf8');
  const start = shipped.indexOf('  github-workflow:\n    default-template-values');
  const end = shipped.indexOf('  gitlab-pipeline:\n    default-template-values');
  return shipped.slice(start, end);
}

function identityYaml(base: string, extra = ''): string {
  const port = new URL(base).port;
  const issuer = (path: string, fields: string[]) =>
    [
      `  ${base}/${path}:`,
      `    issuer-url: ${base}/${path}`,
      '    client-id: sigstore',
      ...fields.map((f) => `    ${f}`),
    ].join('\n');
  return [
    'oidc-issuers:',
    issuer('email', ['type: email']),
    issuer('dex', ['type: email', 'issuer-claim: $.federated_claims.connector_id']),
    issuer('username', ['type: username', 'subject-domain: 127.0.0.1']),
    issuer('uri', ['type: uri', `subject-domain: http://127.0.0.1:${port}`]),
    issuer('spiffe', ['type: spiffe', 'spiffe-trust-domain: example.org']),
    issuer('kubernetes', ['type: kubernetes']),
    issuer('github-workflow', ['type: github-workflow']),
    issuer('gitlab-pipeline', ['type: gitlab-pipeline']),
    issuer('buildkite-job', ['type: buildkite-job']),
    issuer('codefresh-workflow', ['type: codefresh-workflow']),
    issuer('chainguard-identity', ['type: chainguard-identity']),
    issuer('actions', ['type: ci-provider', 'ci-provider: github-workflow']),
    extra,
    'meta-issuers:',
    `  ${base}/clusters/*:`,
    '    client-id: sigstore',
    '    type: kubernetes',
    'ci-issuer-metadata:',
    githubMetadataYaml(),
  ].join('\n');
}

let ca: TestCa;
beforeAll(async () => {
  ca = await startTestCa({
    issuerOptions: { tenants: true },
    identityConfigFile: (issuer) => {
      writeFileSync(identityFile, identityYaml(issuer.url));
      return identityFile;
    },
    env: { MAYFLY_IDENTITY_CONFIG_RELOAD_MS: '0' },
  });
});
afterAll(async () => {
  await ca.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly der: Buffer;
}

interface IssuedCertificate {
  readonly extensions: Extension[];
  readonly san: { type: 'email' | 'uri' | 'otherName'; value: string; typeId?: string };
}

function parseLeaf(pem: string): IssuedCertificate {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const cert = pkijs.Certificate.fromBER(der);
  const extensions = (cert.extensions ?? []).map((e) => ({
    oid: e.extnID,
    critical: e.critical,
    der: Buffer.from(e.extnValue.getValue()),
  }));
  const sanExt = extensions.find((e) => e.oid === '2.5.29.17')!;
  const names = (asn1js.fromBER(sanExt.der).result as asn1js.Sequence).valueBlock.value;
  expect(names).toHaveLength(1);
  const name = names[0]!;
  const tag = name.idBlock.tagNumber;
  let san: IssuedCertificate['san'];
  if (tag === 0) {
    const [typeId, wrapped] = (name as asn1js.Constructed).valueBlock.value as [
      asn1js.ObjectIdentifier,
      asn1js.Constructed,
    ];
    const utf8 = wrapped.valueBlock.value[0] as asn1js.Utf8String;
    expect(utf8.idBlock.tagNumber).toBe(12);
    san = { type: 'otherName', value: utf8.valueBlock.value, typeId: typeId.valueBlock.toString() };
  } else {
    const bytes = Buffer.from((name as asn1js.Primitive).valueBlock.valueHexView);
    san = { type: tag === 1 ? 'email' : 'uri', value: bytes.toString('latin1') };
  }
  return { extensions, san };
}

/** A Fulcio extension's value as its encoding says: raw bytes, or a DER UTF8String. */
function fulcioExtensions(cert: IssuedCertificate): [string, string, string][] {
  return cert.extensions
    .filter((e) => e.oid.startsWith('1.3.6.1.4.1.57264.1.'))
    .map((e) => {
      expect(e.critical).toBe(false);
      const arc = Number(e.oid.split('.').at(-1));
      if (arc <= 6) return [`.${arc}`, e.der.toString('utf8'), 'raw'];
      const parsed = asn1js.fromBER(e.der);
      expect(parsed.offset).toBe(e.der.length);
      expect(parsed.result.idBlock.tagClass).toBe(1);
      expect(parsed.result.idBlock.tagNumber).toBe(12);
      return [`.${arc}`, (parsed.result as asn1js.Utf8String).valueBlock.value, 'utf8'];
    });
}

async function issue(
  path: string,
  claims: JWTPayload,
  name: string,
): Promise<{ cert: IssuedCertificate; iss: string }> {
  const iss = `${ca.issuer.url}/${path}`;
  const token = await ca.issuer.mint(claims, { issuer: iss });
  const key = makeKey('p256');
  const res = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .send(v2Body(token, key.pem, proofFor(key, name)));
  expect(res.body).toHaveProperty('signedCertificateDetachedSct');
  expect(res.status).toBe(200);
  const body = res.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } };
  return { cert: parseLeaf(body.signedCertificateDetachedSct.chain.certificates[0]!), iss };
}

function expectProfile(cert: IssuedCertificate): void {
  const order = cert.extensions.map((e) => e.oid).filter((o) => !o.startsWith('1.3.6.1.4.1.'));
  expect(order).toEqual(['2.5.29.15', '2.5.29.37', '2.5.29.14', '2.5.29.35', '2.5.29.17']);
  expect(cert.extensions.find((e) => e.oid === '2.5.29.17')?.critical).toBe(true);
  // The Fulcio extensions follow the SAN.
  const sanAt = cert.extensions.findIndex((e) => e.oid === '2.5.29.17');
  expect(
    cert.extensions.slice(sanAt + 1).every((e) => e.oid.startsWith('1.3.6.1.4.1.57264.1.')),
  ).toBe(true);
}

const base = (iss: string, sub: string): [string, string, string][] => [
  ['.1', iss, 'raw'],
  ['.8', iss, 'utf8'],
  ['.24', sub, 'utf8'],
];

describe('a certificate per issuer type, through POST /api/v2/signingCert', () => {
  test('email', async () => {
    const { cert, iss } = await issue(
      'email',
      { sub: 'u-1', email: 'alice@example.com', email_verified: true },
      'alice@example.com',
    );
    expectProfile(cert);
    expect(cert.san).toEqual({ type: 'email', value: 'alice@example.com' });
    expect(fulcioExtensions(cert)).toEqual(base(iss, 'u-1'));
  });

  test('email with an IssuerClaim (Dex federated_claims.connector_id)', async () => {
    const { cert } = await issue(
      'dex',
      {
        sub: 'CgYxMjM0NTYSBmdpdGh1Yg',
        email: 'alice@example.com',
        email_verified: true,
        federated_claims: { connector_id: 'https://github.com/login/oauth', user_id: '123456' },
      },
      'alice@example.com',
    );
    expect(fulcioExtensions(cert)).toEqual(
      base('https://github.com/login/oauth', 'CgYxMjM0NTYSBmdpdGh1Yg'),
    );
  });

  test('username: a critical otherName SAN 1.3.6.1.4.1.57264.1.7 holding sub!SubjectDomain', async () => {
    const { cert, iss } = await issue('username', { sub: 'alice' }, 'alice');
    expectProfile(cert);
    expect(cert.san).toEqual({
      type: 'otherName',
      value: 'alice!127.0.0.1',
      typeId: '1.3.6.1.4.1.57264.1.7',
    });
    expect(fulcioExtensions(cert)).toEqual(base(iss, 'alice'));
  });

  test('uri', async () => {
    const port = new URL(ca.issuer.url).port;
    const sub = `http://127.0.0.1:${port}/users/1`;
    const { cert, iss } = await issue('uri', { sub }, sub);
    expect(cert.san).toEqual({ type: 'uri', value: sub });
    expect(fulcioExtensions(cert)).toEqual(base(iss, sub));
  });

  test('spiffe', async () => {
    const sub = 'spiffe://example.org/ns/builds/sa/builder';
    const { cert, iss } = await issue('spiffe', { sub }, sub);
    expect(cert.san).toEqual({ type: 'uri', value: sub });
    expect(fulcioExtensions(cert)).toEqual(base(iss, sub));
  });

  const k8s = {
    sub: 'system:serviceaccount:builds:builder',
    'kubernetes.io': { namespace: 'builds', serviceaccount: { name: 'builder', uid: 'u' } },
  };

  test('kubernetes', async () => {
    const { cert, iss } = await issue('kubernetes', k8s, k8s.sub);
    expect(cert.san).toEqual({
      type: 'uri',
      value: 'https://kubernetes.io/namespaces/builds/serviceaccounts/builder',
    });
    expect(fulcioExtensions(cert)).toEqual(base(iss, k8s.sub));
  });

  test('kubernetes through a meta issuer (one cluster of many)', async () => {
    const { cert, iss } = await issue('clusters/prod-eu-1', k8s, k8s.sub);
    expect(iss).toMatch(/\/clusters\/prod-eu-1$/);
    expect(cert.san.value).toBe('https://kubernetes.io/namespaces/builds/serviceaccounts/builder');
    expect(fulcioExtensions(cert)).toEqual(base(iss, k8s.sub));
  });

  const github = {
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
  const githubExtensions = (iss: string, withEnvironment: boolean): [string, string, string][] => [
    ['.1', iss, 'raw'],
    ['.2', 'trigger', 'raw'],
    ['.3', 'sha', 'raw'],
    ['.4', 'workflow', 'raw'],
    ['.5', 'sigstore/fulcio', 'raw'],
    ['.6', 'refs/heads/main', 'raw'],
    ['.8', iss, 'utf8'],
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
    ...(withEnvironment ? ([['.23', 'production', 'utf8']] as [string, string, string][]) : []),
    ['.24', 'repo:sigstore/fulcio:ref:refs/heads/main', 'utf8'],
  ];

  test('ci-provider with the public-good GitHub metadata: the fulcio-reference §9 vector', async () => {
    const { cert, iss } = await issue('actions', github, github.sub);
    expectProfile(cert);
    expect(cert.san).toEqual({ type: 'uri', value: 'https://github.com/job/workflow/ref' });
    expect(fulcioExtensions(cert)).toEqual(githubExtensions(iss, true));
  });

  test('github-workflow (deprecated type): the same vector without 1.23', async () => {
    const { cert, iss } = await issue('github-workflow', github, github.sub);
    expect(cert.san).toEqual({ type: 'uri', value: 'https://github.com/job/workflow/ref' });
    expect(fulcioExtensions(cert)).toEqual(githubExtensions(iss, false));
  });

  test('gitlab-pipeline (deprecated type)', async () => {
    const claims = {
      sub: 'project_path:group/project:ref_type:branch:ref:main',
      project_path: 'group/project',
      project_id: '42',
      pipeline_source: 'push',
      pipeline_id: '7',
      ci_config_ref_uri: 'gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main',
      ci_config_sha: 'cfg-sha',
      namespace_path: 'group',
      namespace_id: '9',
      job_id: '1001',
      ref: 'main',
      ref_type: 'branch',
      sha: 'abc',
      runner_environment: 'gitlab-hosted',
      runner_id: 5,
      project_visibility: 'private',
    };
    const { cert, iss } = await issue('gitlab-pipeline', claims, claims.sub);
    const config = 'https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main';
    expect(cert.san).toEqual({ type: 'uri', value: config });
    expect(fulcioExtensions(cert)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', config, 'utf8'],
      ['.10', 'cfg-sha', 'utf8'],
      ['.11', 'gitlab-hosted', 'utf8'],
      ['.12', 'https://gitlab.com/group/project', 'utf8'],
      ['.13', 'abc', 'utf8'],
      ['.14', 'refs/heads/main', 'utf8'],
      ['.15', '42', 'utf8'],
      ['.16', 'https://gitlab.com/group', 'utf8'],
      ['.17', '9', 'utf8'],
      ['.18', config, 'utf8'],
      ['.19', 'cfg-sha', 'utf8'],
      ['.20', 'push', 'utf8'],
      ['.21', 'https://gitlab.com/group/project/-/jobs/1001', 'utf8'],
      ['.22', 'private', 'utf8'],
      ['.24', claims.sub, 'utf8'],
    ]);
  });

  test('buildkite-job (deprecated type)', async () => {
    const claims = {
      sub: 'organization:acme:pipeline:app',
      organization_slug: 'acme',
      pipeline_slug: 'app',
    };
    const { cert, iss } = await issue('buildkite-job', claims, claims.sub);
    expect(cert.san).toEqual({ type: 'uri', value: 'https://buildkite.com/acme/app' });
    expect(fulcioExtensions(cert)).toEqual(base(iss, claims.sub));
  });

  test('codefresh-workflow (deprecated type)', async () => {
    const claims = {
      sub: 'account:a1:pipeline:p1',
      account_id: 'a1',
      account_name: 'acme',
      pipeline_id: 'p1',
      pipeline_name: 'proj/build',
      workflow_id: 'w1',
      scm_repo_url: 'https://github.com/acme/app',
      scm_ref: 'main',
      runner_environment: 'saas',
    };
    const { cert, iss } = await issue('codefresh-workflow', claims, claims.sub);
    expect(cert.san).toEqual({
      type: 'uri',
      value: 'https://g.codefresh.io/acme/proj/build:a1/p1',
    });
    expect(fulcioExtensions(cert)).toEqual([
      ['.1', iss, 'raw'],
      ['.8', iss, 'utf8'],
      ['.9', 'https://g.codefresh.io/build/w1', 'utf8'],
      ['.11', 'saas', 'utf8'],
      ['.12', 'https://github.com/acme/app', 'utf8'],
      ['.14', 'main', 'utf8'],
      ['.18', 'https://g.codefresh.io/api/pipelines/p1', 'utf8'],
      ['.21', 'https://g.codefresh.io/build/w1', 'utf8'],
      ['.24', claims.sub, 'utf8'],
    ]);
  });

  test('chainguard-identity: the proof signs the verified email, the SAN is iss/sub', async () => {
    const claims = { sub: 'group-1/identity-2', email: 'bot@example.com', email_verified: true };
    const { cert, iss } = await issue('chainguard-identity', claims, 'bot@example.com');
    expect(cert.san).toEqual({ type: 'uri', value: `${iss}/group-1/identity-2` });
    expect(fulcioExtensions(cert)).toEqual(base(iss, claims.sub));
  });

  test('chainguard-identity without email: the proof signs sub', async () => {
    const { cert } = await issue(
      'chainguard-identity',
      { sub: 'group-1/identity-3' },
      'group-1/identity-3',
    );
    expect(cert.san.value).toMatch(/\/chainguard-identity\/group-1\/identity-3$/);
  });
});

describe('refusals through HTTP', () => {
  async function post(path: string, claims: JWTPayload, name: string) {
    const token = await ca.issuer.mint(claims, { issuer: `${ca.issuer.url}/${path}` });
    const key = makeKey('p256');
    const before = ca.signCount();
    const res = await request(ca.app.api)
      .post('/api/v2/signingCert')
      .send(v2Body(token, key.pem, proofFor(key, name)));
    expect(ca.signCount()).toBe(before);
    return res;
  }

  test('a missing required claim is the identity-token error', async () => {
    const res = await post('buildkite-job', { sub: 's', organization_slug: 'acme' }, 's');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      code: 3,
      message: 'There was an error processing the identity token',
      details: [],
    });
  });

  test('a ci-provider template error is a 400 with Fulcio’s message, after the proof', async () => {
    const { job_workflow_ref: _j, ...claims } = {
      sub: 's',
      job_workflow_ref: 'x',
      event_name: 'push',
      sha: 'a',
      workflow: 'w',
      repository: 'r',
      ref: 'main',
    };
    const res = await post('actions', claims, 's');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      code: 3,
      message:
        'template: :1:14: executing "" at <.job_workflow_ref>: map has no entry for key "job_workflow_ref"',
      details: [],
    });
  });

  test('a proof over the wrong name is refused (username signs sub, not sub!domain)', async () => {
    const res = await post('username', { sub: 'alice' }, 'alice!127.0.0.1');
    expect(res.status).toBe(400);
    expect((res.body as { message: string }).message).toBe(
      'The signature supplied in the request could not be verified',
    );
  });
});

describe('GET /api/v2/configuration and hot reload', () => {
  type Issuer = {
    issuerUrl?: string;
    wildcardIssuerUrl?: string;
    issuerType: string;
    challengeClaim: string;
  };
  async function issuers(): Promise<Issuer[]> {
    const res = await request(ca.app.api).get('/api/v2/configuration');
    expect(res.status).toBe(200);
    return (res.body as { issuers: Issuer[] }).issuers;
  }

  test('lists every issuer of the file: email for email issuers, sub otherwise', async () => {
    const listed = await issuers();
    expect(listed).toHaveLength(13);
    for (const issuer of listed) {
      expect(issuer.challengeClaim).toBe(issuer.issuerType === 'email' ? 'email' : 'sub');
    }
    expect(listed.find((i) => i.wildcardIssuerUrl)?.issuerType).toBe('kubernetes');
  });

  test('a good new file replaces the config on reload; a bad one is refused and the old one serves', async () => {
    const url = ca.issuer.url;
    writeFileSync(
      identityFile,
      identityYaml(
        url,
        [`  ${url}/extra:`, '    client-id: sigstore', '    type: email'].join('\n'),
      ),
    );
    expect(ca.app.identity.reload('sighup')).toBe('reloaded');
    expect(await issuers()).toHaveLength(14);
    const { cert } = await issue(
      'extra',
      { sub: 'x', email: 'x@example.com', email_verified: true },
      'x@example.com',
    );
    expect(cert.san.value).toBe('x@example.com');

    writeFileSync(identityFile, 'oidc-issuers:\n  https://x.example.com:\n    type: uri\n');
    expect(ca.app.identity.reload('sighup')).toBe('refused');
    expect(await issuers()).toHaveLength(14);
  });
});
