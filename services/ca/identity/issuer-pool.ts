import type { LookupFunction } from 'node:net';
import type { Clock } from '../../common/clock';
import { CaError } from '../common/errors';
import type { Logger } from '../../common/logger';
import { type IdentityConfig, type OidcIssuerConfig } from '../config/identity-config';
import { challengeClaimOf } from './identity-config';
import {
  OidcVerifier,
  TokenVerificationError,
  type FetchDocument,
  type FetchLike,
  type FetchResult,
} from './oidc-verifier';
import { isInClusterIssuer, issuerTransport } from './issuer-transport';
import type { Principal } from './principal';
import { readUnverifiedIssuer } from './token';
import { ISSUER_TYPE_HANDLERS } from './types/registry';
import { ClaimError, type IssuerTypeHandler } from './types/types';

export interface IdentityOptions {
  readonly discoveryTimeoutMs: number;
  readonly jwksCooldownMs: number;
  readonly maxTokenBytes: number;
  readonly discoveryRetryMs?: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly fetch?: FetchLike;
  /**
   * The in-cluster Kubernetes issuer (https://kubernetes.default.svc): its CA file, and the
   * pod's service-account token file whose token goes to that issuer's host only.
   */
  readonly kubernetes?: { readonly caFile: string; readonly tokenFile: string };
  /** Name resolution for issuers fetched with their own client (CACert, in-cluster). */
  readonly lookup?: LookupFunction;
  /**
   * Called with the reason of every refused token and the configured issuer it named (its
   * URL, the meta-issuer pattern, or `unknown`): a bounded label, never a token's raw `iss`.
   */
  readonly onFailure?: (reason: string, issuer: string) => void;
  /** Called for every discovery and JWKS fetch, with the same bounded issuer label. */
  readonly onFetch?: (
    issuer: string,
    document: FetchDocument,
    result: FetchResult,
    seconds: number,
  ) => void;
}

/** The issuer label for tokens that name no configured issuer (or cannot be read). */
export const UNKNOWN_ISSUER = 'unknown';

/**
 * A refused identity token: always Fulcio's one client error, with the precise reason
 * (expired, audience, unknown_issuer, ...) and the configured issuer kept for metrics and
 * the audit log.
 */
export class TokenRefusedError extends CaError {
  constructor(
    readonly reason: string,
    detail: string,
    /** The configured issuer (URL or meta-issuer pattern), or UNKNOWN_ISSUER. */
    readonly issuer: string,
  ) {
    super('invalid_token', `${reason}: ${detail}`);
  }
}

/** One entry of GET /api/v2/configuration, in the proto's field order. */
export interface IssuerDescription {
  readonly issuerUrl?: string;
  readonly wildcardIssuerUrl?: string;
  readonly audience: string;
  readonly challengeClaim: string;
  readonly spiffeTrustDomain: string;
  readonly issuerType: string;
  readonly subjectDomain: string;
  readonly skipEmailVerification: boolean;
}

/**
 * Fulcio's meta-issuer pattern: every `*` matches one or more of `[-_a-zA-Z0-9]` (never a
 * dot or a slash) and the pattern is anchored at both ends (GHSA-59jp-pj84-45mr).
 */
export function metaIssuerPattern(wildcardUrl: string): RegExp {
  const quoted = wildcardUrl
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))
    .join('[-_a-zA-Z0-9]+');
  return new RegExp(`^${quoted}$`);
}

const META_VERIFIER_CACHE_SIZE = 100;

/** Everything a static issuer's verifier depends on. */
function verifierKey(url: string, issuer: OidcIssuerConfig, isStatic: boolean): string {
  return JSON.stringify([url, issuer.clientId, issuer.caCert, issuer.type, isStatic]);
}

interface Route {
  readonly config: OidcIssuerConfig;
  readonly handler: IssuerTypeHandler;
}

/**
 * Routes a token to its configured issuer by exact `iss` (then by meta-issuer pattern),
 * verifies it, and builds the principal with the issuer's type. Every refusal is the same
 * client error; the reason goes to the log.
 */
