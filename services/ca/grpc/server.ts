import { Server, ServerCredentials } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from '../../common/logger';
import type { SelfDraining } from '../lifecycle';
import { createFulcioService, type FulcioServiceDeps } from './fulcio-service';
import { createHealthService } from './health-service';
import { loadProtos } from '../../common/grpc/protos';
import { ReloadingTlsProvider, type GrpcTlsFiles } from './tls';

/**
 * The gRPC listener: Fulcio's dev.sigstore.fulcio.v2.CA, the standard health service and
 * server reflection, with message-size limits, keepalive and idle limits, optional TLS
 * (hot-reloaded) and a graceful stop that lets calls in flight finish.
 */

export interface GrpcSettings {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Largest request message accepted (larger: RESOURCE_EXHAUSTED before any parsing). */
  readonly maxReceiveBytes: number;
  /** Largest response message (a trust bundle of many chains stays well under 4 MiB). */
  readonly maxSendBytes: number;
  /** A connection without calls this long is closed (Fulcio: MaxConnectionIdle 30 s). */
  readonly idleTimeoutMs: number;
  /** Server keepalive pings on an open connection this often... */
  readonly keepaliveTimeMs: number;
  /** ...and the connection is dropped when a ping is not answered within this. */
  readonly keepaliveTimeoutMs: number;
  /** Concurrent calls per connection. */
  readonly maxConcurrentStreams: number;
  readonly tls?: GrpcTlsFiles | undefined;
}

export interface GrpcServerDeps extends FulcioServiceDeps {
  readonly ready: () => boolean;
  readonly onTlsReload?: (result: 'reloaded' | 'refused') => void;
}

export interface RunningGrpcServer {
  readonly server: Server;
  readonly port: number;
  readonly tls: boolean;
  /**
   * The listener as lifecycle.ts's drain drives it: close() stops accepting
   * and waits for calls in flight (GOAWAY, then the callback once they finished),
   * closeAllConnections() cuts what is left when the grace period is over.
   */
  readonly drainable: SelfDraining;
  /** Stops at once (tests, or after the grace period). */
  forceClose(): void;
}

export function grpcServerOptions(settings: GrpcSettings): Record<string, number> {
  return {
    'grpc.max_receive_message_length': settings.maxReceiveBytes,
    'grpc.max_send_message_length': settings.maxSendBytes,
    'grpc.max_connection_idle_ms': settings.idleTimeoutMs,
    'grpc.keepalive_time_ms': settings.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': settings.keepaliveTimeoutMs,
    'grpc.max_concurrent_streams': settings.maxConcurrentStreams,
  };
}

export async function startGrpcServer(
  deps: GrpcServerDeps,
  settings: GrpcSettings,
  logger: Logger,
): Promise<RunningGrpcServer> {
  const protos = loadProtos();
  const server = new Server(grpcServerOptions(settings));
  server.addService(protos.fulcio, createFulcioService(deps));
  const health = createHealthService({ ready: deps.ready, metrics: deps.metrics });
  server.addService(protos.health, health.implementation);
  new ReflectionService(protos.definition).addToServer(server);

  let provider: ReloadingTlsProvider | undefined;
  let credentials = ServerCredentials.createInsecure();
  if (settings.tls) {
    provider = new ReloadingTlsProvider(settings.tls, logger, deps.onTlsReload);
    provider.start();
    credentials = provider.credentials();
  }
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${settings.port}`, credentials, (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
  } catch (err) {
    provider?.close();
    throw err;
  }

  let closed = false;
  const forceClose = () => {
    closed = true;
    health.endWatches();
    provider?.close();
    server.forceShutdown();
  };
  const drainable: RunningGrpcServer['drainable'] = {
    close(callback: (err?: Error) => void) {
      // Open Watch streams would hold the drain up for the whole grace period.
      health.endWatches();
      server.tryShutdown((err) => {
        provider?.close();
        closed = true;
        callback(err);
      });
    },
    closeAllConnections() {
      if (!closed) forceClose();
    },
  };
  return { server, port, tls: provider !== undefined, drainable, forceClose };
}
