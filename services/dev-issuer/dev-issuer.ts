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

/** What the JWKS endpoint serves: the keys, nothing (down), or garbage. */
export type JwksMode = 'normal' | 'down' | 'garbage';

export interface DevIssuer {
  readonly url: string;
  readonly issuerConfig: OidcIssuerConfig;
  mint(claims: JWTPayload, options?: MintOptions): Promise<string>;
  /** A token for an email identity with email_verified set, as real IdPs issue. */
  mintEmail(email: string, options?: MintOptions): Promise<string>;
  setJwksMode(mode: JwksMode): void;
  /** Replaces the signing keys (old tokens then fail once the CA refetches the JWKS). */
  rotateKeys(): Promise<void>;
  readonly requests: { discovery: number; jwks: number };
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

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    options.onRequest?.(req);
    const wellKnown = '/.well-known/openid-configuration';
    if (path === wellKnown || (options.tenants && path.endsWith(wellKnown))) {
      requests.discovery++;
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
      if (jwksMode === 'down') json(res, 503, { error: 'unavailable' });
      else if (jwksMode === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"keys": [garbage');
      } else json(res, 200, { keys: keys.map((k) => k.jwk) });
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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
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
    rotateKeys: async () => {
      keys = await Promise.all([makeKey('ES256'), makeKey('RS256')]);
    },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
