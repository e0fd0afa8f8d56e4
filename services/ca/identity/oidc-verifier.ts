import { KeyObject, createPublicKey, type JsonWebKey } from 'node:crypto';
import {
  createRemoteJWKSet,
  customFetch,
  errors as joseErrors,
  type JWSHeaderParameters,
  type JWTPayload,
} from 'jose';
import type { Clock } from '../../common/clock';
import type { Logger } from '../../common/logger';
import { decodeJws, jwsSignatureVerifies, type DecodedJws } from './jws';

/**
 * Verifies tokens of one concrete issuer: OIDC discovery (whose `issuer` must equal the
 * configured URL), a JWKS cached without expiry and refetched only for an unknown `kid`
 * after a cooldown (go-oidc's behaviour, and it keeps a random-`kid` flood from turning
 * into a fetch per request). jose finds the key; node:crypto checks the signature (jws.ts)
 * and the claims are checked here.
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

  /**
   * `fetchImpl`, timed and reported to `onFetch` as a fetch of `document`; `finish` (which
   * may read the body) counts as part of the fetch, so a body that stalls past the timeout
   * or fails its check is reported as such, not as `ok`.
   */
  private observedFetch(
    document: FetchDocument,
    finish: (response: Response) => Promise<Response> = (response) => Promise.resolve(response),
  ): FetchLike {
    const { onFetch } = this.options;
    if (!onFetch) return async (input, init) => finish(await this.fetchImpl(input, init));
    return async (input, init) => {
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      try {
        const response = await finish(await this.fetchImpl(input, init));
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
    const fetchJwks = this.observedFetch('jwks', checkedJwks);
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
    let jws: DecodedJws;
    try {
      jws = decodeJws(token);
    } catch (err) {
      throw new TokenVerificationError((err as Error).message, 'signature');
    }
    const alg = jws.header.alg as string;
    if (!discovered.algorithms.includes(alg)) {
      throw new TokenVerificationError(`algorithm ${alg} not allowed`, 'signature');
    }
    let keys: KeyObject[];
    try {
      keys = await candidateKeys(discovered.jwks, jws);
    } catch (err) {
      throw classify(err);
    }
    if (!keys.some((key) => jwsSignatureVerifies(alg, key, jws.signingInput, jws.signature))) {
      throw new TokenVerificationError('signature verification failed', 'signature');
    }
    return checkClaims(jws.payload, this.issuerUrl, this.clientId, this.options.clock.now());
  }
}

/** KeyObjects for jose's cached CryptoKeys, made once per key. */
type JoseKey = Awaited<ReturnType<Discovered['jwks']>>;
const keyObjects = new WeakMap<JoseKey, KeyObject>();

function keyObjectOf(key: JoseKey): KeyObject {
  let keyObject = keyObjects.get(key);
  if (!keyObject) {
    keyObject = KeyObject.from(key);
    keyObjects.set(key, keyObject);
  }
  return keyObject;
}

/**
 * The issuer's keys that may have signed the token: jose matches `kid` and `alg` against
 * the cached JWKS (refetching it, after the cooldown, for a kid it does not know). A JWKS
 * with several matching keys (no kid) yields them all, as jose's own jwtVerify tries each.
 */
async function candidateKeys(jwks: Discovered['jwks'], jws: DecodedJws): Promise<KeyObject[]> {
  const header = jws.header as JWSHeaderParameters;
  try {
    return [keyObjectOf(await jwks(header))];
  } catch (err) {
    if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) throw err;
    const keys: KeyObject[] = [];
    for await (const key of err) keys.push(keyObjectOf(key));
    return keys;
  }
}

/**
 * The claim checks go-oidc makes (and jose made here before): `iss` equals the issuer,
 * `aud` names the client id, `exp` is present and not past (no leeway, as Fulcio), `nbf`
 * at most five minutes ahead, and the registered time claims are numbers.
 */
export function checkClaims(
  payload: Readonly<Record<string, unknown>>,
  issuerUrl: string,
  clientId: string,
  now: Date,
): JWTPayload {
  const { iss, aud, exp, nbf, iat } = payload;
  if (iss === undefined) throw new TokenVerificationError('token has no iss claim', 'issuer');
  if (iss !== issuerUrl) {
    throw new TokenVerificationError(`unexpected iss ${JSON.stringify(iss)}`, 'issuer');
  }
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (!audiences) throw new TokenVerificationError('token has no aud claim', 'audience');
  if (!audiences.includes(clientId)) {
    throw new TokenVerificationError(`audience does not name ${clientId}`, 'audience');
  }
  // A missing or malformed exp is counted with the expired ones, as it always was.
  if (exp === undefined) throw new TokenVerificationError('token has no exp claim', 'expired');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new TokenVerificationError('exp is not a number', 'expired');
  }
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) {
    throw new TokenVerificationError('iat is not a number', 'claims');
  }
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) {
      throw new TokenVerificationError('nbf is not a number', 'not_yet_valid');
    }
    const nowSeconds = Math.floor(now.getTime() / 1000);
    if (nbf > nowSeconds + NOT_BEFORE_LEEWAY_SECONDS) {
      throw new TokenVerificationError(`token not valid before ${nbf}`, 'not_yet_valid');
    }
  }
  if (exp * 1000 < now.getTime()) {
    throw new TokenVerificationError(`token is expired (exp ${exp})`, 'expired');
  }
  return payload as JWTPayload;
}

const USABLE_KEY_TYPES = new Set(['EC', 'RSA', 'OKP']);

function usableKey(jwk: unknown): boolean {
  if (typeof jwk !== 'object' || jwk === null) return false;
  const { kty } = jwk as { kty?: unknown };
  if (typeof kty !== 'string' || !USABLE_KEY_TYPES.has(kty)) return false;
  try {
    createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A JWKS answer (HTTP 200) read whole and checked before jose sees it. jose replaces its
 * cached key set with any `{"keys": [objects]}`, even when none of them is a key; a broken
 * answer from the issuer (or a proxy in front of it) would then knock out the keys that
 * were verifying until the next refetch. A key list with keys in it but no usable one
 * is therefore a failed fetch, and the cached keys stay (go-oidc, hence Fulcio, keeps its
 * cache when a JWKS does not parse). Anything else goes to jose unchanged, which refuses
 * non-JSON and a missing `keys` itself, also keeping its cache.
 */
async function checkedJwks(response: Response): Promise<Response> {
  if (response.status !== 200) return response;
  const text = await response.text();
  let keys: unknown;
  try {
    keys = (JSON.parse(text) as { keys?: unknown } | null)?.keys;
  } catch {
    keys = undefined;
  }
  if (Array.isArray(keys) && keys.length > 0 && !keys.some(usableKey)) {
    throw new Error('JWKS answer has no usable key');
  }
  return new Response(text, { status: response.status, headers: response.headers });
}

/** An error from jose's key lookup: an unknown kid, or a JWKS that could not be had. */
function classify(err: unknown): TokenVerificationError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof joseErrors.JWKSNoMatchingKey)
    return new TokenVerificationError(message, 'unknown_kid');
  return new TokenVerificationError(message, 'signature');
}
