/**
 * SPIFFE ID and trust-domain rules as go-spiffe v2 (`spiffeid.FromString`,
 * `spiffeid.TrustDomainFromString`) applies them for Fulcio's spiffe issuers: the scheme
 * is exactly `spiffe://`, the trust domain is [a-z0-9._-]+, path segments are
 * [A-Za-z0-9._-]+ and never `.` or `..`, with no empty segment and no trailing slash.
 */

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** The trust domain of a SPIFFE ID; throws an Error naming the first rule it breaks. */
export function spiffeIdTrustDomain(id: string): string {
  if (!id) throw new Error('cannot be empty');
  if (!id.startsWith('spiffe://')) throw new Error('scheme is missing or invalid');
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!td) throw new Error('trust domain is missing');
  if (!TRUST_DOMAIN.test(td)) {
    throw new Error(
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
    );
  }
  if (slash >= 0) {
    const path = rest.slice(slash);
    const segments = path.split('/').slice(1);
    segments.forEach((segment, i) => {
      if (segment === '') {
        throw new Error(
          i === segments.length - 1
            ? 'path cannot have a trailing slash'
            : 'path cannot contain empty segments',
        );
      }
      if (segment === '.' || segment === '..') {
        throw new Error('path cannot contain dot segments');
      }
      if (!SEGMENT.test(segment)) {
        throw new Error(
          'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
        );
      }
    });
  }
  return td;
}

/** go-spiffe's TrustDomainFromString: a trust-domain name, or a SPIFFE ID's trust domain. */
export function parseTrustDomain(idOrName: string): string {
  if (idOrName.includes(':/')) return spiffeIdTrustDomain(idOrName);
  if (!idOrName) throw new Error('trust domain is missing');
  if (!TRUST_DOMAIN.test(idOrName)) {
    throw new Error(
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
    );
  }
  return idOrName;
}
