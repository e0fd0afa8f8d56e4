import { X509Certificate } from 'node:crypto';
import { poisonOf, tbsWithoutPoison } from './der';
import { sha256 } from './merkle';
import type { PendingEntry } from './storage/storage';

/**
 * RFC 6962 §4.1–4.2 submission checks. A chain is the end-entity certificate (or
 * precertificate) followed by its issuers; each link must verify, every issuer must be a CA,
 * and the chain must end in a configured root or one certificate short of one (the root is
 * then added). Precertificates carry the critical poison extension and are issued directly
 * by the CA: a precertificate-signing certificate (EKU 1.3.6.1.4.1.11129.2.4.4) is refused.
 * Anything else is a SubmissionError (a 400 with its fixed message).
 */

export class SubmissionError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'SubmissionError';
  }
}

export const MAX_CHAIN = 10;
const PRECERT_SIGNING_EKU = '1.3.6.1.4.1.11129.2.4.4';

export interface Root {
  readonly der: Buffer;
  readonly cert: X509Certificate;
  readonly fingerprint: Buffer;
}

export function parseRoots(ders: readonly Buffer[]): Root[] {
  return ders.map((der) => ({ der, cert: new X509Certificate(der), fingerprint: sha256(der) }));
}

export interface TemporalInterval {
  readonly start: Date;
  readonly end: Date;
}

const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The JSON body `{"chain":[base64 DER, ...]}` → DER certificates. */
export function parseChainBody(body: unknown): Buffer[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new SubmissionError('request body must be a JSON object with a "chain" array');
  const chain = (body as { chain?: unknown }).chain;
  if (!Array.isArray(chain)) throw new SubmissionError('missing "chain" array');
  if (chain.length === 0) throw new SubmissionError('empty chain');
  if (chain.length > MAX_CHAIN) throw new SubmissionError('chain too long');
  return chain.map((c, i) => {
    if (typeof c !== 'string' || c.length === 0 || !STD_B64.test(c))
      throw new SubmissionError('chain entries must be base64 DER certificates', `entry ${i}`);
    return Buffer.from(c, 'base64');
  });
}

function parseCert(der: Buffer, i: number): X509Certificate {
  try {
    const cert = new X509Certificate(der);
    if (!Buffer.from(cert.raw).equals(der)) throw new Error('trailing data');
    return cert;
  } catch (err) {
    throw new SubmissionError(
      'failed to parse certificate',
      `entry ${i}: ${(err as Error).message}`,
    );
  }
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

export function validateSubmission(
  ders: readonly Buffer[],
  precert: boolean,
  roots: readonly Root[],
  temporal: TemporalInterval,
): PendingEntry {
  const certs = ders.map(parseCert);
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!issuedBy(certs[i]!, certs[i + 1]!))
      throw new SubmissionError(
        'chain does not verify',
        `certificate ${i} is not issued by ${i + 1}`,
      );
    if (!certs[i + 1]!.ca)
      throw new SubmissionError('chain does not verify', `certificate ${i + 1} is not a CA`);
  }
  const issuers: Buffer[] = ders.slice(1).map((d) => Buffer.from(d));
  const last = certs[certs.length - 1]!;
  const lastDer = ders[ders.length - 1]!;
  const endsInRoot = roots.some((r) => r.der.equals(lastDer));
  if (!endsInRoot) {
    const root = roots.find((r) => r.cert.ca && issuedBy(last, r.cert));
    if (!root) throw new SubmissionError('chain does not end in an accepted root');
    issuers.push(root.der);
  } else if (certs.length === 1) {
    throw new SubmissionError('a root cannot be logged on its own');
  }
  const leaf = certs[0]!;
  const leafDer: Buffer = Buffer.from(ders[0]!);
  const notAfter = new Date(leaf.validTo);
  if (!(notAfter >= temporal.start && notAfter < temporal.end))
    throw new SubmissionError(
      "certificate's notAfter is outside this log's temporal interval",
      `notAfter ${notAfter.toISOString()}`,
    );
  let poison;
  try {
    poison = poisonOf(leafDer);
  } catch (err) {
    throw new SubmissionError('failed to parse certificate', (err as Error).message);
  }
  if (!precert) {
    if (poison.present)
      throw new SubmissionError('precertificates must be submitted with add-pre-chain');
    return {
      key: sha256(Buffer.from([0]), leafDer),
      isPrecert: false,
      signedEntry: leafDer,
      issuers,
    };
  }
  if (!poison.present)
    throw new SubmissionError('not a precertificate: the CT poison extension is missing');
  if (!poison.critical || !poison.wellFormed)
    throw new SubmissionError('the CT poison extension must be critical and hold ASN.1 NULL');
  const issuerCert = new X509Certificate(issuers[0]!);
  if ((issuerCert.keyUsage ?? []).includes(PRECERT_SIGNING_EKU))
    throw new SubmissionError(
      'precertificate signing certificates are not accepted: the CA must issue precertificates itself',
    );
  const issuerKeyHash = sha256(issuerCert.publicKey.export({ type: 'spki', format: 'der' }));
  const tbs = tbsWithoutPoison(leafDer);
  return {
    key: sha256(Buffer.from([1]), issuerKeyHash, tbs),
    isPrecert: true,
    signedEntry: tbs,
    issuerKeyHash,
    preCertificate: leafDer,
    issuers,
  };
}
