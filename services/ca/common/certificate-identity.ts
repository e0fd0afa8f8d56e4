/**
 * The identity a certificate states, as plain data. identity/ produces it from a verified
 * token; issuance/ turns it into a SAN and extensions. It lives in common/ because neither
 * of those modules may import the other.
 */

export type SanType = 'email' | 'uri' | 'otherName';

export interface CertificateExtensionValue {
  readonly oid: string;
  readonly value: string;
  /** `raw`: the string's bytes are the extnValue (Fulcio OIDs .1.1–.1.6); `utf8`: DER UTF8String. */
  readonly encoding: 'utf8' | 'raw';
}

export interface CertificateIdentity {
  readonly san: { readonly type: SanType; readonly value: string };
  readonly extensions: readonly CertificateExtensionValue[];
}

export const FULCIO_OID = {
  issuerV1: '1.3.6.1.4.1.57264.1.1',
  /** Type-id of the username otherName SAN. */
  otherNameSan: '1.3.6.1.4.1.57264.1.7',
  issuerV2: '1.3.6.1.4.1.57264.1.8',
  tokenSubject: '1.3.6.1.4.1.57264.1.24',
} as const;
