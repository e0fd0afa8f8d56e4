import type { JWTPayload } from 'jose';
import { parseGoUrl } from '../../../gocompat/go-url';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goString, issuerOf, subjectOf } from '../../claims';
import { renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The deprecated `github-workflow` issuer type (GitHub Actions; new configs use
 * ci-provider). Sixteen string claims are required; the SAN is
 * `https://github.com/<job_workflow_ref>` (Go's URL.JoinPath) and every GitHub
 * extension is filled, except 1.23 (this type never had it). The proof signs `sub`.
 */

/** The claims in the order Fulcio checks them. */
const REQUIRED = [
  'job_workflow_ref',
  'sha',
  'event_name',
  'repository',
  'workflow',
  'ref',
  'job_workflow_sha',
  'runner_environment',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'repository_visibility',
  'workflow_ref',
  'workflow_sha',
  'run_id',
  'run_attempt',
] as const;

type GithubClaims = Record<(typeof REQUIRED)[number], string>;

export const githubWorkflowIssuerType: IssuerTypeHandler = {
  type: 'github-workflow',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    // Go decodes every field (a value of the wrong type fails) before checking any.
    const c = Object.fromEntries(
      REQUIRED.map((name) => [name, goString(claims, name)]),
    ) as GithubClaims;
    for (const name of REQUIRED) {
      if (!c[name]) throw new ClaimError(`missing ${name} claim in ID token`);
    }
    const sub = subjectOf(claims);
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('github-workflow', sub, iss, sub, () => {
      const base = parseGoUrl('https://github.com/');
      const signer = base.joinPath(c.job_workflow_ref);
      return {
        san: uriSan(signer),
        extensions: renderExtensions({
          Issuer: iss,
          Subject: sub,
          GithubWorkflowTrigger: c.event_name,
          GithubWorkflowSHA: c.sha,
          GithubWorkflowName: c.workflow,
          GithubWorkflowRepository: c.repository,
          GithubWorkflowRef: c.ref,
          BuildSignerURI: signer.toString(),
          BuildSignerDigest: c.job_workflow_sha,
          RunnerEnvironment: c.runner_environment,
          SourceRepositoryURI: base.joinPath(c.repository).toString(),
          SourceRepositoryDigest: c.sha,
          SourceRepositoryRef: c.ref,
          SourceRepositoryIdentifier: c.repository_id,
          SourceRepositoryOwnerURI: base.joinPath(c.repository_owner).toString(),
          SourceRepositoryOwnerIdentifier: c.repository_owner_id,
          BuildConfigURI: base.joinPath(c.workflow_ref).toString(),
          BuildConfigDigest: c.workflow_sha,
          BuildTrigger: c.event_name,
          RunInvocationURI: base
            .joinPath(c.repository, 'actions/runs', c.run_id, 'attempts', c.run_attempt)
            .toString(),
          SourceRepositoryVisibilityAtSigning: c.repository_visibility,
        }),
      };
    });
  },
};
