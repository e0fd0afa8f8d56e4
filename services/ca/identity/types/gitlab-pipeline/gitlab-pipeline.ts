import type { JWTPayload } from 'jose';
import { parseGoUrl } from '../../../gocompat/go-url';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goInt64, goString, issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The deprecated `gitlab-pipeline` issuer type (GitLab CI; new configs use ci-provider).
 * The SAN is `ci_config_ref_uri` with its scheme forced to https; `ref_type` must be
 * branch or tag; `runner_id` must be a non-zero integer; `ci_config_sha` and
 * `project_visibility` are optional. The proof of possession signs `sub`.
 */

const STRING_FIELDS = [
  'project_path',
  'project_id',
  'pipeline_source',
  'pipeline_id',
  'ci_config_ref_uri',
  'ci_config_sha',
  'namespace_path',
  'namespace_id',
  'job_id',
  'ref',
  'ref_type',
  'sha',
  'runner_environment',
  'project_visibility',
] as const;

/** Required string claims, in the order Fulcio checks them (runner_id comes last). */
const REQUIRED = [
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
] as const;

type GitlabClaims = Record<(typeof STRING_FIELDS)[number], string>;

export const gitlabPipelineIssuerType: IssuerTypeHandler = {
  type: 'gitlab-pipeline',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const c = Object.fromEntries(
      STRING_FIELDS.map((name) => [name, goString(claims, name)]),
    ) as GitlabClaims;
    const runnerId = goInt64(claims, 'runner_id');
    for (const name of REQUIRED) {
      if (!c[name]) throw new ClaimError(`missing ${name} claim in ID token`);
    }
    if (runnerId === 0) throw new ClaimError('missing runner_id claim in ID token');
    let ref: string;
    if (c.ref_type === 'branch') ref = `refs/heads/${c.ref}`;
    else if (c.ref_type === 'tag') ref = `refs/tags/${c.ref}`;
    else throw new ClaimError(`unexpected ref_type: ${c.ref_type}`);
    const sub = subjectOf(claims);
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('gitlab-pipeline', sub, iss, sub, () => {
      const base = parseGoUrl('https://gitlab.com/');
      const config = embedUrl(c.ci_config_ref_uri);
      config.scheme = 'https';
      if (base.host === config.host) config.scheme = base.scheme;
      const configUri = config.toString();
      return {
        san: uriSan(config),
        extensions: renderExtensions({
          Issuer: iss,
          Subject: sub,
          BuildConfigURI: configUri,
          BuildConfigDigest: c.ci_config_sha,
          BuildSignerURI: configUri,
          BuildSignerDigest: c.ci_config_sha,
          RunnerEnvironment: c.runner_environment,
          SourceRepositoryURI: base.joinPath(c.project_path).toString(),
          SourceRepositoryDigest: c.sha,
          SourceRepositoryRef: ref,
          SourceRepositoryIdentifier: c.project_id,
          SourceRepositoryOwnerURI: base.joinPath(c.namespace_path).toString(),
          SourceRepositoryOwnerIdentifier: c.namespace_id,
          BuildTrigger: c.pipeline_source,
          RunInvocationURI: base.joinPath(c.project_path, '/-/jobs/', c.job_id).toString(),
          SourceRepositoryVisibilityAtSigning: c.project_visibility,
        }),
      };
    });
  },
};
