import { buildkiteJobIssuerType } from './buildkite-job/buildkite-job';
import { chainguardIdentityIssuerType } from './chainguard-identity/chainguard-identity';
import { ciProviderIssuerType } from './ci-provider/ci-provider';
import { codefreshWorkflowIssuerType } from './codefresh-workflow/codefresh-workflow';
import { emailIssuerType } from './email/email';
import { githubWorkflowIssuerType } from './github-workflow/github-workflow';
import { gitlabPipelineIssuerType } from './gitlab-pipeline/gitlab-pipeline';
import { kubernetesIssuerType } from './kubernetes/kubernetes';
import { spiffeIssuerType } from './spiffe/spiffe';
import type { IssuerTypeHandler } from './types';
import { uriIssuerType } from './uri/uri';
import { usernameIssuerType } from './username/username';

/** Every issuer type Fulcio has, one folder each. */
export const ISSUER_TYPE_HANDLERS: ReadonlyMap<string, IssuerTypeHandler> = new Map(
  [
    emailIssuerType,
    usernameIssuerType,
    uriIssuerType,
    spiffeIssuerType,
    kubernetesIssuerType,
    ciProviderIssuerType,
    githubWorkflowIssuerType,
    gitlabPipelineIssuerType,
    buildkiteJobIssuerType,
    codefreshWorkflowIssuerType,
    chainguardIdentityIssuerType,
  ].map((handler) => [handler.type, handler]),
);
