import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { issuerOf, subjectOf } from '../../claims';
import { renderExtensions } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { isEmail } from '../email/email';
import { allowedDomain, goUrl } from '../subject-domain';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `username` issuer type: the SAN is an otherName (type-id 1.3.6.1.4.1.57264.1.7)
 * holding `<sub>!<SubjectDomain>` as a UTF8String, in a critical SAN extension; the proof
 * of possession signs `sub`.
 */
export const usernameIssuerType: IssuerTypeHandler = {
  type: 'username',
  challengeClaim: 'sub',
  validateConfig(issuer, { isMeta }) {
    if (isMeta) return [];
    if (!issuer.subjectDomain) return ['username issuer must have SubjectDomain set'];
    const domain = goUrl(issuer.subjectDomain);
    const iss = goUrl(issuer.issuerUrl);
    if (typeof domain === 'string') return [domain];
    if (domain.scheme !== '') return ['SubjectDomain for username should not contain scheme'];
    if (typeof iss === 'string') return [iss];
    if (iss.scheme === '') return ['issuer for username must contain scheme'];
    const refused = allowedDomain(issuer.subjectDomain, iss.hostname());
    return refused ? [refused] : [];
  },
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
