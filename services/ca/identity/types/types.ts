import type { JWTPayload } from 'jose';
import type { OidcIssuerConfig } from '../../config/identity-config';
import type { Principal } from '../principal';

/**
 * One issuer type (email, uri, ci-provider, ...) turns verified claims into a Principal.
 * Each type lives in its own folder and is registered in ./registry.ts.
 */
export interface IssuerTypeHandler {
  readonly type: string;
  /** @throws ClaimError when a required claim is missing or invalid */
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal;
}

/** A claim failed a type's checks; the message is for the log only. */
export class ClaimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClaimError';
  }
}

export function stringClaim(claims: JWTPayload, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' ? value : undefined;
}

export function requiredStringClaim(claims: JWTPayload, name: string): string {
  const value = stringClaim(claims, name);
  if (!value) throw new ClaimError(`token missing ${name} claim`);
  return value;
}
