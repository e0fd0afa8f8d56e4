import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomUUID } from 'node:crypto';
import {
  SignJWT,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  type CryptoKey,
} from 'jose';
import type { OidcIssuerConfig } from '../ca/config/identity-config';

/**
 * A small OIDC issuer for local development, the demo and the tests: discovery, a JWKS
 * with an ES256 and an RS256 key, and token minting. mayfly starts it only when asked
 * (MAYFLY_DEV_ISSUER=true); its token endpoint hands an identity to anybody who asks.
 */

export type DevAlgorithm = 'ES256' | 'RS256';

export interface MintOptions {
  readonly alg?: DevAlgorithm;
  /** Override the key id in the header (e.g. to name a key the JWKS does not have). */
  readonly kid?: string;
  readonly audience?: string | string[];
  /** Seconds from now; default 300. */
  readonly expiresIn?: number;
  /** Leave `exp` out entirely. */
  readonly omitExp?: boolean;
  readonly issuer?: string;
}

/**
 * What the JWKS endpoint serves, for fault tests:
 * - `normal`: the keys;
 * - `down`: HTTP 503;
 * - `garbage`: a body that is not JSON;
 * - `no-keys`: JSON without a `keys` member;
 * - `junk-keys`: a `keys` array whose entries are objects but no usable key;
 * - `slow`: the keys, but only after `jwksDelayMs` (headers and body held back);
 * - `stall`: headers and the first bytes of the body at once, the rest after `jwksDelayMs`.
 */
export type JwksMode = 'normal' | 'down' | 'garbage' | 'no-keys' | 'junk-keys' | 'slow' | 'stall';

/** What the discovery endpoint serves: the document, or HTTP 503. */
export type DiscoveryMode = 'normal' | 'down';

export interface DevIssuer {
  readonly url: string;
  readonly issuerConfig: OidcIssuerConfig;
  mint(claims: JWTPayload, options?: MintOptions): Promise<string>;
  /** A token for an email identity with email_verified set, as real IdPs issue. */
  mintEmail(email: string, options?: MintOptions): Promise<string>;
  setJwksMode(mode: JwksMode): void;
  setDiscoveryMode(mode: DiscoveryMode): void;
  /** Replaces the signing keys (old tokens then fail once the CA refetches the JWKS). */
  rotateKeys(): Promise<void>;
  /** Requests that arrived (counted on arrival, whatever the mode answers). */
  readonly requests: { discovery: number; jwks: number };
  /**
   * Stops listening and drops every open connection: clients then get "connection
   * refused" (not an HTTP error) until `listenAgain()`.
   */
  stopListening(): Promise<void>;
  /** Listens again on the same address and port. */
  listenAgain(): Promise<void>;
  close(): Promise<void>;
}

export interface DevIssuerOptions {
  readonly host?: string;
  readonly port?: number;
  readonly clientId?: string;
  /** Serve GET /token?email=… (on for the development issuer, off in most tests). */
  readonly tokenEndpoint?: boolean;
  /** Serve https with this key and certificate (PEM) instead of http. */
  readonly tls?: { readonly key: string; readonly cert: string };
  /** The host name in the issuer URL instead of the listening address (with the port). */
  readonly publicHost?: string;
  /**
   * Also serve issuers under any path: `<url>/<prefix>/.well-known/openid-configuration`
   * names the issuer `<url>/<prefix>` (for meta-issuer tests, one issuer per tenant).
   */
  readonly tenants?: boolean;
  /** The jwks_uri that discovery announces for an issuer URL (default `<issuer>/keys`). */
  readonly jwksUri?: (issuerUrl: string) => string;
  /** Sees every request (tests check headers such as Authorization). */
  readonly onRequest?: (req: IncomingMessage) => void;
  /** How long the `slow` and `stall` JWKS modes hold the answer back (default 60 s). */
  readonly jwksDelayMs?: number;
}

