import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { issuerOf, subjectOf } from '../../claims';
import { renderExtensions } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { isEmail } from '../email/email';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `username` issuer type: the SAN is an otherName (type-id 1.3.6.1.4.1.57264.1.7)
 * holding `<sub>!<SubjectDomain>` as a UTF8String, in a critical SAN extension; the proof
 * of possession signs `sub`.
 */
export const usernameIssuerType: IssuerTypeHandler = {
  type: 'username',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const username = subjectOf(claims);
    if (username.includes('!')) throw new ClaimError('username cannot contain ! character');
    if (isEmail(username)) throw new ClaimError('uri subject should not be an email address');
    const iss = issuerOf(claims, issuer.issuerUrl);
    const identity = `${username}!${issuer.subjectDomain}`;
    return new LazyPrincipal('username', username, iss, username, () => ({
      san: { type: 'otherName', value: identity },
      extensions: renderExtensions({ Issuer: iss, Subject: username }),
    }));
  },
};
