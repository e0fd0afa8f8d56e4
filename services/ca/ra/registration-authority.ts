import type { Clock } from '../../common/clock';
import { CaError } from '../common/errors';
import { nextTurn } from '../common/next-turn';
import type { Logger } from '../../common/logger';
import type { Principal } from '../identity/principal';
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
 * The request flow of POST signingCert, independent of HTTP: verify the identity, then the
 * key and its proof, then spend the identity's rate limits, then let the CA issue. The
 * order is Fulcio's, so that every failure gets the same answer it would get from Fulcio;
 * the limits come after both verifications so a forged token or a stolen token without
 * its key cannot drain somebody else's bucket.
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
}

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
}

export class RegistrationAuthority {
  constructor(private readonly deps: RegistrationAuthorityDeps) {}

  async createSigningCertificate(request: SigningRequest): Promise<SigningResult> {
    // Each stage runs for every waiting request before any request goes on (next-turn.ts).
    await nextTurn();
    const principal = await this.deps.identity.authenticate(request.token);
    await nextTurn();
    const key = await this.verifyKey(request.key, principal);
    await nextTurn();
    const limits = this.deps.rateLimiting?.limits();
    if (limits) {
      await this.spend([
        limits.transaction(LIMIT.identity, identityId(principal.issuer, principal.subject)),
        limits.transaction(LIMIT.issuer, principal.issuer),
        limits.transaction(LIMIT.global, ''),
      ]);
    }
    const { notBefore, notAfter } = this.validity();
    const issued = await this.deps.ca.issue({
      publicKey: key.spki,
      identity: principal.certificateIdentity(),
      serial: randomSerial(),
      notBefore,
      notAfter,
    });
    await nextTurn();
    return { ...issued, principal, publicKey: { spki: key.spki, algorithm: key.algorithm } };
  }

  /**
   * The per-client-ip limit: HTTP calls this before it reads the body, so a flood from one
   * address is refused before any parsing or cryptography.
   */
  async admitClient(address: string | undefined): Promise<void> {
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
