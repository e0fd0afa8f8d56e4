/**
 * One error family for the whole CA. A CaError carries a typed code; the table below maps
 * each code to the HTTP status, the gRPC numeric code and the fixed client message. The
 * messages are Fulcio's, byte for byte (fulcio-reference §1.5), so clients that match on
 * them keep working. `detail` is for the log only and never reaches a client.
 */
export type CaErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'invalid_csr'
  | 'invalid_public_key'
  | 'insecure_public_key'
  | 'invalid_signature'
  | 'unsupported_signature_algorithm'
  | 'algorithm_not_permitted'
  | 'identity_validation'
  | 'request_too_large'
  | 'not_found'
  | 'method_not_allowed'
  | 'rate_limited'
  | 'unavailable'
  | 'ca_backend'
  | 'trust_bundle'
  | 'ct_log'
  | 'configuration'
  | 'internal';

export interface ErrorMapping {
  readonly httpStatus: number;
  readonly grpcCode: number;
  /** Fixed client message; undefined means the error carries its own client-safe message. */
  readonly message?: string;
}

export const GRPC = {
  InvalidArgument: 3,
  NotFound: 5,
  ResourceExhausted: 8,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
} as const;

export const ERROR_TABLE: Readonly<Record<CaErrorCode, ErrorMapping>> = {
  invalid_request: { httpStatus: 400, grpcCode: GRPC.InvalidArgument },
  invalid_token: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'There was an error processing the identity token',
  },
  invalid_csr: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'The certificate signing request could not be parsed',
  },
  invalid_public_key: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'The public key supplied in the request could not be parsed',
  },
  insecure_public_key: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'The public key supplied in the request is insecure',
  },
  invalid_signature: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'The signature supplied in the request could not be verified',
  },
  // Fulcio passes these through with a formatted, client-safe message (★ in the reference).
  unsupported_signature_algorithm: { httpStatus: 400, grpcCode: GRPC.InvalidArgument },
  algorithm_not_permitted: { httpStatus: 400, grpcCode: GRPC.InvalidArgument },
  identity_validation: { httpStatus: 400, grpcCode: GRPC.InvalidArgument },
  request_too_large: {
    httpStatus: 400,
    grpcCode: GRPC.InvalidArgument,
    message: 'http: request body too large',
  },
  not_found: { httpStatus: 404, grpcCode: GRPC.NotFound, message: 'Not Found' },
  method_not_allowed: {
    httpStatus: 501,
    grpcCode: GRPC.Unimplemented,
    message: 'Method Not Allowed',
  },
  rate_limited: { httpStatus: 429, grpcCode: GRPC.ResourceExhausted },
  unavailable: { httpStatus: 503, grpcCode: GRPC.Unavailable },
  ca_backend: {
    httpStatus: 500,
    grpcCode: GRPC.Internal,
    message: 'error communicating with CA backend',
  },
  trust_bundle: {
    httpStatus: 500,
    grpcCode: GRPC.Internal,
    message: 'error retrieving trust bundle from CA backend',
  },
  // No SCT could be had (the log failed, timed out, or answered with an SCT that does not
  // verify): Fulcio's answer, with nothing issued.
  ct_log: {
    httpStatus: 500,
    grpcCode: GRPC.Internal,
    message: 'Error entering certificate in CTL',
  },
  configuration: {
    httpStatus: 500,
    grpcCode: GRPC.Internal,
    message: 'error loading fulcio configuration',
  },
  internal: { httpStatus: 500, grpcCode: GRPC.Internal, message: 'internal error' },
};

/**
 * The limit that refused a request, for the RateLimit and RateLimit-Policy response
 * headers: plain numbers and the limit's configured name, never an identity.
 */
export interface RateLimitInfo {
  readonly policy: string;
  /** Requests per window in the long run (the limit's count and period). */
  readonly quota: number;
  readonly windowSeconds: number;
  readonly remaining: number;
  readonly resetSeconds: number;
}

export interface CaErrorOptions {
  /** Only for codes without a fixed message: built solely from server-side constants. */
  readonly clientMessage?: string;
  readonly cause?: unknown;
  /** Sent as Retry-After (whole seconds). */
  readonly retryAfterSeconds?: number;
  readonly rateLimit?: RateLimitInfo;
}

export class CaError extends Error {
  readonly code: CaErrorCode;
  /** Why it failed, for the log. Never sent to the client. */
  readonly detail: string;
  readonly retryAfterSeconds: number | undefined;
  readonly rateLimit: RateLimitInfo | undefined;
  private readonly passthroughMessage: string | undefined;

  /**
   * @param detail log-only explanation
   * @param options.clientMessage only for codes without a fixed message: a message built
   *   solely from server-side constants, safe to show
   */
  constructor(code: CaErrorCode, detail: string, options?: CaErrorOptions) {
    super(
      `${code}: ${detail}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'CaError';
    this.code = code;
    this.detail = detail;
    this.passthroughMessage = options?.clientMessage;
    this.retryAfterSeconds = options?.retryAfterSeconds;
    this.rateLimit = options?.rateLimit;
  }

  get mapping(): ErrorMapping {
    return ERROR_TABLE[this.code];
  }

  get clientMessage(): string {
    return this.mapping.message ?? this.passthroughMessage ?? 'invalid request';
  }
}

export function isCaError(err: unknown): err is CaError {
  return err instanceof CaError;
}

/** Turns anything thrown into a CaError, keeping CaErrors as they are. */
export function asCaError(err: unknown, fallback: CaErrorCode, detail: string): CaError {
  if (isCaError(err)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new CaError(fallback, `${detail}: ${reason}`, { cause: err });
}
