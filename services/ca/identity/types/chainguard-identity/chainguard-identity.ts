import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { goBool, goObject, goString, goStringMap, issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `chainguard-identity` issuer type (issuer.enforce.dev): the SAN is `<iss>/<sub>`
 * (Go's URL.JoinPath). The proof of possession signs the `email` claim when the token has
 * one (and then `email_verified` must be true), else `sub` (sigstore's
 * oauthflow.SubjectFromToken).
 */
export const chainguardIdentityIssuerType: IssuerTypeHandler = {
  type: 'chainguard-identity',
  challengeClaim: 'sub',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    goStringMap(claims, 'act');
    goString(goObject(claims, 'internal'), 'service-principal', '.internal.service-principal');
    const email = goString(claims, 'email');
    const verified = goBool(claims, 'email_verified');
    const sub = subjectOf(claims);
    let name: string;
    if (email) {
      if (!verified) throw new ClaimError('not verified by identity provider');
      name = email;
    } else {
      if (!sub) throw new ClaimError('no subject found in claims');
      name = sub;
    }
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('chainguard-identity', name, iss, sub, () => ({
      san: uriSan(embedUrl(iss).joinPath(sub)),
      extensions: renderExtensions({ Issuer: iss, Subject: sub }),
    }));
  },
};
