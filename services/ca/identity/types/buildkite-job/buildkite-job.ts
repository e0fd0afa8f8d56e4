import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goString, issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The deprecated `buildkite-job` issuer type: the SAN is
 * `https://buildkite.com/<organization_slug>/<pipeline_slug>`; only the issuer and
 * subject extensions are set. The proof of possession signs `sub`.
 */
export const buildkiteJobIssuerType: IssuerTypeHandler = {
  type: 'buildkite-job',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const organization = goString(claims, 'organization_slug');
    const pipeline = goString(claims, 'pipeline_slug');
    if (!organization) throw new ClaimError('missing organization_slug claim in ID token');
    if (!pipeline) throw new ClaimError('missing pipeline_slug claim in ID token');
    const url = `https://buildkite.com/${organization}/${pipeline}`;
    const sub = subjectOf(claims);
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('buildkite-job', sub, iss, sub, () => ({
      san: uriSan(embedUrl(url)),
      extensions: renderExtensions({ Issuer: iss, Subject: sub }),
    }));
  },
};
