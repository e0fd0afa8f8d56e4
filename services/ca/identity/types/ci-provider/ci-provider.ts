import type { JWTPayload } from 'jose';
import {
  FULCIO_EXTENSIONS,
  type FulcioExtensionField,
  type FulcioExtensionValues,
} from '../../../certificate-identity/certificate-identity';
import { GoTemplate, GoTemplateError } from '../../../gocompat/go-template';
import type {
  CiIssuerMetadata,
  IdentityConfig,
  OidcIssuerConfig,
} from '../../../config/identity-config';
import { flattenClaims, issuerOf, subjectOf } from '../../claims';
import { embedError, embedUrl, renderExtensions, uriSan } from '../../extensions';
import { LazyPrincipal, type Principal } from '../../principal';
import { ClaimError, type IssuerTypeHandler } from '../types';

/**
 * The `ci-provider` issuer type: the SAN and the extensions come from the provider's
 * CIIssuerMetadata. Each template is either a claim name (replaced by the claim, or by
 * the default of that name) or, when it contains `{{`, a Go text/template over
 * `defaults ∪ claims` (claims win) run with missingkey=error and without HTML escaping.
 * The issuer (1.1/1.8) and subject (1.24) always come from the token. Templates run when
 * the certificate identity is built, after the proof of possession, and their errors are
 * 400s with Fulcio's message. The proof of possession signs `sub`.
 */

/** Go's strings.TrimSpace set (unicode.IsSpace). */
const GO_SPACE =
  '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, 'g');

/** Fields in the order of Fulcio's Extensions struct, each once. */
const FIELDS = [...new Set(FULCIO_EXTENSIONS.map((e) => e.field))] as FulcioExtensionField[];

/** Go's json.Marshal (sorted keys, <>& escaped) then json.Indent with a tab. */
function indentedJson(record: Record<string, string>): string {
  const keys = Object.keys(record).sort();
  const escape = (s: string) =>
    JSON.stringify(s).replace(
      /[<>&\u2028\u2029]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  return `{\n${keys.map((k) => `\t${escape(k)}: ${escape(record[k]!)}`).join(',\n')}\n}`;
}

/** Fulcio's applyTemplateOrReplace. */
export function applyTemplateOrReplace(
  template: string,
  claims: ReadonlyMap<string, string>,
  defaults: Readonly<Record<string, string>>,
  logMetadata: Record<string, string>,
): string {
  const merged = new Map<string, string>(Object.entries(defaults));
  for (const [key, value] of claims) merged.set(key, value);
  if (template.includes('{{')) {
    try {
      return GoTemplate.parse(template).execute(merged);
    } catch (err) {
      if (err instanceof GoTemplateError) throw embedError(err.message);
      throw err;
    }
  }
  const value = merged.get(template);
  if (value === undefined) {
    throw embedError(
      `value <${template}> not present in either claims or defaults. ${indentedJson(logMetadata)}`,
    );
  }
  return value;
}

/** The certificate identity Fulcio's ciPrincipal.Embed builds. */
export function embedCiProvider(
  claims: JWTPayload,
  metadata: CiIssuerMetadata,
  iss: string,
  sub: string,
) {
  let flat: Map<string, string>;
  try {
    flat = flattenClaims(claims);
  } catch (err) {
    throw embedError((err as Error).message);
  }
  const defaults = metadata.defaultTemplateValues;
  if (metadata.subjectAlternativeNameTemplate.replace(TRIM, '') === '') {
    throw embedError(`SubjectAlternativeNameTemplate should not be empty. Issuer: ${iss}`);
  }
  const san = applyTemplateOrReplace(metadata.subjectAlternativeNameTemplate, flat, defaults, {
    Issuer: iss,
    ExtensionName: 'SubjectAlternativeName',
  });
  const sanUrl = embedUrl(san);
  const values: FulcioExtensionValues = {};
  for (const field of FIELDS) {
    const template = metadata.extensionTemplates[field] ?? '';
    if (template.replace(TRIM, '') === '' || field === 'Issuer' || field === 'Subject') continue;
    values[field] = applyTemplateOrReplace(template, flat, defaults, {
      Issuer: iss,
      ExtensionName: field,
    });
  }
  values.Issuer = iss;
  values.Subject = sub;
  return { san: uriSan(sanUrl), extensions: renderExtensions(values) };
}

export const ciProviderIssuerType: IssuerTypeHandler = {
  type: 'ci-provider',
  challengeClaim: 'sub',
  validateConfig(issuer, { ciIssuerMetadata }) {
    return ciIssuerMetadata.has(issuer.ciProvider)
      ? []
      : [`ci-provider ${JSON.stringify(issuer.ciProvider)} has no CIIssuerMetadata`];
  },
  principal(claims: JWTPayload, issuer: OidcIssuerConfig, config?: IdentityConfig): Principal {
    const iss = issuerOf(claims, issuer.issuerUrl);
    const metadata = config?.ciIssuerMetadata.get(issuer.ciProvider);
    if (!metadata) {
      throw new ClaimError(
        `metadata not found for ci provider ${issuer.ciProvider}, issuer: ${iss}`,
      );
    }
    const sub = subjectOf(claims);
    return new LazyPrincipal('ci-provider', sub, iss, sub, () =>
      embedCiProvider(claims, metadata, iss, sub),
    );
  },
};