export class IssuerPool {
  private readonly staticVerifiers = new Map<string, OidcVerifier>();
  /** What each static verifier was built from, to carry it over to a reloaded pool. */
  private readonly staticKeys = new Map<string, string>();
  private readonly metaVerifiers = new Map<string, OidcVerifier>();
  private readonly metaPatterns: { pattern: RegExp; url: string; config: OidcIssuerConfig }[] = [];
  /** Every configured meta-issuer, supported type or not, to label what a token names. */
  private readonly labelPatterns: { pattern: RegExp; url: string }[] = [];

  constructor(
    readonly config: IdentityConfig,
    private readonly options: IdentityOptions,
    /** The pool this one replaces: verifiers of unchanged issuers are carried over. */
    previous?: IssuerPool,
  ) {
    for (const [url, issuer] of config.oidcIssuers) {
      if (!ISSUER_TYPE_HANDLERS.has(issuer.type)) {
        options.logger.warn(
          { issuer: url, type: issuer.type },
          'issuer type not supported by this build; its tokens are refused',
        );
        continue;
      }
      const key = verifierKey(url, issuer, true);
      const kept = previous?.staticVerifiers.get(url);
      this.staticVerifiers.set(
        url,
        kept && previous?.staticKeys.get(url) === key
          ? kept
          : this.newVerifier(url, issuer, url, true),
      );
      this.staticKeys.set(url, key);
    }
    for (const [url, issuer] of config.metaIssuers) {
      this.labelPatterns.push({ pattern: metaIssuerPattern(url), url });
      if (!ISSUER_TYPE_HANDLERS.has(issuer.type)) {
        options.logger.warn(
          { issuer: url, type: issuer.type },
          'issuer type not supported by this build; its tokens are refused',
        );
        continue;
      }
      this.metaPatterns.push({ pattern: metaIssuerPattern(url), url, config: issuer });
    }
  }

  private newVerifier(
    url: string,
    issuer: OidcIssuerConfig,
    label: string,
    isStatic: boolean,
  ): OidcVerifier {
    const { onFetch } = this.options;
    const fetch = this.fetchFor(url, issuer, isStatic);
    return new OidcVerifier(url, issuer.clientId, {
      ...(onFetch
        ? { onFetch: (document, result, seconds) => onFetch(label, document, result, seconds) }
        : {}),
      discoveryTimeoutMs: this.options.discoveryTimeoutMs,
      jwksCooldownMs: this.options.jwksCooldownMs,
      ...(this.options.discoveryRetryMs === undefined
        ? {}
        : { discoveryRetryMs: this.options.discoveryRetryMs }),
      clock: this.options.clock,
      logger: this.options.logger,
      fetch,
    });
  }

  /**
   * The HTTP client for an issuer: its own when it has a CACert or is the in-cluster
   * Kubernetes issuer (configured statically: a meta issuer never gets the pod's token),
   * else the one given in the options, else a plain node:http(s) client.
   */
  private fetchFor(url: string, issuer: OidcIssuerConfig, isStatic: boolean): FetchLike {
    const { kubernetes, lookup, logger } = this.options;
    const onWarning = (message: string) => logger.warn({ issuer: url }, message);
    if (isStatic && kubernetes && issuer.type === 'kubernetes' && isInClusterIssuer(url)) {
      return issuerTransport({
        caFile: kubernetes.caFile,
        ...(issuer.caCert ? { extraCa: [issuer.caCert] } : {}),
        bearer: { tokenFile: kubernetes.tokenFile, host: new URL(url).host },
        ...(lookup ? { lookup } : {}),
        onWarning,
      });
    }
    if (issuer.caCert) {
      return issuerTransport({
        extraCa: [issuer.caCert],
        ...(lookup ? { lookup } : {}),
        onWarning,
      });
    }
    // Node's global fetch (undici) would do, but its first request compiles undici's WASM
    // HTTP parser on a V8 worker thread: some 25 MB of resident memory at the process's
    // peak for two small GETs (bench/results/memory.md). node:http does the same job.
    return this.options.fetch ?? issuerTransport({ ...(lookup ? { lookup } : {}), onWarning });
  }

  /** Discovery for every static issuer; failures are logged and retried on first use. */
  async warmUp(): Promise<void> {
    await Promise.all(
      [...this.staticVerifiers.values()].map(async (verifier) => {
        try {
          await verifier.discover();
          this.options.logger.info({ issuer: verifier.issuerUrl }, 'OIDC discovery succeeded');
        } catch (err) {
          this.options.logger.warn(
            { issuer: verifier.issuerUrl, err: (err as Error).message },
            'OIDC discovery failed; will retry when a token from this issuer arrives',
          );
        }
      }),
    );
  }

