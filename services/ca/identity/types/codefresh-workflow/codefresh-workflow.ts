import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goString, issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The deprecated `codefresh-workflow` issuer type: the SAN is
 * `<platform_url>/<account_name>/<pipeline_name>:<account_id>/<pipeline_id>` (Go's
 * URL.JoinPath; platform_url defaults to https://g.codefresh.io); account_id,
 * pipeline_id and workflow_id are required. The proof of possession signs `sub`.
 */
const FIELDS = [
  'account_id',
  'account_name',
  'pipeline_id',
  'pipeline_name',
  'workflow_id',
  'initiator',
  'scm_repo_url',
  'scm_user_name',
  'scm_ref',
  'scm_pull_request_target_branch',
  'runner_environment',
  'platform_url',
] as const;

export const DEFAULT_CODEFRESH_PLATFORM_URL = 'https://g.codefresh.io';

export const codefreshWorkflowIssuerType: IssuerTypeHandler = {
  type: 'codefresh-workflow',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const c = Object.fromEntries(FIELDS.map((name) => [name, goString(claims, name)])) as Record<
      (typeof FIELDS)[number],
      string
    >;
    if (!c.account_id) throw new ClaimError('missing account_id in token');
    if (!c.pipeline_id) throw new ClaimError('missing pipeline_id in token');
    if (!c.workflow_id) throw new ClaimError('missing workflow_id in token');
    const platform = c.platform_url || DEFAULT_CODEFRESH_PLATFORM_URL;
    const sub = subjectOf(claims);
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('codefresh-workflow', sub, iss, sub, () => {
      const base = embedUrl(platform);
      const build = base.joinPath('build', c.workflow_id).toString();
      return {
        san: uriSan(
          base.joinPath(c.account_name, `${c.pipeline_name}:${c.account_id}/${c.pipeline_id}`),
        ),
        extensions: renderExtensions({
          Issuer: iss,
          Subject: sub,
          BuildSignerURI: build,
          RunnerEnvironment: c.runner_environment,
          SourceRepositoryURI: c.scm_repo_url,
          SourceRepositoryRef: c.scm_ref,
          BuildConfigURI: base.joinPath('api', 'pipelines', c.pipeline_id).toString(),
          RunInvocationURI: build,
        }),
      };
    });
  },
};
