import { makeKey, proofFor } from '../../helpers/keys';
import { v1Body, v2Body } from '../../helpers/mayfly';

/**
 * The client side of the fault tests: one signing request over the network to a running
 * mayfly, in either API version, timed, with what came back reduced to what the tests
 * assert (status, body, how many certificates left the CA).
 */

export type ApiVersion = 'v1' | 'v2';
export const VERSIONS: readonly ApiVersion[] = ['v2', 'v1'];

/** Fulcio's answer to every token problem, byte for byte. */
export const TOKEN_ERROR =
  '{"code":3,"message":"There was an error processing the identity token","details":[]}';
/** Fulcio's answer when the CA backend fails (code 13, Internal). */
export const CA_BACKEND_ERROR =
  '{"code":13,"message":"error communicating with CA backend","details":[]}';

export interface Answer {
  readonly status: number;
  readonly text: string;
  /** Milliseconds from sending the request to having the whole answer. */
  readonly ms: number;
  /** PEM certificates in the body (a leaf and its chain when one was issued). */
  readonly certificates: number;
  /** The X-Request-Id mayfly answered with (it names the request in its logs). */
  readonly requestId: string | null;
}

const key = makeKey('p256');

/** One signing request for `email` with `token`, the way cosign (v1) or sigstore-js (v2) sends it. */
export async function requestCertificate(
  baseUrl: string,
  token: string,
  version: ApiVersion,
  email: string,
  signal?: AbortSignal,
): Promise<Answer> {
  const proof = proofFor(key, email);
  const v2 = version === 'v2';
  const started = performance.now();
  const res = await fetch(`${baseUrl}/api/${version}/signingCert`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(v2 ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(v2 ? v2Body(token, key.pem, proof) : v1Body(key.pem, proof)),
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    ms: performance.now() - started,
    certificates: text.split('BEGIN CERTIFICATE').length - 1,
    requestId: res.headers.get('x-request-id'),
  };
}

/** The status an issued certificate comes with: 200 (v2) or 201 (v1, as Fulcio). */
export function issuedStatus(version: ApiVersion): number {
  return version === 'v2' ? 200 : 201;
}