  private route(iss: string): { verifier: OidcVerifier; route: Route } | undefined {
    const exact = this.staticVerifiers.get(iss);
    const exactConfig = this.config.oidcIssuers.get(iss);
    if (exact && exactConfig) {
      return {
        verifier: exact,
        route: { config: exactConfig, handler: ISSUER_TYPE_HANDLERS.get(exactConfig.type)! },
      };
    }
    for (const meta of this.metaPatterns) {
      if (!meta.pattern.test(iss)) continue;
      const config: OidcIssuerConfig = { ...meta.config, issuerUrl: iss };
      let verifier = this.metaVerifiers.get(iss);
      if (verifier) {
        // Refresh its place in the LRU order.
        this.metaVerifiers.delete(iss);
      } else {
        verifier = this.newVerifier(iss, config, meta.url, false);
        if (this.metaVerifiers.size >= META_VERIFIER_CACHE_SIZE) {
          const oldest = this.metaVerifiers.keys().next().value;
          if (oldest !== undefined) this.metaVerifiers.delete(oldest);
        }
      }
      this.metaVerifiers.set(iss, verifier);
      return { verifier, route: { config, handler: ISSUER_TYPE_HANDLERS.get(config.type)! } };
    }
    return undefined;
  }

  /**
   * The configured issuer an `iss` belongs to: its own URL when configured as such, else
   * the meta-issuer pattern it matches, else undefined. A bounded label for metrics.
   */
  issuerLabel(iss: string): string | undefined {
    if (this.config.oidcIssuers.has(iss)) return iss;
    return this.labelPatterns.find((meta) => meta.pattern.test(iss))?.url;
  }

  /**
   * The `iss` a token claims, unverified, when it names a configured issuer; undefined for
   * a token that cannot be read or names no configured issuer. For the audit log only.
   */
  claimedIssuer(token: string): string | undefined {
    const unverified = readUnverifiedIssuer(token, this.options.maxTokenBytes);
    if (!unverified.ok || this.issuerLabel(unverified.issuer) === undefined) return undefined;
    return unverified.issuer;
  }

  async authenticate(token: string): Promise<Principal> {
    const unverified = readUnverifiedIssuer(token, this.options.maxTokenBytes);
    if (!unverified.ok) throw this.refuse('malformed', unverified.reason, UNKNOWN_ISSUER);
    const found = this.route(unverified.issuer);
    const label = this.issuerLabel(unverified.issuer) ?? UNKNOWN_ISSUER;
    if (!found) {
      throw this.refuse(
        'unknown_issuer',
        `failed to match issuer URL ${unverified.issuer} from token with any configured providers`,
        label,
      );
    }
    let claims;
    try {
      claims = await found.verifier.verify(token);
    } catch (err) {
      if (err instanceof TokenVerificationError) throw this.refuse(err.reason, err.message, label);
      throw this.refuse('signature', (err as Error).message, label);
    }
    try {
      return found.route.handler.principal(claims, found.route.config, this.config);
    } catch (err) {
      if (err instanceof ClaimError) throw this.refuse('claims', err.message, label);
      throw err;
    }
  }

  private refuse(reason: string, detail: string, issuer: string): CaError {
    this.options.onFailure?.(reason, issuer);
    return new TokenRefusedError(reason, detail, issuer);
  }

  describe(): IssuerDescription[] {
    const describe = (issuer: OidcIssuerConfig) => ({
      audience: issuer.clientId,
      challengeClaim: challengeClaimOf(issuer),
      spiffeTrustDomain: issuer.spiffeTrustDomain,
      issuerType: issuer.type,
      subjectDomain: issuer.subjectDomain,
      skipEmailVerification: issuer.skipEmailVerification,
    });
    return [
      ...[...this.config.oidcIssuers].map(([url, issuer]) => ({
        issuerUrl: url,
        ...describe(issuer),
      })),
      ...[...this.config.metaIssuers].map(([url, issuer]) => ({
        wildcardIssuerUrl: url,
        ...describe(issuer),
      })),
    ];
  }
}
