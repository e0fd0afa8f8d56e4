import { decodeBase64UrlStrict } from '../../common/encoding';

/**
 * Reads the `iss` of a token before anything is verified, only to route it to an issuer.
 * Cheap checks come first so a hostile token costs nothing: the length cap, then exactly
 * two dots counted in one pass (Fulcio GHSA-f83f-xpx7-ffpw), then a strict RawURL base64
 * payload holding a JSON object with a string `iss`.
 */
export type UnverifiedIssuer =
  { readonly ok: true; readonly issuer: string } | { readonly ok: false; readonly reason: string };

export function readUnverifiedIssuer(token: string, maxTokenBytes: number): UnverifiedIssuer {
  if (token.length === 0) return { ok: false, reason: 'token missing' };
  if (token.length > maxTokenBytes)
    return { ok: false, reason: `token longer than ${maxTokenBytes} bytes` };
  let dots = 0;
  for (let i = 0; i < token.length; i++) if (token.charCodeAt(i) === 46) dots++;
  if (dots !== 2) return { ok: false, reason: `token has ${dots + 1} parts, want 3` };
  const payloadPart = token.slice(token.indexOf('.') + 1, token.lastIndexOf('.'));
  const payload = decodeBase64UrlStrict(payloadPart);
  if (payload === undefined) return { ok: false, reason: 'token payload is not RawURL base64' };
  let claims: unknown;
  try {
    claims = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'token payload is not JSON' };
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
    return { ok: false, reason: 'token payload is not a JSON object' };
  }
  const iss = (claims as Record<string, unknown>).iss;
  if (typeof iss !== 'string' || iss.length === 0)
    return { ok: false, reason: 'token has no iss claim' };
  return { ok: true, issuer: iss };
}
