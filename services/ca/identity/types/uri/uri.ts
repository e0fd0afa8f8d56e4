import type { JWTPayload } from 'jose';
import { GoUrlError, parseGoUrl } from '../../../gocompat/go-url';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { isEmail } from '../email/email';
import { allowedDomain, goUrl } from '../subject-domain';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `uri` issuer type: `sub` is a URI whose scheme and host equal the issuer's
 * SubjectDomain (compared as Go's url.Parse reads them: the scheme lower-cased, the host
 * as written); it is the SAN and what the proof of possession signs.
 */
function parse(text: string) {
  try {
    return parseGoUrl(text);
  } catch (err) {
    if (err instanceof GoUrlError) throw new ClaimError(err.message);
    throw err;
  }
}

export const uriIssuerType: IssuerTypeHandler = {
  type: 'uri',
  challengeClaim: 'sub',
  validateConfig(issuer, { isMeta }) {
    if (isMeta) return [];
    if (!issuer.subjectDomain) return ['uri issuer must have SubjectDomain set'];
    const domain = goUrl(issuer.subjectDomain);
    const iss = goUrl(issuer.issuerUrl);
    if (typeof domain === 'string') return [domain];
    if (domain.scheme === '') return ['SubjectDomain for uri must contain scheme'];
    if (typeof iss === 'string') return [iss];
    if (iss.scheme === '') return ['issuer for uri must contain scheme'];
    if (domain.scheme !== iss.scheme)
      return [
        `subject (${domain.schemeText}) and issuer (${iss.schemeText}) URI schemes do not match`,
      ];
    const refused = allowedDomain(domain.hostname(), iss.hostname());
    return refused ? [refused] : [];
  },
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const uri = subjectOf(claims);
    if (isEmail(uri)) throw new ClaimError('uri subject should not be an email address');
    const subject = parse(uri);
    const domain = parse(issuer.subjectDomain);
    if (subject.scheme !== domain.scheme) {
      throw new ClaimError(
        `subject URI scheme (${subject.schemeText}) must match expected domain URI scheme (${domain.schemeText})`,
      );
    }
    if (subject.hostname() !== domain.hostname()) {
      throw new ClaimError(
        `subject hostname (${subject.hostname()}) must match expected domain (${domain.hostname()})`,
      );
    }
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('uri', uri, iss, uri, () => ({
      san: uriSan(embedUrl(uri)),
      extensions: renderExtensions({ Issuer: iss, Subject: uri }),
    }));
  },
};
