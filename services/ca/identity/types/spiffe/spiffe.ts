import type { JWTPayload } from 'jose';
import { parseTrustDomain, spiffeIdTrustDomain } from './spiffe-id';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { issuerOf, subjectOf } from '../../claims';
import { embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `spiffe` issuer type: `sub` is a SPIFFE ID (go-spiffe's rules) in the issuer's
 * SPIFFETrustDomain; it is the URI SAN and what the proof of possession signs.
 */
export const spiffeIssuerType: IssuerTypeHandler = {
  type: 'spiffe',
  challengeClaim: 'sub',
  validateConfig(issuer, { isMeta }) {
    if (isMeta) return ['SPIFFE meta issuers not supported'];
    if (!issuer.spiffeTrustDomain) return ['spiffe issuer must have SPIFFETrustDomain set'];
    try {
      parseTrustDomain(issuer.spiffeTrustDomain);
    } catch {
      return ['spiffe trust domain is invalid'];
    }
    return [];
  },
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const id = subjectOf(claims);
    let configured: string;
    try {
      configured = parseTrustDomain(issuer.spiffeTrustDomain);
    } catch (err) {
      throw new ClaimError(
        `unable to parse trust domain from configuration ${issuer.spiffeTrustDomain}: ${(err as Error).message}`,
      );
    }
    let trustDomain: string;
    try {
      trustDomain = spiffeIdTrustDomain(id);
    } catch {
      throw new ClaimError(`invalid spiffe ID provided: ${id}`);
    }
    if (trustDomain !== configured) {
      throw new ClaimError(
        `spiffe ID trust domain ${trustDomain} doesn't match configured trust domain ${issuer.spiffeTrustDomain}`,
      );
    }
    const iss = issuerOf(claims, issuer.issuerUrl);
    return new LazyPrincipal('spiffe', id, iss, id, () => ({
      san: uriSan(embedUrl(id)),
      extensions: renderExtensions({ Issuer: iss, Subject: id }),
    }));
  },
};
