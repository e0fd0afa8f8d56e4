import { GoUrlError, parseGoUrl, type GoUrl } from '../../gocompat/go-url';

/** Config checks the `uri` and `username` types share (their SubjectDomain). */

/** The URL as Go's url.Parse reads it, or Go's error message. */
export function goUrl(text: string): GoUrl | string {
  try {
    return parseGoUrl(text);
  } catch (err) {
    if (err instanceof GoUrlError) return err.message;
    throw err;
  }
}

/** Fulcio's validateAllowedDomain: equal hostnames, or the same last two labels. */
export function allowedDomain(subjectHost: string, issuerHost: string): string | undefined {
  if (subjectHost === issuerHost) return undefined;
  const s = subjectHost.split('.');
  const i = issuerHost.split('.');
  if (s.length < 2) return `URI hostname too short: ${subjectHost}`;
  if (i.length < 2) return `URI hostname too short: ${issuerHost}`;
  if (s.at(-1) === i.at(-1) && s.at(-2) === i.at(-2)) return undefined;
  return `hostname top-level and second-level domains do not match: ${subjectHost}, ${issuerHost}`;
}
