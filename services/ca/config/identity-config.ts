import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import YAML, { CST, Lexer } from 'yaml';
import {
  FULCIO_EXTENSIONS,
  type FulcioExtensionField,
} from '../certificate-identity/certificate-identity';
import { GoTemplate, GoTemplateError } from '../gocompat/go-template';

/**
 * Fulcio's identity configuration (OIDCIssuers / MetaIssuers / CIIssuerMetadata), read
 * from Fulcio's own JSON or YAML so that an existing Fulcio config loads unchanged.
 *
 * Go decodes Fulcio's JSON case-insensitively on the struct field names (`IssuerURL`) and
 * its YAML by kebab-case tags (`issuer-url`). Both spellings, in either file format, fold
 * to the same key here: lower case with dashes and underscores removed. Map keys (issuer
 * URLs, provider names, template value names) are data and are never folded.
 */

export interface OidcIssuerConfig {
  readonly issuerUrl: string;
  readonly clientId: string;
  readonly type: string;
  readonly ciProvider: string;
  readonly issuerClaim: string;
  readonly subjectDomain: string;
  readonly spiffeTrustDomain: string;
  readonly challengeClaim: string;
  readonly description: string;
  readonly contact: string;
  readonly environment: string;
  readonly caCert: string;
  readonly skipEmailVerification: boolean;
}

export interface CiIssuerMetadata {
  readonly defaultTemplateValues: Readonly<Record<string, string>>;
  /** Keyed by Fulcio's Extensions field name, whether the file said `BuildSignerURI` or `build-signer-uri`. */
  readonly extensionTemplates: Readonly<Partial<Record<FulcioExtensionField, string>>>;
  readonly subjectAlternativeNameTemplate: string;
}

export interface IdentityConfig {
  readonly oidcIssuers: ReadonlyMap<string, OidcIssuerConfig>;
  readonly metaIssuers: ReadonlyMap<string, OidcIssuerConfig>;
  readonly ciIssuerMetadata: ReadonlyMap<string, CiIssuerMetadata>;
}

/**
 * What the identity config needs of one issuer type. The identity module's registry of type
 * handlers is the table (identity/identity-config.ts binds it): a type is known here only
 * because a handler says so, and validates its own settings.
 */
export interface IssuerTypeRules {
  readonly type: string;
  /** The claim the proof of possession signs unless the issuer names one (`email`, `sub`). */
  readonly challengeClaim: string;
  /** May an issuer of this type map the certificate's issuer from a claim (IssuerClaim)? */
  readonly issuerClaim?: boolean;
  /** Fulcio's validateConfig rules for this type: one message per problem. */
  validateConfig?(issuer: OidcIssuerConfig, context: IssuerConfigContext): readonly string[];
}

export interface IssuerConfigContext {
  /** A MetaIssuers entry (Fulcio checks those for less). */
  readonly isMeta: boolean;
  readonly ciIssuerMetadata: ReadonlyMap<string, CiIssuerMetadata>;
}

export type IssuerTypes = ReadonlyMap<string, IssuerTypeRules>;

