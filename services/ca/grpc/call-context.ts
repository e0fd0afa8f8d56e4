import { randomUUID } from 'node:crypto';
import { Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import proxyaddr from 'proxy-addr';
import type { Logger } from '../../common/logger';

/**
 * Who is calling, as the gRPC transport sees it: the request id (the caller's
 * `x-request-id` metadata when sane, as Fulcio's request-id middleware reads it; else a
 * fresh one, sent back in the response headers), a logger carrying it, the TCP peer's
 * address and the client address the per-client limit is keyed on (the peer's, or the
 * right-most `x-forwarded-for` entry a trusted proxy did not add, exactly as the HTTP API
 * computes it with the same proxy list).
 */

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface CallContext {
  /** `/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate`. */
  readonly path: string;
  readonly requestId: string;
  readonly log: Logger;
  /** The TCP peer's address (no port). */
  readonly peerIp: string | undefined;
  /** The client's address for the per-client limit (peerIp unless a trusted proxy says). */
  readonly clientIp: string | undefined;
}

/** `1.2.3.4:5678`, `[::1]:5678`, `ipv4:1.2.3.4:5678` or `ipv6:[::1]:5678` to the address. */
export function peerAddress(peer: string): string | undefined {
  const bare = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(bare);
  if (v6) return v6[1];
  const v4 = /^([^:]+)(?::\d+)?$/.exec(bare);
  return v4 ? v4[1] : undefined;
}

function first(metadata: Metadata, key: string): string | undefined {
  const values = metadata.get(key);
  return values.length === 1 && typeof values[0] === 'string' ? values[0] : undefined;
}

export type TrustFunction = (address: string, hop: number) => boolean;

export function compileTrust(trustedProxies: readonly string[] | undefined): TrustFunction {
  return proxyaddr.compile(trustedProxies?.length ? [...trustedProxies] : []);
}

export function callContext(
  call: Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getPeer' | 'sendMetadata'>,
  path: string,
  logger: Logger,
  trust: TrustFunction,
): CallContext {
  const incoming = first(call.metadata, 'x-request-id');
  const requestId = incoming && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
  const headers = new Metadata();
  headers.set('x-request-id', requestId);
  call.sendMetadata(headers);
  const peerIp = peerAddress(call.getPeer());
  const forwardedFor = call.metadata
    .get('x-forwarded-for')
    .filter((v: string | Buffer): v is string => typeof v === 'string')
    .join(',');
  // proxy-addr reads only these two fields of a request.
  const clientIp = proxyaddr(
    {
      socket: { remoteAddress: peerIp },
      headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {},
    } as never,
    trust,
  );
  return { path, requestId, log: logger.child({ requestId, transport: 'grpc' }), peerIp, clientIp };
}
