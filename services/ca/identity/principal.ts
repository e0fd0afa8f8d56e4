/** What a verified token proves, as plain data the CA can put into a certificate. */

import type {
  CertificateExtensionValue,
  CertificateIdentity,
} from '../certificate-identity/certificate-identity';

export type { CertificateExtensionValue, CertificateIdentity };

export interface Principal {
  /** What the proof of possession signs: the email for email issuers, else `sub`. */
  readonly name: string;
  readonly issuer: string;
  readonly subject: string;
  readonly issuerType: string;
  /**
   * The certificate's SAN and extensions (Fulcio's `Embed`). It runs after the proof of
   * possession, and its failures are 400s with Fulcio's message (CaError
   * `identity_validation`).
   */
  certificateIdentity(): CertificateIdentity;
}

/** A principal whose certificate identity is computed when it is asked for. */
export class LazyPrincipal implements Principal {
  constructor(
    readonly issuerType: string,
    readonly name: string,
    readonly issuer: string,
    readonly subject: string,
    private readonly embed: () => CertificateIdentity,
  ) {}

  certificateIdentity(): CertificateIdentity {
    return this.embed();
  }
}