export class IdentityConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid identity config:\n  - ${problems.join('\n  - ')}`);
    this.name = 'IdentityConfigError';
  }
}

type Obj = Record<string, unknown>;

function fold(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, '');
}

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Looks a struct field up by its folded name. */
function field(obj: Obj, name: string): unknown {
  const want = fold(name);
  for (const [key, value] of Object.entries(obj)) if (fold(key) === want) return value;
  return undefined;
}

function str(obj: Obj, name: string, where: string, problems: string[]): string {
  const value = field(obj, name);
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  problems.push(`${where}: ${name} must be a string`);
  return '';
}

/** Go's strconv.ParseBool set, which is what a bool field accepts from YAML strings. */
function bool(obj: Obj, name: string, where: string, problems: string[]): boolean {
  const value = field(obj, name);
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  problems.push(`${where}: ${name} must be true or false`);
  return false;
}

function parseIssuer(
  url: string,
  raw: unknown,
  where: string,
  problems: string[],
): OidcIssuerConfig {
  if (!isObj(raw)) {
    problems.push(`${where}: must be a mapping`);
    raw = {};
  }
  const obj = raw as Obj;
  const issuerUrl = str(obj, 'IssuerURL', where, problems) || url;
  return {
    issuerUrl,
    clientId: str(obj, 'ClientID', where, problems),
    type: str(obj, 'Type', where, problems),
    ciProvider: str(obj, 'CIProvider', where, problems),
    issuerClaim: str(obj, 'IssuerClaim', where, problems),
    subjectDomain: str(obj, 'SubjectDomain', where, problems),
    spiffeTrustDomain: str(obj, 'SPIFFETrustDomain', where, problems),
    challengeClaim: str(obj, 'ChallengeClaim', where, problems),
    description: str(obj, 'Description', where, problems),
    contact: str(obj, 'Contact', where, problems),
    environment: str(obj, 'Environment', where, problems),
    caCert: str(obj, 'CACert', where, problems),
    skipEmailVerification: bool(obj, 'SkipEmailVerification', where, problems),
  };
}

function stringMap(raw: unknown, where: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined || raw === null) return out;
  if (!isObj(raw)) {
    problems.push(`${where}: must be a mapping`);
    return out;
  }
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === 'string') out[key] = value;
    else if (typeof value === 'number' || typeof value === 'boolean') out[key] = String(value);
    else problems.push(`${where}.${key}: must be a string`);
  }
  return out;
}

function issuerMap(raw: unknown, where: string, problems: string[]): Map<string, OidcIssuerConfig> {
  const out = new Map<string, OidcIssuerConfig>();
  if (raw === undefined || raw === null) return out;
  if (!isObj(raw)) {
    problems.push(`${where}: must be a mapping of issuer URL to issuer`);
    return out;
  }
  for (const [url, value] of Object.entries(raw)) {
    out.set(url, parseIssuer(url, value, `${where}[${url}]`, problems));
  }
  return out;
}

/** The challenge claim Fulcio derives: the configured one, else its type's, else none. */
export function challengeClaimWith(issuer: OidcIssuerConfig, types: IssuerTypes): string {
  return issuer.challengeClaim || (types.get(issuer.type)?.challengeClaim ?? '');
}

/**
 * The JSONPath subset mayfly evaluates for an IssuerClaim: `$` then member names
 * (`.name`, `['name']`, `["name"]`) and array indices (`[0]`). Returns the steps, or
 * undefined for a path outside the subset.
 */
export function issuerClaimSteps(path: string): (string | number)[] | undefined {
  if (!path.startsWith('$')) return undefined;
  const steps: (string | number)[] = [];
  const step = /\.([A-Za-z0-9_-]+)|\['([^'\\]*)'\]|\["([^"\\]*)"\]|\[(\d+)\]/y;
  step.lastIndex = 1;
  while (step.lastIndex < path.length) {
    const m = step.exec(path);
    if (!m) return undefined;
    if (m[4] !== undefined) steps.push(Number(m[4]));
    else steps.push(m[1] ?? m[2] ?? m[3]!);
  }
  return steps.length > 0 ? steps : undefined;
}

/** Fulcio's validateConfig rules (fulcio-reference §4.1), one message per problem. */
function validateIssuer(
  issuer: OidcIssuerConfig,
  context: IssuerConfigContext,
  types: IssuerTypes,
  where: string,
  problems: string[],
): void {
  const problem = (message: string) => problems.push(`${where}: ${message}`);
  if (issuer.caCert) {
    try {
      new X509Certificate(issuer.caCert);
    } catch {
      problem(`failed to parse CA certificate for issuer ${issuer.issuerUrl}`);
    }
  }
  const rules = types.get(issuer.type);
  // Fulcio checks meta issuers for their type's rules and the challenge claim alone.
  if (!context.isMeta && issuer.issuerClaim && !rules?.issuerClaim)
    problem('only email issuers can use issuer claim mapping');
  for (const message of rules?.validateConfig?.(issuer, context) ?? []) problem(message);
  if (!challengeClaimWith(issuer, types)) problem('issuer missing challenge claim');
}

/**
 * ExtensionTemplates keyed by Fulcio's field names: a key matches a field's Go name
 * (`BuildSignerURI`, JSON) or its YAML key (`build-signer-uri`), folded like every other
 * key here. Keys that name no field are ignored, as Go ignores them.
 */
function extensionTemplates(
  raw: unknown,
  where: string,
  problems: string[],
): Partial<Record<FulcioExtensionField, string>> {
  const out: Partial<Record<FulcioExtensionField, string>> = {};
  for (const [key, value] of Object.entries(stringMap(raw, where, problems))) {
    const known = FULCIO_EXTENSIONS.find(
      (e) => fold(e.field) === fold(key) || fold(e.yaml) === fold(key),
    );
    if (known) out[known.field] = value;
  }
  return out;
}

/** ci-provider templates must parse as Go templates (Fulcio: missingkey=error Parse). */
function validateTemplates(metadata: CiIssuerMetadata, where: string, problems: string[]): void {
  const check = (name: string, template: string) => {
    try {
      GoTemplate.parse(template);
    } catch (err) {
      if (err instanceof GoTemplateError) problems.push(`${where}: ${name}: ${err.message}`);
      else throw err;
    }
  };
  for (const [field, template] of Object.entries(metadata.extensionTemplates)) {
    check(field, template);
  }
  check('SubjectAlternativeNameTemplate', metadata.subjectAlternativeNameTemplate);
}

/** Lexer tokens that mark structure and are not part of the source text. */
const NON_SOURCE_TOKENS = new Set(['doc-mode', 'flow-error-end', 'scalar']);

/**
 * Go's YAML scanner ends an alias name at the first character outside [A-Za-z0-9_-], so
 * Fulcio's public config writes alias keys as `*github-type:`. YAML 1.2 lets `:` belong to
 * an alias name, and the `yaml` package reads that as an alias named `github-type:` (and
 * then fails on the mapping). Splitting such alias tokens (`*github-type :`) gives the text
 * the meaning it has for Fulcio. Only alias tokens change: scalars, quoted strings, block
 * scalars and comments are copied as they are.
 */
function splitGoStyleAliasKeys(text: string): string {
  let out = '';
  let copy = '';
  for (const token of new Lexer().lex(text)) {
    const type = CST.tokenType(token);
    if (type !== null && NON_SOURCE_TOKENS.has(type)) continue;
    copy += token;
    out +=
      type === 'alias' && /^\*[A-Za-z0-9_-]+:$/.test(token) ? `${token.slice(0, -1)} :` : token;
  }
  // The tokens must add up to the input; if they ever do not, leave the text alone.
  return copy === text ? out : text;
}

/**
 * Reads an identity config; `types` (the identity module's registry) knows the issuer types
 * and validates each one's settings. identity/identity-config.ts binds the registry.
 */
export function parseIdentityConfigWith(
  types: IssuerTypes,
  text: string,
  source = 'identity config',
): IdentityConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    try {
      // logLevel 'error': warnings must not go to process.emitWarning (errors still throw).
      doc = YAML.parse(splitGoStyleAliasKeys(text), { maxAliasCount: 1000, logLevel: 'error' });
    } catch (err) {
      throw new IdentityConfigError([
        `${source}: neither JSON nor YAML (${(err as Error).message})`,
      ]);
    }
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObj(doc)) throw new IdentityConfigError([`${source}: top level must be a mapping`]);
  const problems: string[] = [];
  const oidcIssuers = issuerMap(field(doc, 'OIDCIssuers'), 'OIDCIssuers', problems);
  const metaIssuers = issuerMap(field(doc, 'MetaIssuers'), 'MetaIssuers', problems);
  const ciIssuerMetadata = new Map<string, CiIssuerMetadata>();
  const rawMeta = field(doc, 'CIIssuerMetadata');
  if (rawMeta !== undefined && rawMeta !== null) {
    if (!isObj(rawMeta)) problems.push('CIIssuerMetadata: must be a mapping');
    else {
      for (const [name, value] of Object.entries(rawMeta)) {
        const where = `CIIssuerMetadata[${name}]`;
        const obj = isObj(value) ? value : {};
        const metadata: CiIssuerMetadata = {
          defaultTemplateValues: stringMap(field(obj, 'DefaultTemplateValues'), where, problems),
          extensionTemplates: extensionTemplates(
            field(obj, 'ExtensionTemplates'),
            `${where}.ExtensionTemplates`,
            problems,
          ),
          subjectAlternativeNameTemplate: str(
            obj,
            'SubjectAlternativeNameTemplate',
            where,
            problems,
          ),
        };
        validateTemplates(metadata, where, problems);
        ciIssuerMetadata.set(name, metadata);
      }
    }
  }
  for (const [url, issuer] of oidcIssuers)
    validateIssuer(
      issuer,
      { isMeta: false, ciIssuerMetadata },
      types,
      `OIDCIssuers[${url}]`,
      problems,
    );
  for (const [url, issuer] of metaIssuers)
    validateIssuer(
      issuer,
      { isMeta: true, ciIssuerMetadata },
      types,
      `MetaIssuers[${url}]`,
      problems,
    );
  if (problems.length > 0) throw new IdentityConfigError(problems.map((p) => `${source}: ${p}`));
  return { oidcIssuers, metaIssuers, ciIssuerMetadata };
}

export function loadIdentityConfigWith(types: IssuerTypes, path: string): IdentityConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new IdentityConfigError([
      `cannot read identity config ${path}: ${(err as Error).message}`,
    ]);
  }
  return parseIdentityConfigWith(types, text, path);
}
