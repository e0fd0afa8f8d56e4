import {
  FULCIO_EXTENSIONS,
  type CertificateExtensionValue,
  type CertificateIdentity,
  type FulcioExtensionValues,
} from '../certificate-identity/certificate-identity';
import { CaError } from '../common/errors';
import { GoUrlError, parseGoUrl, type GoUrl } from '../gocompat/go-url';

/**
 * What Fulcio's `principal.Embed` produces, as data: the extensions of
 * `certificate.Extensions.Render()` in its order, and the errors it passes through to the
 * client. Embed runs after the proof of possession; so does `certificateIdentity()`.
 */

/**
 * An error while building the certificate identity (Fulcio's `ValidationError` from
 * Embed): HTTP 400 with the raw message, as Fulcio sends it.
 */
export function embedError(message: string): CaError {
  return new CaError('identity_validation', message, { clientMessage: message });
}

/**
 * Fulcio's `Extensions.Render()`: 1.1, 1.2–1.6 as raw bytes, then 1.8–1.24 as
 * UTF8String, each left out when empty; an empty issuer fails as in Fulcio.
 */
export function renderExtensions(values: FulcioExtensionValues): CertificateExtensionValue[] {
  if (!values.Issuer) throw embedError('extensions must have a non-empty issuer url');
  const out: CertificateExtensionValue[] = [];
  for (const { field, oid, encoding } of FULCIO_EXTENSIONS) {
    const value = values[field];
    if (value) out.push({ oid, value, encoding });
  }
  return out;
}

/** Go's `url.Parse` for Embed: a parse failure is a 400 with Go's message. */
export function embedUrl(text: string): GoUrl {
  try {
    return parseGoUrl(text);
  } catch (err) {
    if (err instanceof GoUrlError) throw embedError(err.message);
    throw err;
  }
}

/**
 * The URI SAN Go's x509 writes for `url` (`url.String()`). An empty URI is refused here
 * (Fulcio would issue a certificate whose URI SAN is empty).
 */
export function uriSan(url: GoUrl): CertificateIdentity['san'] {
  const value = url.toString();
  if (!value) throw embedError('the certificate subject alternative name would be empty');
  return { type: 'uri', value };
}
