import {
  createRemoteJWKSet,
  customFetch,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
} from 'jose';
import type { Clock } from '../common/clock';
import type { Logger } from '../common/logger';

/**
 * Verifies tokens of one concrete issuer: OIDC discovery (whose `issuer` must equal the
 * configured URL), a JWKS cached without expiry and refetched only for an unknown `kid`
 * after a cooldown (go-oidc's behaviour, and it keeps a random-`kid` flood from turning
 * into a fetch per request), and jose for the signature and claims.
 */

/** Asymmetric algorithms only: `none` and HMAC can never verify an identity token. */
export const ALLOWED_TOKEN_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
] as const;

/** Fulcio (go-oidc) accepts `nbf` up to five minutes in the future; `exp` gets no leeway. */
export const NOT_BEFORE_LEEWAY_SECONDS = 300;

export class TokenVerificationError extends Error {
  constructor(
    message: string,
    readonly reason:
      | 'discovery'
      | 'signature'
      | 'audience'
      | 'expired'
      | 'not_yet_valid'
      | 'issuer'
      | 'claims'
      | 'unknown_kid',
  ) {
    super(message);
    this.name = 'TokenVerificationError';
  }
}

export type FetchLike = typeof fetch;

export type FetchDocument = 'discovery' | 'jwks';
export type FetchResult = 'ok' | 'error' | 'timeout';

export interface OidcVerifierOptions {
  readonly discoveryTimeoutMs: number;
  readonly jwksCooldownMs: number;
  /** After a failed discovery, requests within this window fail fast instead of refetching. */
  readonly discoveryRetryMs?: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly fetch?: FetchLike;
  /** Told about every discovery and JWKS fetch (for metrics). */
  readonly onFetch?: (document: FetchDocument, result: FetchResult, seconds: number) => void;
}

function fetchResultOf(err: unknown): FetchResult {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'TimeoutError' || name === 'AbortError' || name === 'JWKSTimeout'
    ? 'timeout'
    : 'error';
}

interface Discovered {
  readonly jwks: ReturnType<typeof createRemoteJWKSet>;
  readonly algorithms: readonly string[];
}

const MAX_REDIRECTS = 3;
const MAX_DISCOVERY_BYTES = 256 * 1024;

export class OidcVerifier {
  private discovered: Discovered | undefined;
  private pending: Promise<Discovered> | undefined;
  private lastFailure: { at: number; error: Error } | undefined;
  private readonly fetchImpl: FetchLike;

