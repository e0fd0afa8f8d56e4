import { X509Certificate, createPublicKey } from 'node:crypto';
import type { CertificateIdentity } from '../common/certificate-identity';
import { CaError } from '../common/errors';
import type { CaSigner } from '../signer/signer';
import {
  assembleCertificate,
  keyIdentifier,
  signatureAlgorithmFor,
  subjectKeyIdOf,
  subjectNameDer,
} from './der';
import { buildLeafTbs } from './leaf';
import { lintCertificate } from './lint';
import { serialHex } from './serial';

/** Plain data the registration authority hands to the CA. */
export interface IssuanceRequest {
  readonly publicKey: Uint8Array;
  readonly identity: CertificateIdentity;
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IssuedCertificate {
  readonly der: Uint8Array;
  /** CA chain, issuing certificate first, root last. */
  readonly chain: readonly Uint8Array[];
  /** Lower-case hex, for logs and audit. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const MAX_SERIAL_OCTETS = 20;

/**
 * The CA proper. It trusts nothing about the request it gets: it re-checks the key,
 * the SAN and the validity, builds the certificate, signs it and parses it back.
 */
export class CertificateAuthority {
  private readonly issuing: X509Certificate;
  private readonly issuerName: Uint8Array;
  private readonly authorityKeyId: Uint8Array;

  constructor(private readonly signer: CaSigner) {
    const first = signer.chain[0];
    if (!first) throw new Error('CA chain is empty');
    this.issuing = new X509Certificate(first);
    this.issuerName = subjectNameDer(first);
    // The AKI names the issuing certificate's own SKI; verifiers (OpenSSL, Go) refuse a
    // leaf whose AKI differs from it. Only a CA certificate without an SKI gets a computed one.
    this.authorityKeyId =
      subjectKeyIdOf(first) ??
      keyIdentifier(new Uint8Array(this.issuing.publicKey.export({ format: 'der', type: 'spki' })));
  }

  /** The latest notAfter a leaf may have. */
  get notAfterLimit(): Date {
    return new Date(Date.parse(this.issuing.validTo));
  }

  trustBundle(): readonly (readonly Uint8Array[])[] {
    return [this.signer.chain];
  }

  async issue(request: IssuanceRequest): Promise<IssuedCertificate> {
    this.recheck(request);
    const algorithm = signatureAlgorithmFor(this.signer.publicKey, this.signer.hash);
    let der: Uint8Array;
    try {
      const tbs = buildLeafTbs({
        serial: request.serial,
        notBefore: request.notBefore,
        notAfter: request.notAfter,
        spki: request.publicKey,
        identity: request.identity,
        issuerName: this.issuerName,
        authorityKeyId: this.authorityKeyId,
        signatureAlgorithm: algorithm,
      });
      der = assembleCertificate(tbs, algorithm, await this.signer.sign(tbs));
    } catch (err) {
      throw new CaError('ca_backend', `signing failed: ${(err as Error).message}`, { cause: err });
    }
    const problems = lintCertificate(der, {
      ...request,
      spki: request.publicKey,
      issuer: this.issuing,
    });
    if (problems.length > 0) {
      throw new CaError(
        'ca_backend',
        `issued certificate failed its check: ${problems.join('; ')}`,
      );
    }
    return {
      der,
      chain: this.signer.chain,
      serial: serialHex(request.serial),
      notBefore: request.notBefore,
      notAfter: request.notAfter,
    };
  }

  private recheck(request: IssuanceRequest): void {
    const fail = (why: string): never => {
      throw new CaError('ca_backend', `issuance request refused: ${why}`);
    };
    try {
      const key = createPublicKey({
        key: Buffer.from(request.publicKey),
        format: 'der',
        type: 'spki',
      });
      if (!['ec', 'rsa', 'ed25519'].includes(key.asymmetricKeyType ?? ''))
        fail('unsupported key type');
    } catch (err) {
      if (err instanceof CaError) throw err;
      fail('public key does not parse');
    }
    if (
      request.serial.length === 0 ||
      request.serial.length > MAX_SERIAL_OCTETS ||
      (request.serial[0]! & 0x80) !== 0 ||
      request.serial.every((b) => b === 0)
    ) {
      fail('serial is not a positive integer of at most 20 octets');
    }
    if (request.notBefore.getTime() % 1000 !== 0 || request.notAfter.getTime() % 1000 !== 0)
      fail('validity not whole seconds');
    if (request.notAfter <= request.notBefore) fail('empty validity');
    if (request.notAfter > this.notAfterLimit) fail('validity outlives the issuing certificate');
    const san = request.identity.san.value;
    if (!san || [...san].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
      fail('empty or unprintable SAN');
    if (request.identity.san.type !== 'otherName' && /[^\u0020-\u007e]/.test(san))
      fail('SAN is not IA5');
    if (!request.identity.extensions.some((e) => e.oid === '1.3.6.1.4.1.57264.1.8' && e.value)) {
      fail('extensions must have a non-empty issuer url');
    }
  }
}
