/** What a verified token proves, as plain data the CA can put into a certificate. */

import {
  FULCIO_OID,
  type CertificateExtensionValue,
  type CertificateIdentity,
} from '../common/certificate-identity';

export type { CertificateExtensionValue, CertificateIdentity };

export interface Principal {
  /** What the proof of possession signs: the email for email issuers, else `sub`. */
  readonly name: string;
  readonly issuer: string;
  readonly subject: string;
  readonly issuerType: string;
  certificateIdentity(): CertificateIdentity;
}

/**
 * The extensions every identity carries, in Fulcio's render order: 1.1 (raw) and 1.8
 * (UTF8String) hold the issuer, 1.24 the token's `sub`. Empty values are omitted, as
 * Fulcio does; the issuer is mandatory and checked by the caller.
 */
export function baseExtensions(issuer: string, subject: string): CertificateExtensionValue[] {
  const out: CertificateExtensionValue[] = [
    { oid: FULCIO_OID.issuerV1, value: issuer, encoding: 'raw' },
    { oid: FULCIO_OID.issuerV2, value: issuer, encoding: 'utf8' },
  ];
  if (subject) out.push({ oid: FULCIO_OID.tokenSubject, value: subject, encoding: 'utf8' });
  return out;
}
