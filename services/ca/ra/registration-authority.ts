import { randomUUID } from 'node:crypto';
import type { Clock } from '../../common/clock';
import type { AuditLog, AuditRequest } from '../audit/audit-log';
import { CaError, isCaError } from '../common/errors';
import { nextTurn } from '../../common/next-turn';
import type { Logger } from '../../common/logger';
import { TokenRefusedError } from '../identity/issuer-pool';
import type { Principal } from '../identity/principal';
import type { Metrics } from '../metrics/metrics';
import type { CertificateAuthority, IssuedCertificate } from '../issuance/certificate-authority';
import { randomSerial } from '../issuance/serial';
import type { AlgorithmPolicy } from '../pop/algorithms';
import { verifyCsr } from '../pop/csr';
import { verifyProof } from '../pop/proof';
import { importPublicKey, type SubjectPublicKey } from '../pop/public-key';
import type { LimitTable, Transaction } from '../../common/ratelimit/limits';
import {
  RateLimitUnavailableError,
  retryAfterSeconds,
  type Decision,
} from '../../common/ratelimit/limiter';
import { LIMIT, clientId, identityId } from './rate-limits';

/**
 * The request flow of POST signingCert, independent of any transport: verify the identity,
 * then the key and its proof, then spend the identity's rate limits, then let the CA issue.
 * The order is Fulcio's, so that every failure gets the same answer it would get from Fulcio;
 * the limits come after both verifications so a forged token or a stolen token without
 * its key cannot drain somebody else's bucket.
 *
 * The RA reports its decision where it takes it, whoever called: a certificate issued is
 * counted; a refusal (or a failure before the CA) is counted and audited. The CA audits what
 * it signs itself. `handle` is the whole signing route for every transport (HTTP today,
 * gRPC tomorrow): admit the client, read its request, run the flow.
 */

export type KeyMaterial =
  | {
      readonly kind: 'publicKey';
      readonly content: Uint8Array | string;
      readonly proof: Uint8Array;
    }
  | { readonly kind: 'csr'; readonly pem: string };

export interface SigningRequest {
  readonly token: string;
  /** Undefined when the request named no key at all. */
  readonly key: KeyMaterial | undefined;
}

export interface Authenticator {
  authenticate(token: string): Promise<Principal>;
  /** The configured issuer (URL or meta-issuer pattern) an `iss` belongs to (metric label). */
  issuerLabel?(iss: string): string | undefined;
  /** A token's unverified `iss`, only when it names a configured issuer (audit of refusals). */
  claimedIssuer?(token: string): string | undefined;
}

/** Where a signing request came from, as its transport saw it. */
export interface RequestOrigin extends AuditRequest {
  /** The client address the per-client-ip limit buckets by (after trusted proxies). */
  readonly clientAddress?: string | undefined;
  /** The operational logger of this request (with its request id). */
  readonly log?: Logger;
}

/** The decisions the RA counts. */
export type SigningMetrics = Pick<Metrics, 'certificatesIssued' | 'refusals'>;

/** The refusal class of each client error (mayfly_signing_refusals_total, the audit line). */
export const REFUSAL_REASON: Partial<Record<CaError['code'], string>> = {
  invalid_token: 'token',
  invalid_public_key: 'key',
  insecure_public_key: 'key',
  invalid_signature: 'proof',
  invalid_csr: 'csr',
  unsupported_signature_algorithm: 'csr',
  algorithm_not_permitted: 'algorithm',
  identity_validation: 'identity',
  invalid_request: 'request',
  request_too_large: 'request',
  rate_limited: 'rate_limit',
};

export interface SigningResult extends IssuedCertificate {
  readonly principal: Principal;
  /** The certified key (canonical DER SPKI and algorithm), for the audit line. */
  readonly publicKey: Pick<SubjectPublicKey, 'spki' | 'algorithm'>;
}

export interface Limiter {
  spend(transactions: readonly Transaction[]): Promise<Decision>;
}

export interface RateLimiting {
  readonly limiter: Limiter;
  /** The limits in force now (they reload). */
  readonly limits: () => LimitTable;
  /** Jitter source for Retry-After; Math.random unless a test pins it. */
  readonly random?: () => number;
}

