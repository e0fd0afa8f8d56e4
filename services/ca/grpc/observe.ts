import { Metadata, type ServerErrorResponse } from '@grpc/grpc-js';
import { CaError, GRPC, isCaError } from '../common/errors';
import type { Metrics } from '../metrics/metrics';
import type { CallContext } from './call-context';

/**
 * Outcome of one gRPC call: its status from the one error table (services/ca/common/
 * errors.ts: the gRPC code and the fixed client message of each CaError code), and its
 * metrics. Each call is counted twice: in go-grpc-prometheus's families under `mayfly_`
 * (by service, method and status name, as Fulcio's own SLOs count), and in the request
 * histogram the HTTP API uses, with the call's path as the route, POST as the method and the
 * HTTP status Fulcio's gateway gives that error as the code, so the SLO rules built on
 * mayfly_http_request_duration_seconds see gRPC traffic too.
 */

/** go's codes.Code.String() of the codes the table uses, and OK. */
const CODE_NAMES: ReadonlyMap<number, string> = new Map([
  [0, 'OK'],
  ...Object.entries(GRPC).map(([name, code]) => [code, name] as const),
]);

export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `Code(${code})`;
}

/** Anything thrown, as the CaError whose row answers it (unknown errors: internal). */
export function toCaError(err: unknown): CaError {
  if (isCaError(err)) return err;
  return new CaError(
    'internal',
    `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
}

/** The status a client gets: the row's gRPC code and fixed message, never the detail. */
export function statusOf(error: CaError): ServerErrorResponse {
  const metadata = new Metadata();
  if (error.retryAfterSeconds !== undefined)
    metadata.set('retry-after', String(error.retryAfterSeconds));
  const status = Object.assign(new Error(error.clientMessage), {
    code: error.mapping.grpcCode,
    details: error.clientMessage,
    metadata,
  });
  return status;
}

/** Logs a failed call the way the HTTP API logs a failed request. */
export function logFailure(ctx: CallContext, error: CaError): void {
  const entry = { code: error.code, detail: error.detail, path: ctx.path };
  if (error.mapping.httpStatus >= 500) ctx.log.error(entry, 'request failed');
  else ctx.log.warn(entry, 'request refused');
}

export type CallType = 'unary' | 'server_stream';

export function startTimer(
  metrics: Metrics,
  service: string,
  method: string,
  type: CallType,
): (outcome: { grpcCode: number; httpStatus: number }) => void {
  const started = process.hrtime.bigint();
  return ({ grpcCode, httpStatus }) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const labels = {
      grpc_service: service,
      grpc_method: method,
      grpc_code: codeName(grpcCode),
      grpc_type: type,
    };
    metrics.grpcHandled.inc(labels);
    metrics.grpcHandlingSeconds.observe(labels, seconds);
    metrics.httpRequestDuration.observe(
      { route: `/${service}/${method}`, method: 'POST', code: String(httpStatus) },
      seconds,
    );
  };
}

export const OK_OUTCOME = { grpcCode: 0, httpStatus: 200 } as const;

export function outcomeOf(error: CaError): { grpcCode: number; httpStatus: number } {
  return { grpcCode: error.mapping.grpcCode, httpStatus: error.mapping.httpStatus };
}
