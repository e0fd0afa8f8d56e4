import { join } from 'node:path';
import {
  credentials as grpcCredentials,
  loadPackageDefinition,
  Metadata,
  type ChannelCredentials,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { grpcSettings } from '../../services/ca/app';
import {
  startGrpcServer,
  type GrpcSettings,
  type RunningGrpcServer,
} from '../../services/ca/grpc/server';
import { silentLogger } from '../../services/common/logger';
import type { TestCa } from './mayfly';

/**
 * A gRPC client generated from fulcio.proto by @grpc/proto-loader on the client side (the
 * way a grpc-js user would), and a mayfly gRPC listener on 127.0.0.1 for a TestCa.
 */

const PROTO_DIR = join(__dirname, '../../services/common/grpc/proto');
const REFLECTION_PROTO = join(
  __dirname,
  '../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
);

type Ctor = new (address: string, credentials: ChannelCredentials, options?: object) => Client;

function lookup(root: unknown, name: string): Ctor {
  let node = root;
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

/** Client-side loading, deliberately with proto-loader defaults apart from bytes/oneofs. */
const clientPackage = loadPackageDefinition(
  loadSync([join(PROTO_DIR, 'fulcio.proto'), join(PROTO_DIR, 'health.proto'), REFLECTION_PROTO], {
    keepCase: false,
    enums: String,
    oneofs: true,
    defaults: true,
    longs: String,
  }),
);

export interface CallResult<T> {
  readonly value?: T;
  readonly error?: ServiceError;
  readonly headers?: Metadata;
}

export class GrpcTestClient {
  readonly ca: Client;
  readonly health: Client;
  readonly reflection: Client;

  constructor(
    readonly address: string,
    credentials: ChannelCredentials = grpcCredentials.createInsecure(),
    options: object = {},
  ) {
    this.ca = new (lookup(clientPackage, 'dev.sigstore.fulcio.v2.CA'))(
      address,
      credentials,
      options,
    );
    this.health = new (lookup(clientPackage, 'grpc.health.v1.Health'))(
      address,
      credentials,
      options,
    );
    this.reflection = new (lookup(clientPackage, 'grpc.reflection.v1.ServerReflection'))(
      address,
      credentials,
      options,
    );
  }

  /** One unary call; never rejects: the outcome is in the result. */
  call<T>(
    client: Client,
    method: string,
    request: unknown,
    metadata: Metadata = new Metadata(),
  ): Promise<CallResult<T>> {
    return new Promise((resolve) => {
      let headers: Metadata | undefined;
      const fn = (
        client as unknown as Record<
          string,
          (...args: unknown[]) => { on: (e: string, l: (m: Metadata) => void) => void }
        >
      )[method]!;
      const call = fn.call(
        client,
        request,
        metadata,
        { deadline: Date.now() + 30_000 },
        (error: ServiceError | null, value: T) =>
          resolve(error ? { error, headers } : { value, headers }),
      );
      call.on('metadata', (m: Metadata) => (headers = m));
    });
  }

  sign<T = SigningCertificateReply>(request: unknown, metadata?: Metadata) {
    return this.call<T>(this.ca, 'CreateSigningCertificate', request, metadata);
  }

  close(): void {
    this.ca.close();
    this.health.close();
    this.reflection.close();
  }
}

export interface SigningCertificateReply {
  readonly certificate?: string;
  readonly signedCertificateDetachedSct?: {
    chain: { certificates: string[] };
    signedCertificateTimestamp: Buffer;
  };
  readonly signedCertificateEmbeddedSct?: { chain: { certificates: string[] } };
}

export interface TestGrpc {
  readonly running: RunningGrpcServer;
  readonly client: GrpcTestClient;
  readonly address: string;
  close(): void;
}

/** Serves the TestCa's app over gRPC on a free loopback port, with a client for it. */
export async function startTestGrpc(
  ca: TestCa,
  settings: Partial<GrpcSettings> = {},
  clientCredentials?: ChannelCredentials,
): Promise<TestGrpc> {
  const running = await startGrpcServer(
    ca.app.grpc,
    { ...grpcSettings(ca.config, 0), host: '127.0.0.1', ...settings },
    silentLogger,
  );
  const address = `127.0.0.1:${running.port}`;
  const client = new GrpcTestClient(address, clientCredentials);
  return {
    running,
    client,
    address,
    close() {
      client.close();
      running.forceClose();
    },
  };
}

/** A v2 publicKeyRequest message (the gRPC form of helpers/mayfly v2Body: proof as bytes). */
export function v2Message(token: string | undefined, pem: string, proof: Buffer) {
  return {
    ...(token === undefined ? {} : { credentials: { oidcIdentityToken: token } }),
    publicKeyRequest: { publicKey: { algorithm: 'ECDSA', content: pem }, proofOfPossession: proof },
  };
}