export interface RegistrationAuthorityDeps {
  readonly identity: Authenticator;
  readonly rateLimiting?: RateLimiting;
  readonly ca: CertificateAuthority;
  readonly algorithms: AlgorithmPolicy;
  readonly clock: Clock;
  readonly lifetimeSeconds: number;
  readonly logger: Logger;
  /** Refusals and failures before the CA are audited here (the CA audits the rest). */
  readonly audit?: AuditLog;
  readonly metrics?: SigningMetrics;
  /** Yield to the event loop between stages (next-turn.ts); on unless turned off. */
  readonly stageBatching?: boolean;
}

/** What the RA learnt of a request before it failed, for the report. */
interface Progress {
  token?: string;
  /** The CA took the request: it audits the outcome itself. */
  reachedCa?: boolean;
}

export class RegistrationAuthority {
  private readonly turn: () => Promise<void>;

  constructor(private readonly deps: RegistrationAuthorityDeps) {
    this.turn = deps.stageBatching === false ? () => Promise.resolve() : nextTurn;
  }

  /**
   * The signing route, for every transport: the per-client-ip limit first (before the body
   * is read: a flood from one address costs no parsing), then `read` (the transport's body
   * reader and decoder, whose errors are CaErrors), then the flow. Every outcome is reported.
   */
  handle(origin: RequestOrigin, read: () => Promise<SigningRequest>): Promise<SigningResult> {
    return this.reported(origin, async (progress) => {
      await this.admitClient(origin.clientAddress);
      const request = await read();
      progress.token = request.token;
      return this.flow(request, origin, progress);
    });
  }

  /** The flow for a caller that has its request in hand (no per-client-ip limit). */
  createSigningCertificate(
    request: SigningRequest,
    origin: RequestOrigin = { requestId: randomUUID(), route: 'ra', clientIp: undefined },
  ): Promise<SigningResult> {
    return this.reported(origin, (progress) => {
      progress.token = request.token;
      return this.flow(request, origin, progress);
    });
  }

  private async flow(
    request: SigningRequest,
    origin: RequestOrigin,
    progress: Progress,
  ): Promise<SigningResult> {
    // Each stage runs for every waiting request before any request goes on (next-turn.ts).
    await this.turn();
    const principal = await this.deps.identity.authenticate(request.token);
    await this.turn();
    const key = await this.verifyKey(request.key, principal);
    await this.turn();
    const limits = this.deps.rateLimiting?.limits();
    if (limits) {
      await this.spend([
        limits.transaction(LIMIT.identity, identityId(principal.issuer, principal.subject)),
        limits.transaction(LIMIT.issuer, principal.issuer),
        limits.transaction(LIMIT.global, ''),
      ]);
    }
    const { notBefore, notAfter } = this.validity();
    progress.reachedCa = true;
    const issued = await this.deps.ca.issue({
      publicKey: key.spki,
      identity: principal.certificateIdentity(),
      serial: randomSerial(),
      notBefore,
      notAfter,
      requester: {
        origin: {
          requestId: origin.requestId,
          route: origin.route,
          clientIp: origin.clientIp,
          forwardedFor: origin.forwardedFor,
        },
        issuer: principal.issuer,
        issuerType: principal.issuerType,
        subject: principal.subject,
      },
    });
    await this.turn();
    return { ...issued, principal, publicKey: { spki: key.spki, algorithm: key.algorithm } };
  }

  /** Runs a request and reports the decision: issued (counted), refused or failed. */
  private async reported(
    origin: RequestOrigin,
    run: (progress: Progress) => Promise<SigningResult>,
  ): Promise<SigningResult> {
    const progress: Progress = {};
    let result: SigningResult;
    try {
      result = await run(progress);
    } catch (err) {
      this.reportFailure(origin, err, progress);
      throw err;
    }
    const { principal } = result;
    this.deps.metrics?.certificatesIssued.inc({
      issuer: this.deps.identity.issuerLabel?.(principal.issuer) ?? 'unknown',
      issuer_type: principal.issuerType,
    });
    (origin.log ?? this.deps.logger).info(
      {
        issuer: principal.issuer,
        issuerType: principal.issuerType,
        notAfter: result.notAfter.toISOString(),
      },
      'signing certificate issued',
    );
    return result;
  }

