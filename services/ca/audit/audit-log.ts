import { X509Certificate, createHash } from 'node:crypto';
import pino from 'pino';
import type { CertificateIdentity } from '../certificate-identity/certificate-identity';
import { baseLoggerOptions } from '../../common/logger';

/**
 * The audit log, written where things happen (as Boulder does): the CA writes a line for
 * the certificate it is about to sign, then one for the result — the certificate issued, or
 * the failure; the registration authority writes one for a request it refuses (a client
 * error) or that fails before it reaches the CA. It is its own pino instance with its own
 * destination, so a log pipeline can ship it apart from the operational log; every line
 * carries `log: "audit"`.
 *
 * What it never holds: an identity token, a proof of possession, a CSR or any key. It gets
 * only the fields below (the certificate is reduced to fingerprints and names here), and
 * the operational log's censoring of secret keys applies as a second line of defence.
 */

export type AuditLogger = pino.Logger;

/**
 * An audit logger writing to `file` (appended, created with its folder if missing) or, by
 * default, to stdout next to the operational log, told apart by `log: "audit"`. Writes are
 * synchronous: an audit line is on its way before the client gets its certificate.
 */
export function createAuditLogger(
  options: { file?: string | undefined; destination?: pino.DestinationStream } = {},
): AuditLogger {
  const loggerOptions = baseLoggerOptions('info', { service: 'mayfly', log: 'audit' });
  const destination =
    options.destination ??
    (options.file
      ? pino.destination({ dest: options.file, append: true, mkdir: true, sync: true })
      : pino.destination({ dest: 1, sync: true }));
  return pino(loggerOptions, destination);
}

/** Where a request came from, as its transport saw it. */
export interface AuditRequest {
  readonly requestId: string;
  /** The API route (`/api/v2/signingCert`, `/api/v1/signingCert`), or the caller's name. */
  readonly route: string;
  /** The TCP peer's address. */
  readonly clientIp: string | undefined;
  /** The client address from X-Forwarded-For, when a trusted proxy set one that differs. */
  readonly forwardedFor?: string | undefined;
}

export interface IssuedCertificateRecord {
  readonly der: Uint8Array;
  /** Lower-case hex. */
  readonly serial: string;
  readonly identity: CertificateIdentity;
  /** The token's verified `iss`. */
  readonly issuer: string;
  readonly issuerType: string;
  /** The token's `sub`. */
  readonly subject: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /**
   * The certified key as the CA already knows it (DER SPKI and `keyAlgorithmOf`'s name):
   * given, the line is written without parsing the certificate back, which would cost
   * more than the CA's signature.
   */
  readonly publicKey?: { readonly spki: Uint8Array; readonly algorithm: string };
}

/** What the CA is about to sign: the certificate's content, before the signature. */
export type SigningRecord = Omit<IssuedCertificateRecord, 'der' | 'publicKey'> & {
  readonly publicKey: { readonly spki: Uint8Array; readonly algorithm: string };
};

export interface RefusalRecord {
  /** The refusal class: token, key, proof, csr, algorithm, identity, request, rate_limit. */
  readonly reason: string;
  /** The error code behind it. */
  readonly code: string;
  readonly status: number;
  /** For token refusals: expired, audience, signature, unknown_issuer, unknown_kid, ... */
  readonly tokenFailure?: string | undefined;
  /** The issuer the token named, when it is a configured one. */
  readonly issuer?: string | undefined;
}

export interface FailureRecord {
  readonly code: string;
  readonly status: number;
  readonly issuer?: string | undefined;
  /** The serial of the certificate the CA failed to issue (lower-case hex), once it had one. */
  readonly serial?: string | undefined;
}

const CURVES: Readonly<Record<string, string>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/** `ecdsa-P-256`, `rsa-3072`, `ed25519`: the leaf key's algorithm and size. */
export function keyAlgorithmOf(certificate: X509Certificate): string {
  const key = certificate.publicKey;
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = details?.namedCurve ?? 'unknown';
      return `ecdsa-${CURVES[curve] ?? curve}`;
    }
    case 'rsa':
    case 'rsa-pss':
      return `${key.asymmetricKeyType}-${details?.modulusLength ?? 0}`;
    default:
      return key.asymmetricKeyType ?? 'unknown';
  }
}

/** keyAlgorithmOf's name from the key as the CA describes it (no certificate to parse). */
export function keyAlgorithmName(
  key:
    | { readonly kind: 'ecdsa'; readonly curve: string }
    | { readonly kind: 'rsa'; readonly bits: number }
    | { readonly kind: 'ed25519' },
): string {
  switch (key.kind) {
    case 'ecdsa':
      return `ecdsa-${key.curve}`;
    case 'rsa':
      return `rsa-${key.bits}`;
    case 'ed25519':
      return 'ed25519';
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function where(request: AuditRequest) {
  return {
    requestId: request.requestId,
    route: request.route,
    clientIp: request.clientIp,
    ...(request.forwardedFor !== undefined && request.forwardedFor !== request.clientIp
      ? { forwardedFor: request.forwardedFor }
      : {}),
  };
}

export class AuditLog {
  constructor(private readonly logger: AuditLogger) {}

  /** The CA is about to sign this certificate (the line before the signer is called). */
  signing(request: AuditRequest, record: SigningRecord): void {
    this.logger.info(
      {
        event: 'certificate_signing',
        ...where(request),
        serial: record.serial,
        san: { type: record.identity.san.type, value: record.identity.san.value },
        issuer: record.issuer,
        issuerType: record.issuerType,
        subject: record.subject,
        keyAlgorithm: record.publicKey.algorithm,
        publicKeySha256: sha256Hex(record.publicKey.spki),
        notBefore: record.notBefore.toISOString(),
        notAfter: record.notAfter.toISOString(),
      },
      'signing certificate',
    );
  }

  issued(request: AuditRequest, record: IssuedCertificateRecord): void {
    let key = record.publicKey;
    if (!key) {
      const certificate = new X509Certificate(record.der);
      key = {
        spki: certificate.publicKey.export({ type: 'spki', format: 'der' }),
        algorithm: keyAlgorithmOf(certificate),
      };
    }
    this.logger.info(
      {
        event: 'certificate_issued',
        ...where(request),
        serial: record.serial,
        san: { type: record.identity.san.type, value: record.identity.san.value },
        issuer: record.issuer,
        issuerType: record.issuerType,
        subject: record.subject,
        keyAlgorithm: key.algorithm,
        publicKeySha256: sha256Hex(key.spki),
        certificateSha256: sha256Hex(record.der),
        notBefore: record.notBefore.toISOString(),
        notAfter: record.notAfter.toISOString(),
      },
      'certificate issued',
    );
  }

  refused(request: AuditRequest, record: RefusalRecord): void {
    this.logger.info(
      {
        event: 'signing_refused',
        ...where(request),
        reason: record.reason,
        code: record.code,
        status: record.status,
        ...(record.tokenFailure === undefined ? {} : { tokenFailure: record.tokenFailure }),
        ...(record.issuer === undefined ? {} : { issuer: record.issuer }),
      },
      'signing request refused',
    );
  }

  failed(request: AuditRequest, record: FailureRecord): void {
    this.logger.info(
      {
        event: 'signing_failed',
        ...where(request),
        code: record.code,
        status: record.status,
        ...(record.issuer === undefined ? {} : { issuer: record.issuer }),
        ...(record.serial === undefined ? {} : { serial: record.serial }),
      },
      'signing request failed',
    );
  }
}
