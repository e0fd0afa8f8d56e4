/**
 * The object identifiers the CA writes into certificates (leaf template and CA certificate
 * builders alike): one table. The final check (lint.ts) reads with its own constants on
 * purpose, so that a wrong entry here cannot also pass there.
 */
export const OID = {
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  /** RFC 6962 §3.1: the critical poison that makes a precertificate unusable. */
  ctPoison: '1.3.6.1.4.1.11129.2.4.3',
  /** RFC 6962 §3.3: the embedded SignedCertificateTimestampList. */
  ctSctList: '1.3.6.1.4.1.11129.2.4.2',
} as const;
