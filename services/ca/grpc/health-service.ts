import {
  status as grpcStatus,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { Metrics } from '../metrics/metrics';
import type {
  HealthCheckRequestMessage,
  HealthCheckResponseMessage,
  ServingStatus,
} from './messages';
import { OK_OUTCOME, startTimer } from './observe';
import { FULCIO_SERVICE, HEALTH_SERVICE } from '../../common/grpc/protos';

/**
 * grpc.health.v1.Health. Stricter than Fulcio's, which answers SERVING for any service
 * name and leaves List and Watch unimplemented: here Check knows the server ("") and the
 * services it serves, answers NOT_SERVING while the process drains or is otherwise not
 * ready (the same readiness as /readyz), and NOT_FOUND for any other name, as the health
 * protocol specifies; List lists them; Watch streams a service's status and each change.
 */

export interface HealthDeps {
  readonly ready: () => boolean;
  readonly metrics: Metrics;
  /** How often Watch looks for a change of readiness (default 1000 ms). */
  readonly watchIntervalMs?: number;
}

export const HEALTH_SERVICES: readonly string[] = ['', FULCIO_SERVICE, HEALTH_SERVICE];

export interface HealthService {
  readonly implementation: UntypedServiceImplementation;
  /** Ends every open Watch (at shutdown: an open stream would hold the drain up). */
  endWatches(): void;
}

export function createHealthService(deps: HealthDeps): HealthService {
  const watches = new Set<() => void>();
  const statusOf = (service: string): ServingStatus | undefined => {
    if (!HEALTH_SERVICES.includes(service)) return undefined;
    return deps.ready() ? 'SERVING' : 'NOT_SERVING';
  };

  const check = (
    call: ServerUnaryCall<HealthCheckRequestMessage, HealthCheckResponseMessage>,
    callback: sendUnaryData<HealthCheckResponseMessage>,
  ): void => {
    const done = startTimer(deps.metrics, HEALTH_SERVICE, 'Check', 'unary');
    const status = statusOf(call.request.service ?? '');
    if (status === undefined) {
      done({ grpcCode: grpcStatus.NOT_FOUND, httpStatus: 404 });
      callback({ code: grpcStatus.NOT_FOUND, details: 'unknown service' });
      return;
    }
    done(OK_OUTCOME);
    callback(null, { status });
  };

  const list = (
    _call: ServerUnaryCall<unknown, unknown>,
    callback: sendUnaryData<{ statuses: Record<string, HealthCheckResponseMessage> }>,
  ): void => {
    const done = startTimer(deps.metrics, HEALTH_SERVICE, 'List', 'unary');
    const statuses: Record<string, HealthCheckResponseMessage> = {};
    for (const service of HEALTH_SERVICES) statuses[service] = { status: statusOf(service)! };
    done(OK_OUTCOME);
    callback(null, { statuses });
  };

  const watch = (
    call: ServerWritableStream<HealthCheckRequestMessage, HealthCheckResponseMessage>,
  ): void => {
    const done = startTimer(deps.metrics, HEALTH_SERVICE, 'Watch', 'server_stream');
    const service = call.request.service ?? '';
    let last: ServingStatus | undefined;
    const send = () => {
      const status = statusOf(service) ?? 'SERVICE_UNKNOWN';
      if (status !== last) {
        last = status;
        call.write({ status });
      }
    };
    send();
    const timer = setInterval(send, deps.watchIntervalMs ?? 1000);
    timer.unref();
    let open = true;
    const finish = (code: number, httpStatus: number) => {
      if (!open) return;
      open = false;
      clearInterval(timer);
      watches.delete(end);
      done({ grpcCode: code, httpStatus });
    };
    const end = () => {
      // The status already sent stands; the stream ends with OK.
      finish(grpcStatus.OK, 200);
      call.end();
    };
    watches.add(end);
    call.once('cancelled', () => finish(grpcStatus.CANCELLED, 499));
  };

  return {
    implementation: { Check: check, List: list, Watch: watch },
    endWatches: () => {
      for (const end of [...watches]) end();
    },
  };
}
