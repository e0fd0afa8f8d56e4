import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import YAML, { CST, Lexer } from 'yaml';

/**
 * Fulcio's identity configuration (OIDCIssuers / MetaIssuers / CIIssuerMetadata), read
 * from Fulcio's own JSON or YAML so that an existing Fulcio config loads unchanged.
 *
 * Go decodes Fulcio's JSON case-insensitively on the struct field names (`IssuerURL`) and
 * its YAML by kebab-case tags (`issuer-url`). Both spellings, in either file format, fold
 * to the same key here: lower case with dashes and underscores removed. Map keys (issuer
 * URLs, provider names, template value names) are data and are never folded.
 */

export const ISSUER_TYPES = [
  'email',
  'github-workflow',
  'gitlab-pipeline',
  'buildkite-job',
  'codefresh-workflow',
  'chainguard-identity',
  'kubernetes',
  'spiffe',
  'uri',
  'username',
  'ci-provider',
] as const;
export type IssuerType = (typeof ISSUER_TYPES)[number];

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
  readonly extensionTemplates: Readonly<Record<string, string>>;
  readonly subjectAlternativeNameTemplate: string;
}

export interface IdentityConfig {
  readonly oidcIssuers: ReadonlyMap<string, OidcIssuerConfig>;
  readonly metaIssuers: ReadonlyMap<string, OidcIssuerConfig>;
  readonly ciIssuerMetadata: ReadonlyMap<string, CiIssuerMetadata>;
}

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

/** The challenge claim Fulcio derives: the configured one, else by type. */
export function challengeClaimOf(issuer: OidcIssuerConfig): string {
  if (issuer.challengeClaim) return issuer.challengeClaim;
  if (issuer.type === 'email') return 'email';
  if ((ISSUER_TYPES as readonly string[]).includes(issuer.type)) return 'sub';
  return '';
}

function hostOf(url: string): { scheme: string; host: string } | undefined {
  try {
    const parsed = new URL(url);
    return { scheme: parsed.protocol.replace(/:$/, ''), host: parsed.hostname };
  } catch {
    return undefined;
  }
}

function lastTwoLabelsMatch(a: string, b: string): boolean {
  const la = a.split('.');
  const lb = b.split('.');
  if (la.length < 2 || lb.length < 2) return false;
  return la.slice(-2).join('.') === lb.slice(-2).join('.');
}

/** Fulcio's validateConfig rules (fulcio-reference §4.1), one message per problem. */
function validateIssuer(
  issuer: OidcIssuerConfig,
  isMeta: boolean,
  where: string,
  problems: string[],
): void {
  if (issuer.issuerClaim && issuer.type !== 'email') {
    problems.push(`${where}: only email issuers can use issuer claim mapping`);
  }
  if (!challengeClaimOf(issuer)) problems.push(`${where}: issuer missing challenge claim`);
  if (issuer.type === 'spiffe') {
    if (isMeta) problems.push(`${where}: SPIFFE meta issuers not supported`);
    if (!/^[a-z0-9._-]+$/.test(issuer.spiffeTrustDomain)) {
      problems.push(
        `${where}: invalid SPIFFE trust domain ${JSON.stringify(issuer.spiffeTrustDomain)}`,
      );
    }
  }
  if (issuer.type === 'uri') {
    const subject = hostOf(issuer.subjectDomain);
    const iss = hostOf(issuer.issuerUrl);
    if (!subject || !subject.scheme || !issuer.subjectDomain.includes('://')) {
      problems.push(`${where}: SubjectDomain for uri must contain scheme`);
    } else if (!iss) {
      problems.push(`${where}: issuer URL must contain a scheme`);
    } else if (subject.scheme !== iss.scheme) {
      problems.push(`${where}: SubjectDomain and issuer URL schemes must match`);
    } else if (!lastTwoLabelsMatch(subject.host, iss.host)) {
      problems.push(`${where}: SubjectDomain hostname must share the issuer's top-level domains`);
    }
  }
  if (issuer.type === 'username') {
    const iss = hostOf(issuer.issuerUrl);
    if (!issuer.subjectDomain || issuer.subjectDomain.includes('://')) {
      problems.push(`${where}: SubjectDomain for username should not contain a scheme`);
    } else if (!iss || !lastTwoLabelsMatch(issuer.subjectDomain, iss.host)) {
      problems.push(`${where}: SubjectDomain hostname must share the issuer's top-level domains`);
    }
  }
  if (issuer.caCert) {
    try {
      new X509Certificate(issuer.caCert);
    } catch {
      problems.push(`${where}: CACert is not a PEM certificate`);
    }
  }
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

export function parseIdentityConfig(text: string, source = 'identity config'): IdentityConfig {
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
        ciIssuerMetadata.set(name, {
          defaultTemplateValues: stringMap(field(obj, 'DefaultTemplateValues'), where, problems),
          extensionTemplates: stringMap(field(obj, 'ExtensionTemplates'), where, problems),
          subjectAlternativeNameTemplate: str(
            obj,
            'SubjectAlternativeNameTemplate',
            where,
            problems,
          ),
        });
      }
    }
  }
  for (const [url, issuer] of oidcIssuers)
    validateIssuer(issuer, false, `OIDCIssuers[${url}]`, problems);
  for (const [url, issuer] of metaIssuers)
    validateIssuer(issuer, true, `MetaIssuers[${url}]`, problems);
  for (const [url, issuer] of [...oidcIssuers, ...metaIssuers]) {
    if (issuer.type === 'ci-provider' && !ciIssuerMetadata.has(issuer.ciProvider)) {
      problems.push(
        `${url}: ci-provider ${JSON.stringify(issuer.ciProvider)} has no CIIssuerMetadata`,
      );
    }
  }
  if (problems.length > 0) throw new IdentityConfigError(problems.map((p) => `${source}: ${p}`));
  return { oidcIssuers, metaIssuers, ciIssuerMetadata };
}

export function loadIdentityConfig(path: string): IdentityConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new IdentityConfigError([
      `cannot read identity config ${path}: ${(err as Error).message}`,
    ]);
  }
  return parseIdentityConfig(text, path);
}
