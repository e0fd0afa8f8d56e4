import { CaError } from '../common/errors';
import { decodeBase64Lenient } from '../../common/encoding';
import type { KeyMaterial, SigningRequest } from '../ra/registration-authority';

/**
 * Request bodies of both API versions, read the way grpc-gateway's protojson reads them:
 * lowerCamelCase or proto snake_case names, unknown fields ignored, `null` as unset,
 * `bytes` as lenient base64. Anything of the wrong shape is a 400 before any work.
 */

export const MALFORMED_BODY_MESSAGE = 'The request body could not be parsed';

type Obj = Record<string, unknown>;

function malformed(detail: string): CaError {
  return new CaError('invalid_request', detail, { clientMessage: MALFORMED_BODY_MESSAGE });
}

export function parseJsonBody(raw: Buffer | undefined): Obj {
  const text = raw && raw.length > 0 ? raw.toString('utf8') : '{}';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw malformed(`body is not JSON: ${err instanceof Error ? err.name : 'error'}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw malformed('body is not a JSON object');
  return value as Obj;
}

/** A field by its JSON name or proto name; both at once is an error, as in protojson. */
function member(obj: Obj, json: string, proto: string): unknown {
  const a = obj[json];
  const b = json === proto ? undefined : obj[proto];
  if (a !== undefined && a !== null && b !== undefined && b !== null)
    throw malformed(`duplicate field ${json}`);
  const value = a ?? b;
  return value === null ? undefined : value;
}

function message(obj: Obj, json: string, proto: string): Obj | undefined {
  const value = member(obj, json, proto);
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || Array.isArray(value))
    throw malformed(`${json} is not an object`);
  return value as Obj;
}

function string(obj: Obj, json: string, proto: string): string {
  const value = member(obj, json, proto);
  if (value === undefined) return '';
  if (typeof value !== 'string') throw malformed(`${json} is not a string`);
  return value;
}

function bytes(obj: Obj, json: string, proto: string): Buffer {
  const text = string(obj, json, proto);
  const decoded = decodeBase64Lenient(text);
  if (decoded === undefined) throw malformed(`${json} is not base64`);
  return decoded;
}

const ALGORITHMS = ['PUBLIC_KEY_ALGORITHM_UNSPECIFIED', 'RSA_PSS', 'ECDSA', 'ED25519'];

/** The enum is ignored (the key decides) but must still be a valid enum value. */
function checkAlgorithm(obj: Obj): void {
  const value = member(obj, 'algorithm', 'algorithm');
  if (value === undefined) return;
  if (typeof value === 'string' && ALGORITHMS.includes(value)) return;
  if (typeof value === 'number' && Number.isInteger(value)) return;
  throw malformed('publicKey.algorithm is not a PublicKeyAlgorithm');
}

/** grpc-gateway copies Authorization into metadata with the first "Bearer " removed. */
export function tokenFromAuthorization(header: string | undefined): string {
  return header === undefined ? '' : header.replace('Bearer ', '');
}

export function parseV2Request(body: Obj, authorization: string | undefined): SigningRequest {
  const credentials = message(body, 'credentials', 'credentials');
  const bodyToken = credentials
    ? string(credentials, 'oidcIdentityToken', 'oidc_identity_token')
    : '';
  const publicKeyRequest = message(body, 'publicKeyRequest', 'public_key_request');
  const csrPresent =
    member(body, 'certificateSigningRequest', 'certificate_signing_request') !== undefined;
  if (publicKeyRequest && csrPresent)
    throw malformed('both publicKeyRequest and certificateSigningRequest set');
  let key: KeyMaterial | undefined;
  if (publicKeyRequest) {
    const publicKey = message(publicKeyRequest, 'publicKey', 'public_key') ?? {};
    checkAlgorithm(publicKey);
    key = {
      kind: 'publicKey',
      content: string(publicKey, 'content', 'content'),
      proof: bytes(publicKeyRequest, 'proofOfPossession', 'proof_of_possession'),
    };
  } else if (csrPresent) {
    const csr = bytes(body, 'certificateSigningRequest', 'certificate_signing_request');
    // Fulcio looks at the CSR only when it is non-empty (len > 0); an empty one is no key at
    // all, refused as an unparsable public key (as gRPC's keyOf does).
    if (csr.length > 0) key = { kind: 'csr', pem: csr.toString('latin1') };
  }
  return { token: bodyToken || tokenFromAuthorization(authorization), key };
}

export function parseV1Request(body: Obj, authorization: string | undefined): SigningRequest {
  const token = tokenFromAuthorization(authorization);
  const csr = bytes(body, 'certificateSigningRequest', 'certificate_signing_request');
  const publicKey = message(body, 'publicKey', 'public_key');
  const proof = bytes(body, 'signedEmailAddress', 'signed_email_address');
  if (publicKey) {
    const algorithm = member(publicKey, 'algorithm', 'algorithm');
    if (algorithm !== undefined && typeof algorithm !== 'string')
      throw malformed('publicKey.algorithm is not a string');
  }
  const content = publicKey ? bytes(publicKey, 'content', 'content') : undefined;
  if (csr.length > 0) return { token, key: { kind: 'csr', pem: csr.toString('latin1') } };
  // Fulcio's legacy handler refuses a missing key before it looks at the token.
  if (!publicKey || content === undefined)
    throw new CaError('invalid_public_key', 'public key not provided');
  return { token, key: { kind: 'publicKey', content, proof } };
}
