import {
  challengeClaimWith,
  loadIdentityConfigWith,
  parseIdentityConfigWith,
  type IdentityConfig,
  type OidcIssuerConfig,
} from '../config/identity-config';
import { ISSUER_TYPE_HANDLERS } from './types/registry';

/**
 * The identity config with the issuer types this build has: config/ reads Fulcio's format,
 * the registry of type handlers knows the types and validates each one's settings.
 */

export { IdentityConfigError } from '../config/identity-config';

/** The issuer types, as the registry lists them. */
export const ISSUER_TYPES: readonly string[] = [...ISSUER_TYPE_HANDLERS.keys()];

export function parseIdentityConfig(text: string, source?: string): IdentityConfig {
  return parseIdentityConfigWith(ISSUER_TYPE_HANDLERS, text, source);
}

export function loadIdentityConfig(path: string): IdentityConfig {
  return loadIdentityConfigWith(ISSUER_TYPE_HANDLERS, path);
}

/** The challenge claim Fulcio derives: the configured one, else its type's, else none. */
export function challengeClaimOf(issuer: OidcIssuerConfig): string {
  return challengeClaimWith(issuer, ISSUER_TYPE_HANDLERS);
}
