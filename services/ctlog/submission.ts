import { X509Certificate, verify, type KeyObject } from 'node:crypto';
import { certificateParts, poisonOf, tbsWithoutPoison, type CertificateParts } from './der';
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

const B64_CHAR = /^[A-Za-z0-9+/]$/;

/**
 * Standard base64 with its padding, decoded; undefined for anything else: the strings
 * `^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$` matches (unused bits
 * of the last character may be set, as Go's StdEncoding allows). Buffer.from skips what is
 * not base64, so the decoding is encoded again and must give the same text, but for those
 * unused bits: cheaper than the regular expression, and the decoding was needed anyway.
 */
export function decodeStdBase64(text: string): Buffer | undefined {
  const der = Buffer.from(text, 'base64');
  const again = der.toString('base64');
  const n = text.length;
  if (again.length !== n) return undefined;
  let end = n;
  while (end > 0 && text.charCodeAt(end - 1) === 61) end--;
  let endAgain = n;
  while (endAgain > 0 && again.charCodeAt(endAgain - 1) === 61) endAgain--;
  if (end !== endAgain || end === 0) return undefined;
  // The last character before the padding may differ in its unused bits only: Buffer.from
  // decoded it, so it is a base64 character and `again` has it with those bits cleared.
  if (!B64_CHAR.test(text[end - 1]!)) return undefined;
  return text.slice(0, end - 1) === again.slice(0, end - 1) ? der : undefined;
}

