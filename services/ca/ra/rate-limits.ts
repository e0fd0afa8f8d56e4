import { isIPv4, isIPv6 } from 'node:net';

/**
 * The rate limits the registration authority spends, and how their bucket ids are built.
 * The limiter itself is generic (names and ids are strings); what an id means lives here.
 */

export const LIMIT = {
  /** Every signing request, by client address; spent before any token work. */
  clientIp: 'per-client-ip',
  /** Verified identities: issuer + subject; spent after the token and the proof verify. */
  identity: 'per-identity',
  /** Every identity of one issuer together. */
  issuer: 'per-issuer',
  /** The whole service (per Redis, i.e. across replicas). */
  global: 'global',
} as const;

export const LIMIT_NAMES: readonly string[] = Object.values(LIMIT);

/** IPv6 clients get a /56 each: a typical end-site delegation, like express-rate-limit. */
export const IPV6_PREFIX_BITS = 56;

/** The id of a verified identity's bucket: issuer URLs hold no spaces, subjects may. */
export function identityId(issuer: string, subject: string): string {
  return `${issuer} ${subject}`;
}

/** The eight 16-bit words of an IPv6 address (validated by node:net first). */
function parseIPv6(text: string): number[] | undefined {
  if (!isIPv6(text)) return undefined;
  let hex = text;
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    // An embedded IPv4 tail (::ffff:192.0.2.1) is two words written in decimal.
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    hex = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const [left = '', right] = hex.split('::') as [string, string | undefined];
  if (right === undefined) return parse(left);
  const l = parse(left);
  const r = parse(right);
  return [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
}

/**
 * The per-client-ip bucket id of an address: an IPv4 address as it is (also when it
 * arrives IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 address as its /56 prefix, e.g.
 * `2001:db8:0:ab00::/56`. Anything unparsable (no socket address) shares one bucket.
 */
export function clientId(address: string | undefined): string {
  if (!address) return 'unknown';
  const bare = address.replace(/%.*$/, '');
  if (isIPv4(bare)) return bare;
  const words = parseIPv6(bare);
  if (!words) return 'unknown';
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    const [hi, lo] = [words[6]!, words[7]!];
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  const prefix = words.slice(0, 4);
  prefix[3] = prefix[3]! & (0xffff << (64 - IPV6_PREFIX_BITS)) & 0xffff;
  return `${prefix.map((w) => w.toString(16)).join(':')}::/${IPV6_PREFIX_BITS}`;
}

/**
 * Override ids in the limits file, in the form buckets are named: per-client-ip takes an
 * IPv4 address, or an IPv6 address or /56 prefix (stored as its /56).
 */
export function normalizeLimitId(limit: string, id: string): string {
  if (limit !== LIMIT.clientIp) return id;
  const [address, bits] = id.split('/') as [string, string | undefined];
  if (isIPv4(address) && bits === undefined) return address;
  if (isIPv6(address) && (bits === undefined || Number(bits) === IPV6_PREFIX_BITS)) {
    const normalized = clientId(address);
    if (normalized !== 'unknown') return normalized;
  }
  throw new Error(
    `${JSON.stringify(id)} is not an IPv4 address or an IPv6 address or /${IPV6_PREFIX_BITS} prefix`,
  );
}
