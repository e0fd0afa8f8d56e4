import type { JWTPayload } from 'jose';
import { formatFloatF, formatGoValue } from '../gocompat/go-fmt';
import { ClaimError } from './types/types';

/**
 * Claim access with the semantics Fulcio gets from Go's encoding/json, which decodes a
 * token's claims into a struct per issuer type: a field matches its key exactly or
 * case-insensitively (the last matching key wins), JSON null leaves the zero value, and a
 * value of the wrong JSON type fails the whole decode (Fulcio then refuses the token).
 */

type Obj = Record<string, unknown>;

/** Go's key folding for struct fields: ASCII upper-cased, other runes upper(lower(r)). */
function fold(key: string): string {
  let out = '';
  for (const c of key) {
    if (c.charCodeAt(0) < 0x80) out += c.toUpperCase();
    else {
      const folded = c.toLowerCase().toUpperCase();
      out += [...folded].length === 1 ? folded : c;
    }
  }
  return out;
}

function jsonKind(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return `number ${formatFloatF(value)}`;
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

/** The value Go would decode into the struct field tagged `json:"name"`. */
export function goField(obj: Obj, name: string): unknown {
  const want = fold(name);
  let found: unknown;
  for (const [key, value] of Object.entries(obj)) if (fold(key) === want) found = value;
  return found;
}

function typeError(value: unknown, path: string, type: string): ClaimError {
  return new ClaimError(
    `json: cannot unmarshal ${jsonKind(value)} into Go struct field ${path} of type ${type}`,
  );
}

/** A `string` struct field: "" when absent or null. */
export function goString(obj: Obj, name: string, path = `.${name}`): string {
  const value = goField(obj, name);
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw typeError(value, path, 'string');
  return value;
}

/** An `int64` struct field: 0 when absent or null; a whole number in range otherwise. */
export function goInt64(obj: Obj, name: string, path = `.${name}`): number {
  const value = goField(obj, name);
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || Math.abs(value) >= 2 ** 63) {
    throw typeError(value, path, 'int64');
  }
  return value;
}

/** A `bool` struct field: false when absent or null. */
export function goBool(obj: Obj, name: string, path = `.${name}`): boolean {
  const value = goField(obj, name);
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw typeError(value, path, 'bool');
  return value;
}

/** A nested struct field: {} when absent or null, else it must be a JSON object. */
export function goObject(obj: Obj, name: string, path = `.${name}`): Obj {
  const value = goField(obj, name);
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw typeError(value, path, 'struct');
  return value as Obj;
}

/** A `map[string]string` field: every value a string (null becomes ""). */
export function goStringMap(obj: Obj, name: string, path = `.${name}`): Record<string, string> {
  const value = goField(obj, name);
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw typeError(value, path, 'map[string]string');
  }
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value as Obj)) {
    if (item === null) out[key] = '';
    else if (typeof item === 'string') out[key] = item;
    else throw typeError(item, `${path}.${key}`, 'string');
  }
  return out;
}

/** The token's `sub`, as go-oidc reads it (a string, "" when absent). */
export function subjectOf(claims: JWTPayload): string {
  return goString(claims as Obj, 'sub');
}

function checkFinite(value: unknown): void {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new Error('json: cannot unmarshal number into Go value of type float64');
  }
  if (Array.isArray(value)) value.forEach(checkFinite);
  else if (typeof value === 'object' && value !== null) Object.values(value).forEach(checkFinite);
}

/**
 * Fulcio's ci-provider claim map (`mapValuesToString`): every claim as a string. Numbers
 * (JSON numbers are float64 in Go) print in full without exponent (`1`, `1.4`,
 * `1753000000`, `1e21` → `1000000000000000000000`); anything else as Go's `%v` (`true`,
 * `<nil>`, `[a b]`, `map[k:v]`, with nested numbers in `%g` form such as `1e+06`).
 * @throws Error (not a ClaimError: Fulcio fails here while rendering) for a number JSON
 * cannot hold in a float64
 */
export function flattenClaims(claims: JWTPayload): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(claims)) {
    checkFinite(value);
    out.set(key, typeof value === 'number' ? formatFloatF(value) : formatGoValue(value));
  }
  return out;
}

/**
 * The token's `iss` (verified equal to the configured or meta-matched issuer URL), which
 * Fulcio writes into 1.1/1.8; the issuer's URL when a test hands in claims without one.
 */
export function issuerOf(claims: JWTPayload, issuerUrl: string): string {
  return typeof claims.iss === 'string' ? claims.iss : issuerUrl;
}