/** The JSON body `{"chain":[base64 DER, ...]}` → DER certificates. */
export function parseChainBody(body: unknown): Buffer[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new SubmissionError('request body must be a JSON object with a "chain" array');
  const chain = (body as { chain?: unknown }).chain;
  if (!Array.isArray(chain)) throw new SubmissionError('missing "chain" array');
  if (chain.length === 0) throw new SubmissionError('empty chain');
  if (chain.length > MAX_CHAIN) throw new SubmissionError('chain too long');
  return chain.map((c, i) => {
    const der = typeof c === 'string' ? decodeStdBase64(c) : undefined;
    if (der === undefined)
      throw new SubmissionError('chain entries must be base64 DER certificates', `entry ${i}`);
    return der;
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

/** What the checks need of an issuer, worked out once per distinct DER. */
interface Issuer {
  readonly der: Buffer;
  readonly fingerprint: string;
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  readonly ca: boolean;
  readonly precertSigning: boolean;
  /** SHA-256 of the DER SPKI (RFC 6962 issuer_key_hash). */
  readonly keyHash: Buffer;
  /** DER of the subject Name, when our own walk could read it. */
  readonly subject: Buffer | undefined;
}

/**
 * Parsed issuers and verified issuer-to-issuer links, by DER fingerprint. A log sees the same
 * few intermediates and roots in every submission; parsing a certificate and building its key
 * object cost about 0.25 ms each in Node 20, more than the signature check itself. Both maps
 * hold pure functions of the bytes (a parse, a signature that verified), so sharing them
 * between log instances is safe; only successes are remembered, and each map is bounded.
 */
const MAX_CACHED = 1024;
const issuerCache = new Map<string, Issuer>();
const verifiedLinks = new Set<string>();

function remember<K>(map: Map<K, unknown> | Set<K>, key: K, value?: unknown): void {
  if (map.size >= MAX_CACHED) map.clear();
  if (map instanceof Map) map.set(key, value);
  else map.add(key);
}

function issuerOf(der: Buffer, i: number): Issuer {
  const fp = sha256(der).toString('hex');
  const hit = issuerCache.get(fp);
  if (hit) return hit;
  const cert = parseCert(der, i);
  const key = cert.publicKey;
  const issuer: Issuer = {
    der,
    fingerprint: fp,
    cert,
    key,
    ca: cert.ca,
    precertSigning: (cert.keyUsage ?? []).includes(PRECERT_SIGNING_EKU),
    keyHash: sha256(key.export({ type: 'spki', format: 'der' })),
    subject: subjectOf(der),
  };
  remember(issuerCache, fp, issuer);
  return issuer;
}

function subjectOf(der: Buffer): Buffer | undefined {
  try {
    return certificateParts(der).subject;
  } catch {
    return undefined;
  }
}

/** Signature AlgorithmIdentifiers (DER, hex) the fast path checks, and their hash. */
const SIGNATURE_HASHES = new Map<string, string | null>([
  ['300a06082a8648ce3d040302', 'sha256'], // ecdsa-with-SHA256
  ['300a06082a8648ce3d040303', 'sha384'],
  ['300a06082a8648ce3d040304', 'sha512'],
  ['300d06092a864886f70d01010b0500', 'sha256'], // sha256WithRSAEncryption
  ['300d06092a864886f70d01010c0500', 'sha384'],
  ['300d06092a864886f70d01010d0500', 'sha512'],
  ['300506032b6570', null], // Ed25519
]);

/**
 * The end-entity certificate of a submission, checked against a candidate issuer. A log's
 * hot path: parsing the certificate with X509Certificate costs more than checking its
 * signature, so when our strict outer walk (der.ts) reads it, the issuer's subject is the
 * very same bytes as its issuer name and the algorithm is a common one, the signature is
 * checked directly over the TBS with the issuer's cached key. Anything else (and an
 * exception) goes the full way through X509Certificate, as every issuer does.
 */
class Leaf {
  private cert: X509Certificate | undefined;
  readonly parts: CertificateParts | undefined;

  constructor(private readonly der: Buffer) {
    try {
      this.parts = certificateParts(der);
    } catch {
      this.parts = undefined;
      this.full(); // the full parse names the fault (or accepts what our walk would not)
    }
  }

  full(): X509Certificate {
    return (this.cert ??= parseCert(this.der, 0));
  }

  get notAfter(): Date {
    return this.parts?.notAfter ?? new Date(this.full().validTo);
  }

  issuedBy(parent: Issuer): boolean {
    const parts = this.parts;
    const hash = parts && SIGNATURE_HASHES.get(parts.signatureAlgorithm.toString('hex'));
    if (parts && hash !== undefined && parent.subject?.equals(parts.issuer)) {
      try {
        return verify(hash, parts.tbs, parent.key, parts.signature);
      } catch {
        // The full way below decides.
      }
    }
    return issuedBy(this.full(), parent);
  }
}

function issuedBy(child: X509Certificate, parent: Issuer): boolean {
  try {
    return child.checkIssued(parent.cert) && child.verify(parent.key);
  } catch {
    return false;
  }
}

/** `issuedBy` for two issuers, remembered when it holds. */
function issuerIssuedBy(child: Issuer, parent: Issuer): boolean {
  const link = `${child.fingerprint}>${parent.fingerprint}`;
  if (verifiedLinks.has(link)) return true;
  if (!issuedBy(child.cert, parent)) return false;
  remember(verifiedLinks, link);
  return true;
}

export function validateSubmission(
  ders: readonly Buffer[],
  precert: boolean,
  roots: readonly Root[],
  temporal: TemporalInterval,
): PendingEntry {
  const leaf = new Leaf(ders[0]!);
  const chain = ders.slice(1).map((d, i) => issuerOf(d, i + 1));
  for (let i = 0; i < chain.length; i++) {
    const parent = chain[i]!;
    const ok = i === 0 ? leaf.issuedBy(parent) : issuerIssuedBy(chain[i - 1]!, parent);
    if (!ok)
      throw new SubmissionError(
        'chain does not verify',
        `certificate ${i} is not issued by ${i + 1}`,
      );
    if (!parent.ca)
      throw new SubmissionError('chain does not verify', `certificate ${i + 1} is not a CA`);
  }
  const issuers: Buffer[] = ders.slice(1).map((d) => Buffer.from(d));
  const lastDer = ders[ders.length - 1]!;
  const endsInRoot = roots.some((r) => r.der.equals(lastDer));
  if (!endsInRoot) {
    const last = chain.at(-1);
    const root = roots.find((r) => {
      if (!r.cert.ca) return false;
      const parent = issuerOf(r.der, -1);
      return last ? issuerIssuedBy(last, parent) : leaf.issuedBy(parent);
    });
    if (!root) throw new SubmissionError('chain does not end in an accepted root');
    issuers.push(root.der);
  } else if (ders.length === 1) {
    throw new SubmissionError('a root cannot be logged on its own');
  }
  const leafDer: Buffer = Buffer.from(ders[0]!);
  const notAfter = leaf.notAfter;
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
  const issuer = issuerOf(issuers[0]!, 1);
  if (issuer.precertSigning)
    throw new SubmissionError(
      'precertificate signing certificates are not accepted: the CA must issue precertificates itself',
    );
  const issuerKeyHash = issuer.keyHash;
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