  private reportFailure(origin: RequestOrigin, err: unknown, progress: Progress): void {
    const code = isCaError(err) ? err.code : 'internal';
    const status = isCaError(err) ? err.mapping.httpStatus : 500;
    const reason = REFUSAL_REASON[code];
    if (reason) this.deps.metrics?.refusals.inc({ reason });
    // The CA audited its own failure, with the serial it had.
    if (progress.reachedCa || !this.deps.audit) return;
    // For the audit line only (it costs a token decode); the token itself is never kept.
    const issuer =
      progress.token === undefined ? undefined : this.deps.identity.claimedIssuer?.(progress.token);
    const where: AuditRequest = {
      requestId: origin.requestId,
      route: origin.route,
      clientIp: origin.clientIp,
      forwardedFor: origin.forwardedFor,
    };
    if (status >= 500) this.deps.audit.failed(where, { code, status, issuer });
    else
      this.deps.audit.refused(where, {
        reason: reason ?? code,
        code,
        status,
        tokenFailure: err instanceof TokenRefusedError ? err.reason : undefined,
        issuer,
      });
  }

  /** The per-client-ip limit, spent before the request is read. */
  private async admitClient(address: string | undefined): Promise<void> {
    const limits = this.deps.rateLimiting?.limits();
    if (limits) await this.spend([limits.transaction(LIMIT.clientIp, clientId(address))]);
  }

  private async spend(transactions: readonly (Transaction | undefined)[]): Promise<void> {
    const { limiter, random } = this.deps.rateLimiting!;
    const spendable = transactions.filter((t): t is Transaction => t !== undefined);
    if (spendable.length === 0) return;
    let decision: Decision;
    try {
      decision = await limiter.spend(spendable);
    } catch (err) {
      if (!(err instanceof RateLimitUnavailableError)) throw err;
      throw new CaError('unavailable', `rate limits unavailable: ${err.message}`, {
        clientMessage: 'the service is temporarily unavailable, retry later',
        retryAfterSeconds: retryAfterSeconds(err.retryInMs, random),
        cause: err,
      });
    }
    if (decision.allowed || !decision.limit) return;
    const { name, limit } = decision.limit;
    const retryAfter = retryAfterSeconds(decision.retryInMs, random);
    throw new CaError(
      'rate_limited',
      `${name} refused bucket ${decision.bucket} (${decision.source}); retry in ${Math.ceil(decision.retryInMs)} ms`,
      {
        clientMessage: `rate limit exceeded: ${name}`,
        retryAfterSeconds: retryAfter,
        rateLimit: {
          policy: name,
          quota: limit.count,
          windowSeconds: Math.max(1, Math.ceil(limit.periodMs / 1000)),
          remaining: decision.remaining,
          resetSeconds: retryAfter,
        },
      },
    );
  }

  private async verifyKey(
    material: KeyMaterial | undefined,
    principal: Principal,
  ): Promise<Pick<SubjectPublicKey, 'spki' | 'algorithm'>> {
    if (!material) throw new CaError('invalid_public_key', 'request names no public key');
    if (material.kind === 'csr') {
      const { key, hash } = verifyCsr(material.pem);
      this.deps.algorithms.assertPermitted(key.algorithm, hash);
      return key;
    }
    const key = await importPublicKey(material.content);
    const hash = verifyProof(key, material.proof, principal.name);
    this.deps.algorithms.assertPermitted(key.algorithm, hash);
    return key;
  }

  /** Now to now + lifetime in whole seconds, never past the issuing certificate. */
  private validity(): { notBefore: Date; notAfter: Date } {
    const now = Math.floor(this.deps.clock.now().getTime() / 1000) * 1000;
    const limit = this.deps.ca.notAfterLimit.getTime();
    const notAfter = Math.min(now + this.deps.lifetimeSeconds * 1000, limit);
    if (notAfter <= now) throw new CaError('ca_backend', 'the issuing certificate has expired');
    if (notAfter < now + this.deps.lifetimeSeconds * 1000) {
      this.deps.logger.warn(
        { notAfter: new Date(notAfter).toISOString() },
        'leaf validity shortened to the issuing certificate',
      );
    }
    return { notBefore: new Date(now), notAfter: new Date(notAfter) };
  }
}
