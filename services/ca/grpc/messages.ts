/**
 * fulcio.proto's messages as @grpc/proto-loader hands them over (LOADER_OPTIONS: camelCase
 * names, bytes as Buffer, enums as names, unset fields absent, `oneofs` naming the member
 * that is set). Everything is optional: a peer may send any subset.
 */

export interface CreateSigningCertificateRequestMessage {
  credentials?: { oidcIdentityToken?: string; credentials?: string } | null;
  publicKeyRequest?: PublicKeyRequestMessage | null;
  certificateSigningRequest?: Buffer | null;
  /** The oneof member that is set. */
  key?: 'publicKeyRequest' | 'certificateSigningRequest';
}

export interface PublicKeyRequestMessage {
  publicKey?: { algorithm?: string | number; content?: string } | null;
  proofOfPossession?: Buffer | null;
}

export interface CertificateChainMessage {
  certificates: string[];
}

export type SigningCertificateMessage =
  | {
      signedCertificateDetachedSct: {
        chain: CertificateChainMessage;
        signedCertificateTimestamp: Buffer;
      };
    }
  | { signedCertificateEmbeddedSct: { chain: CertificateChainMessage } };

export interface TrustBundleMessage {
  chains: CertificateChainMessage[];
}

export interface OidcIssuerMessage {
  issuerUrl?: string;
  wildcardIssuerUrl?: string;
  audience: string;
  challengeClaim: string;
  spiffeTrustDomain: string;
  issuerType: string;
  subjectDomain: string;
  skipEmailVerification: boolean;
}

export interface ConfigurationMessage {
  issuers: OidcIssuerMessage[];
}

export interface HealthCheckRequestMessage {
  service?: string;
}

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface HealthCheckResponseMessage {
  status: ServingStatus;
}
