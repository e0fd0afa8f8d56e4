/**
 * Go's number and `%v` formatting, as far as Fulcio's certificates depend on it: claim
 * values flattened for ci-provider templates, the IssuerClaim value, template output.
 * JavaScript's `Number.prototype.toExponential()` gives the same shortest round-trip
 * digits as Go's `strconv.FormatFloat(x, fmt, -1, 64)`; only the layout differs.
 */

/** Shortest round-trip digits and decimal exponent of a finite, non-zero |x|. */
function shortestDigits(x: number): { digits: string; exp: number } {
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e') as [string, string];
  return { digits: mantissa.replace('.', ''), exp: Number(exponent) };
}

/** strconv.FormatFloat(x, 'f', -1, 64): shortest digits, never an exponent. */
export function formatFloatF(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '+Inf' : '-Inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (x === 0) return `${sign}0`;
  const { digits, exp } = shortestDigits(x);
  let body: string;
  if (exp >= digits.length - 1) body = digits + '0'.repeat(exp - (digits.length - 1));
  else if (exp < 0) body = `0.${'0'.repeat(-exp - 1)}${digits}`;
  else body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  return sign + body;
}

/** strconv.FormatFloat(x, 'g', -1, 64), which is what `%v` prints for a float64. */
export function formatFloatG(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '+Inf' : '-Inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (x === 0) return `${sign}0`;
  const { digits, exp } = shortestDigits(x);
  // Shortest %g uses an exponent below 1e-4 and from 1e6 on (strconv's eprec of 6).
  if (exp < -4 || exp >= 6) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${mantissa}e${exp < 0 ? '-' : '+'}${e}`;
  }
  return sign + formatFloatF(Math.abs(x));
}

/** Go's byte-wise string order (fmt sorts map keys this way). */
export function compareGoStrings(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * `fmt.Sprintf("%v", v)` for a value decoded from JSON into Go's `any`: strings as they
 * are, numbers as float64 (`%g`), `<nil>`, `[a b]` for arrays and `map[k:v]` with keys in
 * byte order for objects.
 */
export function formatGoValue(value: unknown): string {
  if (value === null || value === undefined) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return formatFloatG(value);
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(formatGoValue).join(' ')}]`;
  if (value instanceof Map) {
    const keys = [...(value as Map<string, unknown>).keys()].sort(compareGoStrings);
    return `map[${keys.map((k) => `${k}:${formatGoValue((value as Map<string, unknown>).get(k))}`).join(' ')}]`;
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort(compareGoStrings);
    return `map[${keys.map((k) => `${k}:${formatGoValue(obj[k])}`).join(' ')}]`;
  }
  return String(value);
}
