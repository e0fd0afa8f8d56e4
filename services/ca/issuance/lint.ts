import { X509Certificate } from 'node:crypto';
import type { CertificateIdentity } from '../common/certificate-identity';

/**
 * The last gate before a certificate leaves: it is parsed back by OpenSSL (independent of
 * the pkijs code that built it) and checked against what was asked for. A mismatch is a
 * CA bug and the certificate is discarded.
 */

export interface LintExpectation {
  readonly identity: CertificateIdentity;
  readonly spki: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuer: X509Certificate;
}

/** How node prints one SAN entry (it quotes values holding separators). */
function sanForms(identity: CertificateIdentity): string[] {
  const { type, value } = identity.san;
  if (type === 'otherName') return [];
  const prefix = type === 'email' ? 'email:' : 'URI:';
  return [`${prefix}${value}`, `${prefix}${JSON.stringify(value)}`];
}

export function lintCertificate(der: Uint8Array, expected: LintExpectation): string[] {
  const problems: string[] = [];
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    return [`certificate does not parse: ${(err as Error).message}`];
  }
  if (!cert.verify(expected.issuer.publicKey))
    problems.push('signature does not verify with the issuing key');
  if (!cert.checkIssued(expected.issuer))
    problems.push('issuer name does not match the issuing certificate');
  const spki = cert.publicKey.export({ format: 'der', type: 'spki' });
  if (!spki.equals(Buffer.from(expected.spki)))
    problems.push('public key differs from the request');
  if (Date.parse(cert.validFrom) !== expected.notBefore.getTime())
    problems.push('notBefore differs from the request');
  if (Date.parse(cert.validTo) !== expected.notAfter.getTime())
    problems.push('notAfter differs from the request');
  if (Date.parse(cert.validTo) > Date.parse(expected.issuer.validTo))
    problems.push('outlives the issuing certificate');
  if (cert.subject) problems.push('subject is not empty');
  if (cert.ca) problems.push('leaf is a CA');
  const san = cert.subjectAltName ?? '';
  const forms = sanForms(expected.identity);
  if (forms.length > 0 ? !forms.includes(san) : !san.toLowerCase().startsWith('othername:')) {
    problems.push('SAN differs from the identity');
  }
  if (!(cert.keyUsage ?? []).includes('1.3.6.1.5.5.7.3.3') || (cert.keyUsage ?? []).length !== 1) {
    problems.push('EKU is not exactly codeSigning');
  }
  return problems;
}
