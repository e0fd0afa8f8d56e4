import type { JWTPayload } from 'jose';
import type {
  IdentityConfig,
  IssuerTypeRules,
  OidcIssuerConfig,
} from '../../config/identity-config';
import type { Principal } from '../principal';

/**
 * One issuer type (email, uri, ci-provider, ...): its config rules (its challenge claim and
 * the validation of its settings, IssuerTypeRules) and how it turns verified claims into a
 * Principal. Each type lives in its own folder and is registered in ./registry.ts, the only
 * list of types there is.
 */
export interface IssuerTypeHandler extends IssuerTypeRules {
  /**
   * @param config the identity config the issuer came from (ci-provider reads its
   *   CIIssuerMetadata there)
   * @throws ClaimError when a required claim is missing or invalid
   */
  principal(claims: JWTPayload, issuer: OidcIssuerConfig, config?: IdentityConfig): Principal;
}

/** A claim failed a type's checks; the message is for the log only. */
export class ClaimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClaimError';
  }
}
