import type { JWTPayload } from 'jose';
import { CaError } from '../../../common/errors';
import type { OidcIssuerConfig } from '../../../config/identity-config';
import { baseExtensions, type CertificateIdentity, type Principal } from '../../principal';
import { ClaimError, requiredStringClaim, stringClaim, type IssuerTypeHandler } from '../types';

/**
 * The `email` issuer type: the SAN is the verified email address (rfc822Name) and the
 * proof of possession signs that address.
 */

// Close to govalidator.IsEmail: a dot-atom local part and a dotted host of LDH labels whose
// last label starts and ends with a letter (govalidator refuses `a@10.0.0.10`, `a@x.com1`).
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?$/;

export function isEmail(value: string): boolean {
  return (
    EMAIL.test(value) &&
    !value.startsWith('.') &&
    !value.includes('..') &&
    !value.split('@')[0]!.endsWith('.')
  );
}

/** Lenient like Fulcio's parser: true, "true", "True" and their false twins. */
function parseEmailVerified(value: unknown): boolean {
  if (value === undefined) return false;
  if (value === true || value === 'true' || value === 'True') return true;
  if (value === false || value === 'false' || value === 'False') return false;
  throw new ClaimError('email_verified claim is neither true nor false');
}

/**
 * Evaluates the simple JSONPath subset Fulcio configs use for IssuerClaim
 * (`$.federated_claims.connector_id`): dotted member names from the root.
 */
export function evaluateIssuerClaim(claims: JWTPayload, path: string): string {
  if (!/^\$(\.[A-Za-z0-9_-]+)+$/.test(path))
    throw new ClaimError(`unsupported issuer claim path ${path}`);
  let node: unknown = claims;
  for (const key of path.slice(2).split('.')) {
    // Own members only: `$.constructor` must not find Object.prototype.constructor.
    if (
      typeof node !== 'object' ||
      node === null ||
      Array.isArray(node) ||
      !Object.hasOwn(node, key)
    ) {
      throw new ClaimError(`issuer claim path ${path} not found in token`);
    }
    node = (node as Record<string, unknown>)[key];
  }
  if (node === undefined || node === null || typeof node === 'object') {
    throw new ClaimError(`issuer claim path ${path} not found in token`);
  }
  return String(node);
}

class EmailPrincipal implements Principal {
  readonly issuerType = 'email';
  constructor(
    readonly name: string,
    readonly issuer: string,
    readonly subject: string,
    private readonly certificateIssuer: string,
  ) {}

  certificateIdentity(): CertificateIdentity {
    // Fulcio renders extensions after the proof of possession and passes this message
    // through; an IssuerClaim that resolves to "" gets here.
    if (!this.certificateIssuer) {
      const message = 'extensions must have a non-empty issuer url';
      throw new CaError('identity_validation', message, { clientMessage: message });
    }
    return {
      san: { type: 'email', value: this.name },
      extensions: baseExtensions(this.certificateIssuer, this.subject),
    };
  }
}

export const emailIssuerType: IssuerTypeHandler = {
  type: 'email',
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    const email = requiredStringClaim(claims, 'email');
    const verified = parseEmailVerified(claims.email_verified);
    if (!verified && !issuer.skipEmailVerification)
      throw new ClaimError('email_verified claim was false');
    if (!isEmail(email)) throw new ClaimError('email address is not valid');
    const iss = requiredStringClaim(claims, 'iss');
    const certificateIssuer = issuer.issuerClaim
      ? evaluateIssuerClaim(claims, issuer.issuerClaim)
      : iss;
    return new EmailPrincipal(email, iss, stringClaim(claims, 'sub') ?? '', certificateIssuer);
  },
};
