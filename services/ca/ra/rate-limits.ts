import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

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

/**
 * An embedded IPv4 tail (`2001:db8::192.0.2.1`) as two hex words: ipaddr.js 1.x (the one
 * proxy-addr uses) reads a dotted tail only in IPv4-mapped addresses and throws on the rest.
 */
function hexIPv4Tail(text: string): string {
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (!tail.includes('.')) return text;
  const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
  return `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
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
  // node:net validates (strictly); ipaddr.js (proxy-addr's parser) reads the words.
  if (!isIPv6(bare)) return 'unknown';
  const ipv6 = ipaddr.IPv6.parse(hexIPv4Tail(bare));
  if (ipv6.isIPv4MappedAddress()) return ipv6.toIPv4Address().toString();
  const prefix = ipv6.parts.slice(0, 4);
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
