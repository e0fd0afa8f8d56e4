import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  credentials as grpcCredentials,
  status,
  type ChannelCredentials,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadClients } from '../common/grpc/protos';
import { ProbeFailure, checkIssued, freshKey, verifyLinks, type ProbeKey } from './probes';

/**
 * Fulcio's gRPC API as a gRPC client (sigstore-java, Sigstore's own prober) uses it:
 * GetTrustBundle, and CreateSigningCertificate with a fresh key, the token in the request's
 * credentials field and the certificate chain checked as the HTTP probes check it.
 */

export interface GrpcProbeTarget {
  /** host:port of the CA's gRPC listener. */
  readonly address: string;
  readonly tls: boolean;
  /** PEM roots for the gRPC server's TLS certificate; unset: the system's. */
  readonly caFile?: string | undefined;
  readonly timeoutMs: number;
}

export const GRPC_TRUST_BUNDLE = '/dev.sigstore.fulcio.v2.CA/GetTrustBundle';
export const GRPC_SIGNING_CERT = '/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate';

export class GrpcProbes {
  private readonly client: Client;

  constructor(private readonly target: GrpcProbeTarget) {
    let creds: ChannelCredentials = grpcCredentials.createInsecure();
    if (target.tls)
      creds = grpcCredentials.createSsl(target.caFile ? readFileSync(target.caFile) : null);
    this.client = new (loadClients().CA)(target.address, creds);
  }

  close(): void {
    this.client.close();
  }

  private call<T>(method: string, request: object): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = (this.client as unknown as Record<string, (...args: unknown[]) => unknown>)[
        method
      ]!;
      fn.call(
        this.client,
        request,
        { deadline: Date.now() + this.target.timeoutMs },
        (err: ServiceError | null, value: T) => {
          if (!err) return resolve(value);
          if (err.code === status.DEADLINE_EXCEEDED)
            return reject(
              new ProbeFailure('timeout', `no answer within ${this.target.timeoutMs} ms`),
            );
          if (err.code === status.UNAVAILABLE)
            return reject(new ProbeFailure('connection', `unavailable: ${err.details}`));
          reject(new ProbeFailure('status', `gRPC ${status[err.code]}: ${err.details}`));
        },
      );
    });
  }

  /** GetTrustBundle: every chain links up to its root; answers the roots. */
  async trustBundle(): Promise<X509Certificate[]> {
    const answer = await this.call<{ chains?: { certificates?: string[] }[] }>(
      'GetTrustBundle',
      {},
    );
    const chains = answer.chains ?? [];
    if (chains.length === 0) throw new ProbeFailure('response', 'no chains in the trust bundle');
    return chains.map((chain, i) => {
      const pems = chain.certificates ?? [];
      if (pems.length === 0) throw new ProbeFailure('response', `trust bundle chain ${i} is empty`);
      const certs = pems.map(parse);
      verifyLinks(certs);
      return certs[certs.length - 1]!;
    });
  }

  /** CreateSigningCertificate with a fresh P-256 key: a chain for that key, to a trusted root. */
  async signingCert(
    token: string,
    roots: readonly X509Certificate[],
    now: () => Date,
  ): Promise<void> {
    const key: ProbeKey = freshKey(token);
    const answer = await this.call<{
      signedCertificateDetachedSct?: { chain?: { certificates?: string[] } };
      signedCertificateEmbeddedSct?: { chain?: { certificates?: string[] } };
    }>('CreateSigningCertificate', {
      credentials: { oidcIdentityToken: token },
      publicKeyRequest: {
        publicKey: { algorithm: 'ECDSA', content: key.pem },
        proofOfPossession: key.proof,
      },
    });
    const pems =
      answer.signedCertificateDetachedSct?.chain?.certificates ??
      answer.signedCertificateEmbeddedSct?.chain?.certificates;
    if (!pems) throw new ProbeFailure('response', 'no certificate chain in the answer');
    checkIssued(pems.map(parse), key, roots, now());
  }
}

function parse(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new ProbeFailure('response', 'a certificate does not parse');
  }
}
