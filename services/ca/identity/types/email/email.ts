import type { JWTPayload } from 'jose';
import { formatGoValue } from '../../../gocompat/go-fmt';
import { issuerClaimSteps, type OidcIssuerConfig } from '../../../config/identity-config';
import { goField, goString, issuerOf, subjectOf } from '../../claims';
import { renderExtensions } from '../../extensions';
import type { CertificateIdentity, Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

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

/** Lenient like Fulcio's parser: true, "true", "True" and their false twins; null fails. */
function parseEmailVerified(value: unknown): boolean {
  if (value === undefined) return false;
  if (value === true || value === 'true' || value === 'True') return true;
  if (value === false || value === 'false' || value === 'False') return false;
  throw new ClaimError('invalid value for boolean');
}

/**
 * Evaluates the JSONPath of an IssuerClaim (`$.federated_claims.connector_id`) over the
 * claims, as Fulcio does with PaesslerAG/jsonpath and `%v`: member names (`.name`,
 * `['name']`, `["name"]`) and array indices (`[0]`) from the root; the value printed as
 * Go prints it (numbers `%g`, objects `map[…]`, null `<nil>`). A path outside that
 * subset is refused when the config is loaded.
 */
export function evaluateIssuerClaim(claims: JWTPayload, path: string): string {
  const steps = issuerClaimSteps(path);
  if (!steps) throw new ClaimError(`unsupported issuer claim path ${path}`);
  let node: unknown = claims;
  for (const step of steps) {
    if (typeof step === 'number') {
      if (!Array.isArray(node)) throw new ClaimError(`issuer claim path ${path}: not an array`);
      if (step >= node.length)
        throw new ClaimError(`issuer claim path ${path}: index out of range`);
      node = node[step];
      continue;
    }
    // Own members only: `$.constructor` must not find Object.prototype.constructor.
    if (
      typeof node !== 'object' ||
      node === null ||
      Array.isArray(node) ||
      !Object.hasOwn(node, step)
    ) {
      throw new ClaimError(`issuer claim path ${path}: unknown key ${step}`);
    }
    node = (node as Record<string, unknown>)[step];
  }
  return formatGoValue(node);
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
    return {
      san: { type: 'email', value: this.name },
      extensions: renderExtensions({ Issuer: this.certificateIssuer, Subject: this.subject }),
    };
  }
}

export const emailIssuerType: IssuerTypeHandler = {
  type: 'email',
  challengeClaim: 'email',
  issuerClaim: true,
  validateConfig(issuer) {
    if (!issuer.issuerClaim || issuerClaimSteps(issuer.issuerClaim)) return [];
    return [
      `issuer claim ${JSON.stringify(issuer.issuerClaim)} is not a JSONPath mayfly evaluates ($.a.b, $['a'], $.a[0])`,
    ];
  },
  principal(claims: JWTPayload, issuer: OidcIssuerConfig): Principal {
    // sigstore's EmailFromIDToken: a struct of email (string) and email_verified.
    const email = goString(claims, 'email');
    const verified = parseEmailVerified(goField(claims, 'email_verified'));
    if (!email) throw new ClaimError('token missing email claim');
    if (!verified && !issuer.skipEmailVerification)
      throw new ClaimError('email_verified claim was false');
    if (!isEmail(email)) throw new ClaimError('email address is not valid');
    const iss = issuerOf(claims, issuer.issuerUrl);
    const certificateIssuer = issuer.issuerClaim
      ? evaluateIssuerClaim(claims, issuer.issuerClaim)
      : iss;
    return new EmailPrincipal(email, iss, subjectOf(claims), certificateIssuer);
  },
};
