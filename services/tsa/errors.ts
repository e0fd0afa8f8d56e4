/**
 * One error family for the TSA. A TsaError carries a typed code; the table maps each code to
 * the HTTP status and the fixed client message. Statuses and messages are those of Sigstore's
 * timestamp-authority (pkg/api/error.go and go-openapi's validation errors), so clients that
 * read them keep working. The reference sends no PKIStatusInfo for a refused request: it
 * answers an HTTP error with a JSON body `{"code":<status>,"message":<text>}`, and so do we.
 * `detail` is for the log only and never reaches a client.
 */
export type TsaErrorCode =
  | 'bad_request'
  | 'weak_hash'
  | 'digest_length'
  | 'unaccepted_policy'
  | 'unaccepted_extension'
  | 'too_large'
  | 'unsupported_media_type'
  | 'empty_body'
  | 'not_found'
  | 'method_not_allowed'
  | 'rate_limited'
  | 'clock_unsynchronised'
  | 'unavailable'
  | 'internal';

export interface TsaErrorMapping {
  readonly httpStatus: number;
  /** The `code` field of the JSON body (go-openapi uses 602 for a missing body). */
  readonly bodyCode: number;
  readonly message: string;
}

const GENERATE_FAILED = 'Error generating timestamp response';

export const TSA_ERROR_TABLE: Readonly<Record<TsaErrorCode, TsaErrorMapping>> = {
  bad_request: { httpStatus: 400, bodyCode: 400, message: GENERATE_FAILED },
  weak_hash: {
    httpStatus: 400,
    bodyCode: 400,
    message: 'Weak hash algorithm in timestamp request',
  },
  digest_length: {
    httpStatus: 400,
    bodyCode: 400,
    message: 'Message digest has incorrect length for specified algorithm',
  },
  unaccepted_policy: {
    httpStatus: 400,
    bodyCode: 400,
    message: 'unaccepted policy: requested TSA policy is not supported by the TSA',
  },
  unaccepted_extension: {
    httpStatus: 400,
    bodyCode: 400,
    message: 'unaccepted extension: requested extensions are not supported by the TSA',
  },
  too_large: { httpStatus: 400, bodyCode: 400, message: 'timestamp request is too large' },
  unsupported_media_type: { httpStatus: 415, bodyCode: 415, message: GENERATE_FAILED },
  empty_body: { httpStatus: 422, bodyCode: 602, message: 'request in body is required' },
  not_found: { httpStatus: 404, bodyCode: 404, message: 'path not found' },
  method_not_allowed: { httpStatus: 405, bodyCode: 405, message: 'method not allowed' },
  rate_limited: { httpStatus: 429, bodyCode: 429, message: 'rate limit exceeded' },
  clock_unsynchronised: {
    httpStatus: 503,
    bodyCode: 503,
    message: 'the timestamp authority clock is not synchronised',
  },
  unavailable: { httpStatus: 503, bodyCode: 503, message: 'service unavailable' },
  internal: { httpStatus: 500, bodyCode: 500, message: GENERATE_FAILED },
};

export class TsaError extends Error {
  constructor(
    readonly code: TsaErrorCode,
    /** For the log only. */
    readonly detail?: string,
  ) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = 'TsaError';
  }

  get mapping(): TsaErrorMapping {
    return TSA_ERROR_TABLE[this.code];
  }
}

/**
 * Errors go-openapi's runtime answers before the handler runs (routing, media type, missing
 * body) go out as `application/json`. The handler's own errors are rendered by the route's
 * producer, so the reference labels their JSON body `application/timestamp-reply`; clients
 * read the status, and we send what it sends. Neither has a trailing newline.
 */
const RUNTIME_ERRORS: ReadonlySet<TsaErrorCode> = new Set([
  'unsupported_media_type',
  'empty_body',
  'not_found',
  'method_not_allowed',
  'rate_limited',
  'clock_unsynchronised',
  'unavailable',
]);

export function errorContentType(code: TsaErrorCode): string {
  return RUNTIME_ERRORS.has(code) ? 'application/json' : 'application/timestamp-reply';
}

/**
 * The JSON body the reference server sends with an error (go-openapi's models.Error);
 * `message` replaces the table's for the runtime's messages that name the request.
 */
export function errorBody(code: TsaErrorCode, message?: string): string {
  const m = TSA_ERROR_TABLE[code];
  return JSON.stringify({ code: m.bodyCode, message: message ?? m.message });
}
