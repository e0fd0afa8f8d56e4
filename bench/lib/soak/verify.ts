import { X509Certificate } from 'node:crypto';
import type { CtLogKey } from '../../../services/common/ct/sct';
import { verifyEmbeddedSct } from './sct';

/**
 * Checks every certificate the soak receives, with node:crypto (one signature check each,
 * cheap next to the issuance): the SAN is the identity of the token that asked, the key is
 * the key that was sent, the chain is the soak CA's chain and the leaf's signature verifies
 * with its issuing certificate (whose own link to the root was checked once, up front), the
 * validity covers now, and no serial number comes back twice across all replicas. With the
 * CT log on (`--ct`), each certificate must also carry the log's SCT, verified over the
 * precertificate entry (./sct.ts) and stamped within a minute of notBefore; the certificate
 * is kept for the final check of its entry in the log's tree (test/go/soak-ct-check).
 */

export interface Expected {
  readonly email: string;
  /** SPKI DER of the key that was sent. */
  readonly spki: Buffer;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The certificates of a v2 JSON answer or a v1 PEM chain, leaf first. A v2 answer is
 * `signedCertificateDetachedSct` without a CT log, `signedCertificateEmbeddedSct` with one;
 * the other shape counts as no certificate.
 */
export function certificatesOf(version: 'v1' | 'v2', body: string, embedded = false): string[] {
  if (version === 'v1') return body.match(PEM_BLOCK) ?? [];
  type Shape = { chain?: { certificates?: unknown } };
  const parsed = JSON.parse(body) as {
    signedCertificateDetachedSct?: Shape;
    signedCertificateEmbeddedSct?: Shape;
  };
  const list = (
    embedded ? parsed.signedCertificateEmbeddedSct : parsed.signedCertificateDetachedSct
  )?.chain?.certificates;
  return Array.isArray(list) ? list.filter((c): c is string => typeof c === 'string') : [];
}

/** Clock skew allowed between this process and the replicas (same machine: little). */
const SKEW_MS = 5000;

/** An SCT's timestamp lies within this of the certificate's notBefore (issue #17). */
const SCT_NOT_BEFORE_MS = 60_000;

export interface CtFigures {
  /** Certificates whose embedded SCT verified (all of the right ones, with --ct). */
  sctVerified: number;
  /** DER of every such certificate, for the final inclusion check. */
  readonly leaves: Buffer[];
  /** Highest leaf_index seen, and SCT timestamp minus notBefore (ms), smallest and largest. */
  maxLeafIndex: number;
  minSkewMs: number;
  maxSkewMs: number;
}

export class CertificateChecker {
  private readonly issuing: X509Certificate;
  private readonly issuingSpki: Buffer;
  private readonly chainDer: readonly Buffer[];
  private readonly serials = new Set<string>();
  checked = 0;
  readonly ctFigures: CtFigures = {
    sctVerified: 0,
    leaves: [],
    maxLeafIndex: -1,
    minSkewMs: Infinity,
    maxSkewMs: -Infinity,
  };

  constructor(
    chain: readonly X509Certificate[],
    /** The CT log's key: every certificate must then embed its verified SCT. */
    readonly ctLog?: CtLogKey,
  ) {
    this.issuing = chain[0]!;
    this.issuingSpki = this.issuing.publicKey.export({ type: 'spki', format: 'der' });
    this.chainDer = chain.map((c) => c.raw);
  }

  /** undefined when the certificate is right; else what is wrong with it. */
  check(expected: Expected, pems: readonly string[]): string | undefined {
    this.checked++;
    if (pems.length !== this.chainDer.length + 1)
      return `chain length ${pems.length}, expected ${this.chainDer.length + 1}`;
    let leaf: X509Certificate;
    let rest: X509Certificate[];
    try {
      leaf = new X509Certificate(pems[0]!);
      rest = pems.slice(1).map((p) => new X509Certificate(p));
    } catch (err) {
      return `unparsable certificate: ${(err as Error).message}`;
    }
    if (!rest.every((c, i) => c.raw.equals(this.chainDer[i]!)))
      return 'chain is not the soak CA chain';
    if (!leaf.checkIssued(this.issuing) || !leaf.verify(this.issuing.publicKey))
      return 'leaf does not verify with the soak issuing certificate';
    if (leaf.subjectAltName !== `email:${expected.email}`)
      return `SAN ${JSON.stringify(leaf.subjectAltName)} is not email:${expected.email}`;
    const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
    if (!spki.equals(expected.spki)) return 'public key is not the key that was sent';
    const now = Date.now();
    if (Date.parse(leaf.validFrom) > now + SKEW_MS || Date.parse(leaf.validTo) < now - SKEW_MS)
      return `not valid now (${leaf.validFrom} .. ${leaf.validTo})`;
    if (this.serials.has(leaf.serialNumber)) return `serial ${leaf.serialNumber} issued twice`;
    this.serials.add(leaf.serialNumber);
    if (this.ctLog) {
      let timestamp: number;
      let leafIndex: number;
      try {
        const v = verifyEmbeddedSct(leaf.raw, this.issuingSpki, this.ctLog);
        timestamp = v.sct.timestamp;
        leafIndex = v.leafIndex;
      } catch (err) {
        return `SCT: ${(err as Error).message}`;
      }
      const skew = timestamp - Date.parse(leaf.validFrom);
      if (Math.abs(skew) > SCT_NOT_BEFORE_MS)
        return `SCT timestamp ${skew} ms from notBefore (more than a minute)`;
      const f = this.ctFigures;
      f.sctVerified++;
      f.leaves.push(leaf.raw);
      f.maxLeafIndex = Math.max(f.maxLeafIndex, leafIndex);
      f.minSkewMs = Math.min(f.minSkewMs, skew);
      f.maxSkewMs = Math.max(f.maxSkewMs, skew);
    }
    return undefined;
  }
}