interface KeyEntry {
  readonly alg: DevAlgorithm;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function makeKey(alg: DevAlgorithm): Promise<KeyEntry> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, jwk };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startDevIssuer(options: DevIssuerOptions = {}): Promise<DevIssuer> {
  const host = options.host ?? '127.0.0.1';
  const clientId = options.clientId ?? 'sigstore';
  let keys = await Promise.all([makeKey('ES256'), makeKey('RS256')]);
  let jwksMode: JwksMode = 'normal';
  let discoveryMode: DiscoveryMode = 'normal';
  const jwksDelayMs = options.jwksDelayMs ?? 60_000;
  /** Answers the slow modes hold back; stopListening() and close() drop them. */
  const held = new Set<NodeJS.Timeout>();
  const hold = (res: ServerResponse, fn: () => void): void => {
    const timer = setTimeout(() => {
      held.delete(timer);
      // The client may have given up meanwhile.
      if (!res.destroyed) fn();
    }, jwksDelayMs);
    held.add(timer);
  };
  const requests = { discovery: 0, jwks: 0 };
  let url = '';

  const mint = async (claims: JWTPayload, mintOptions: MintOptions = {}): Promise<string> => {
    const alg = mintOptions.alg ?? 'ES256';
    const key = keys.find((k) => k.alg === alg)!;
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ ...claims })
      .setProtectedHeader({ alg, kid: mintOptions.kid ?? key.kid, typ: 'JWT' })
      .setIssuer(mintOptions.issuer ?? url)
      .setAudience(mintOptions.audience ?? clientId)
      .setIssuedAt(now);
    if (!mintOptions.omitExp) jwt.setExpirationTime(now + (mintOptions.expiresIn ?? 300));
    return jwt.sign(key.privateKey);
  };

  const serveJwks = (res: ServerResponse): void => {
    const served = keys.map((k) => k.jwk);
    switch (jwksMode) {
      case 'down':
        json(res, 503, { error: 'unavailable' });
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"keys": [garbage');
        return;
      case 'no-keys':
        json(res, 200, { issuer: url, note: 'no keys member' });
        return;
      case 'junk-keys':
        json(res, 200, {
          keys: [
            { kty: 'junk', kid: 'junk-1', use: 'sig' },
            { kty: 'EC', crv: 'P-256', kid: 'junk-2', alg: 'ES256', x: '!!', y: 'AA' },
            { kty: 'RSA', kid: 'junk-3', alg: 'RS256', n: 'AQAB' },
          ],
        });
        return;
      case 'slow':
        hold(res, () => json(res, 200, { keys: served }));
        return;
      case 'stall': {
        const text = JSON.stringify({ keys: served });
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
        });
        res.write(text.slice(0, 10));
        hold(res, () => res.end(text.slice(10)));
        return;
      }
      default:
        json(res, 200, { keys: served });
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    options.onRequest?.(req);
    const wellKnown = '/.well-known/openid-configuration';
    if (path === wellKnown || (options.tenants && path.endsWith(wellKnown))) {
      requests.discovery++;
      if (discoveryMode === 'down') {
        json(res, 503, { error: 'unavailable' });
        return;
      }
      const issuerUrl = url + path.slice(0, -wellKnown.length);
      json(res, 200, {
        issuer: issuerUrl,
        jwks_uri: options.jwksUri ? options.jwksUri(issuerUrl) : `${issuerUrl}/keys`,
        authorization_endpoint: `${url}/auth`,
        token_endpoint: `${url}/token`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256', 'RS256'],
      });
      return;
    }
    if (path === '/keys' || (options.tenants && path.endsWith('/keys'))) {
      requests.jwks++;
      serveJwks(res);
      return;
    }
    if (path === '/token' && options.tokenEndpoint && req.method === 'GET') {
      const query = new URL(req.url ?? '/', url).searchParams;
      const email = query.get('email') ?? 'developer@example.com';
      mint({ sub: query.get('sub') ?? email, email, email_verified: true })
        .then((token) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(token);
        })
        .catch(() => json(res, 500, { error: 'mint failed' }));
      return;
    }
    json(res, 404, { error: 'not found' });
  };

  const server = options.tls ? createHttpsServer(options.tls, handle) : createServer(handle);
  const listenOn = (port: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  const stopListening = (): Promise<void> =>
    new Promise<void>((resolve) => {
      for (const timer of held) clearTimeout(timer);
      held.clear();
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
      server.closeAllConnections();
    });
  await listenOn(options.port ?? 0);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const publicHost = options.publicHost ?? host;
  url = `${options.tls ? 'https' : 'http'}://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${port}`;

  const issuerConfig: OidcIssuerConfig = {
    issuerUrl: url,
    clientId,
    type: 'email',
    ciProvider: '',
    issuerClaim: '',
    subjectDomain: '',
    spiffeTrustDomain: '',
    challengeClaim: '',
    description: 'mayfly development issuer',
    contact: '',
    environment: '',
    caCert: '',
    skipEmailVerification: false,
  };

  return {
    url,
    issuerConfig,
    mint,
    mintEmail: (email, mintOptions) =>
      mint({ sub: email, email, email_verified: true }, mintOptions),
    setJwksMode: (mode) => {
      jwksMode = mode;
    },
    setDiscoveryMode: (mode) => {
      discoveryMode = mode;
    },
    rotateKeys: async () => {
      keys = await Promise.all([makeKey('ES256'), makeKey('RS256')]);
    },
    requests,
    stopListening,
    listenAgain: () => (server.listening ? Promise.resolve() : listenOn(port)),
    close: stopListening,
  };
}