  constructor(
    readonly issuerUrl: string,
    readonly clientId: string,
    private readonly options: OidcVerifierOptions,
  ) {
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Discovery, coalesced; failures are remembered briefly and retried lazily. */
  discover(): Promise<Discovered> {
    if (this.discovered) return Promise.resolve(this.discovered);
    const retryMs = this.options.discoveryRetryMs ?? 1000;
    if (this.lastFailure && Date.now() - this.lastFailure.at < retryMs) {
      return Promise.reject(this.lastFailure.error);
    }
    if (!this.pending) {
      this.pending = this.runDiscovery()
        .then((d) => {
          this.discovered = d;
          this.lastFailure = undefined;
          return d;
        })
        .catch((err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err));
          this.lastFailure = { at: Date.now(), error };
          throw error;
        })
        .finally(() => {
          this.pending = undefined;
        });
    }
    return this.pending;
  }

  /** `fetchImpl`, timed and reported to `onFetch` as a fetch of `document`. */
  private observedFetch(document: FetchDocument): FetchLike {
    const { onFetch } = this.options;
    if (!onFetch) return this.fetchImpl;
    return async (input, init) => {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      try {
        const response = await this.fetchImpl(input, init);
        // Redirects are followed by fetchJson and counted as their own fetches.
        onFetch(document, response.status < 400 ? 'ok' : 'error', seconds());
        return response;
      } catch (err) {
        onFetch(document, fetchResultOf(err), seconds());
        throw err;
      }
    };
  }

  private async runDiscovery(): Promise<Discovered> {
    const base = this.issuerUrl.replace(/\/+$/, '');
    const doc = await this.fetchJson(`${base}/.well-known/openid-configuration`);
    if (typeof doc !== 'object' || doc === null)
      throw new Error('discovery document is not an object');
    const {
      issuer,
      jwks_uri: jwksUri,
      id_token_signing_alg_values_supported: algs,
    } = doc as Record<string, unknown>;
    if (issuer !== this.issuerUrl) {
      throw new Error(
        `discovery issuer ${JSON.stringify(issuer)} does not match ${this.issuerUrl}`,
      );
    }
    if (typeof jwksUri !== 'string') throw new Error('discovery document has no jwks_uri');
    const jwksUrl = this.checkedUrl(jwksUri);
    const offered = Array.isArray(algs)
      ? algs.filter((a): a is string => typeof a === 'string')
      : ['RS256'];
    const algorithms = ALLOWED_TOKEN_ALGORITHMS.filter((a) => offered.includes(a));
    if (algorithms.length === 0)
      throw new Error(`issuer offers no acceptable algorithm (${offered.join(', ')})`);
    const jwks = createRemoteJWKSet(jwksUrl, {
      timeoutDuration: this.options.discoveryTimeoutMs,
      cooldownDuration: this.options.jwksCooldownMs,
      // go-oidc keeps keys until a token names an unknown kid; so do we.
      cacheMaxAge: Number.POSITIVE_INFINITY,
      [customFetch]: this.jwksFetch(),
    });
    return { jwks, algorithms };
  }

  /**
   * The JWKS fetch jose makes, following redirects on the same host only (as Fulcio's
   * client does); a redirect elsewhere fails the fetch.
   */
  private jwksFetch(): FetchLike {
    const fetchJwks = this.observedFetch('jwks');
    return async (input, init) => {
      let url = this.checkedUrl(input instanceof Request ? input.url : String(input));
      for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const response = await fetchJwks(url.href, { ...init, redirect: 'manual' });
        if (response.status < 300 || response.status >= 400) return response;
        const location = response.headers.get('location');
        await response.body?.cancel();
        if (!location) throw new Error(`redirect without location from ${url.origin}`);
        const next = this.checkedUrl(new URL(location, url).href);
        if (next.host !== url.host) throw new Error(`cross-host redirect to ${next.host} refused`);
        url = next;
      }
      throw new Error('too many redirects');
    };
  }

  /** https, unless the issuer itself was configured as plain http (local development). */
  private checkedUrl(raw: string): URL {
    const url = new URL(raw);
    const issuerIsHttp = this.issuerUrl.startsWith('http://');
    if (url.protocol !== 'https:' && !(issuerIsHttp && url.protocol === 'http:')) {
      throw new Error(`refusing non-https URL ${url.origin}`);
    }
    return url;
  }

  private async fetchJson(rawUrl: string): Promise<unknown> {
    let url = this.checkedUrl(rawUrl);
    const signal = AbortSignal.timeout(this.options.discoveryTimeoutMs);
    const fetchDocument = this.observedFetch('discovery');
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const response = await fetchDocument(url, {
        redirect: 'manual',
        signal,
        headers: { accept: 'application/json' },
      });
      if (response.status >= 300 && response.status < 400) {
        const location = response.headers.get('location');
        await response.body?.cancel();
        if (!location) throw new Error(`redirect without location from ${url.origin}`);
        const next = this.checkedUrl(new URL(location, url).href);
        // A redirect to another host could be an attacker steering our requests.
        if (next.host !== url.host) throw new Error(`cross-host redirect to ${next.host} refused`);
        url = next;
        continue;
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new Error(`discovery answered HTTP ${response.status}`);
      }
      const text = await response.text();
      if (text.length > MAX_DISCOVERY_BYTES) throw new Error('discovery document too large');
      return JSON.parse(text) as unknown;
    }
    throw new Error('too many redirects');
  }

  async verify(token: string): Promise<JWTPayload> {
    let discovered: Discovered;
    try {
      discovered = await this.discover();
    } catch (err) {
      throw new TokenVerificationError(
        `discovery for ${this.issuerUrl} failed: ${(err as Error).message}`,
        'discovery',
      );
    }
    const now = this.options.clock.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, discovered.jwks, {
        issuer: this.issuerUrl,
        audience: this.clientId,
        algorithms: [...discovered.algorithms],
        requiredClaims: ['exp'],
        clockTolerance: NOT_BEFORE_LEEWAY_SECONDS,
        currentDate: now,
      }));
    } catch (err) {
      throw classify(err);
    }
    // jose's tolerance is symmetric; Fulcio gives `exp` none.
    if (typeof payload.exp !== 'number' || payload.exp * 1000 < now.getTime()) {
      throw new TokenVerificationError(`token is expired (exp ${String(payload.exp)})`, 'expired');
    }
    return payload;
  }
}

function classify(err: unknown): TokenVerificationError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof joseErrors.JWTExpired) return new TokenVerificationError(message, 'expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new TokenVerificationError(message, 'audience');
    if (err.claim === 'iss') return new TokenVerificationError(message, 'issuer');
    if (err.claim === 'nbf') return new TokenVerificationError(message, 'not_yet_valid');
    if (err.claim === 'exp') return new TokenVerificationError(message, 'expired');
    return new TokenVerificationError(message, 'claims');
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey)
    return new TokenVerificationError(message, 'unknown_kid');
  if (err instanceof joseErrors.JOSEError) return new TokenVerificationError(message, 'signature');
  return new TokenVerificationError(message, 'signature');
}
