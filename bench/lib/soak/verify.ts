import { X509Certificate } from 'node:crypto';

/**
 * Checks every certificate the soak receives, with node:crypto (one signature check each,
 * cheap next to the issuance): the SAN is the identity of the token that asked, the key is
 * the key that was sent, the chain is the soak CA's chain and the leaf's signature verifies
 * with its issuing certificate (whose own link to the root was checked once, up front), the
 * validity covers now, and no serial number comes back twice across all replicas.
 */

export interface Expected {
  readonly email: string;
  /** SPKI DER of the key that was sent. */
  readonly spki: Buffer;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a v2 JSON answer or a v1 PEM chain, leaf first. */
export function certificatesOf(version: 'v1' | 'v2', body: string): string[] {
  if (version === 'v1') return body.match(PEM_BLOCK) ?? [];
  const parsed = JSON.parse(body) as {
    signedCertificateDetachedSct?: { chain?: { certificates?: unknown } };
  };
  const list = parsed.signedCertificateDetachedSct?.chain?.certificates;
  return Array.isArray(list) ? list.filter((c): c is string => typeof c === 'string') : [];
}

/** Clock skew allowed between this process and the replicas (same machine: little). */
const SKEW_MS = 5000;

export class CertificateChecker {
  private readonly issuing: X509Certificate;
  private readonly chainDer: readonly Buffer[];
  private readonly serials = new Set<string>();
  checked = 0;

  constructor(chain: readonly X509Certificate[]) {
    this.issuing = chain[0]!;
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
    return undefined;
  }
}
