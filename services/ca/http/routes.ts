/** The API's paths (grpc-gateway's, as Fulcio serves them). No Express here: see fast-path.ts. */
export const ROUTES = {
  v2SigningCert: '/api/v2/signingCert',
  v2TrustBundle: '/api/v2/trustBundle',
  v2Configuration: '/api/v2/configuration',
  v1SigningCert: '/api/v1/signingCert',
  v1RootCert: '/api/v1/rootCert',
} as const;

/** The path of a request URL without its query string. */
export function pathOf(url: string | undefined): string {
  const value = url ?? '';
  const query = value.indexOf('?');
  return query === -1 ? value : value.slice(0, query);
}
