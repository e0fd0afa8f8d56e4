import type { Server } from 'node:http';
import {
  createApp,
  createSigner,
  listen,
  type AppOverrides,
  type MayflyApp,
} from '../../services/ca/app';
import { systemClock } from '../../services/common/clock';
import { createLogger, silentLogger, type Logger } from '../../services/common/logger';
import type {
  CiIssuerMetadata,
  IdentityConfig,
  OidcIssuerConfig,
} from '../../services/ca/config/identity-config';
import { loadServerConfig } from '../../services/ca/config/loader';
import type { ServerConfig } from '../../services/ca/config/schema';
import type { CaSigner } from '../../services/common/signer/signer';
import { softHsmCaSigner } from './softhsm';
import {
  startDevIssuer,
  type DevIssuer,
  type DevIssuerOptions,
} from '../../services/dev-issuer/dev-issuer';

/**
 * A real mayfly app wired with a real local OIDC issuer (discovery + JWKS over HTTP on
 * 127.0.0.1). Tests talk to `app.api` through supertest, or to `url` over the network.
 */

export interface TestCa {
  readonly app: MayflyApp;
  readonly issuer: DevIssuer;
  readonly config: ServerConfig;
  /** How many times the CA key signed a leaf: proves "no certificate was issued". */
  signCount(): number;
  /** Base URL once `listen()` ran. */
  url: string;
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface TestCaOptions {
  readonly env?: Record<string, string>;
  readonly issuerOptions?: DevIssuerOptions;
  /** Changes to the dev issuer's config entry (type, SkipEmailVerification, ...). */
  readonly issuerConfig?: Partial<OidcIssuerConfig>;
  /** Extra issuers besides the dev issuer. */
  readonly extraIssuers?: ReadonlyMap<string, OidcIssuerConfig>;
  readonly metaIssuers?: ReadonlyMap<string, OidcIssuerConfig>;
  /** CIIssuerMetadata for ci-provider issuers. */
  readonly ciIssuerMetadata?: ReadonlyMap<string, CiIssuerMetadata>;
  /**
   * Read the identity config from a file (and reload it as the service does) instead of
   * building it: called once the dev issuer runs, returns the file's path.
   */
  readonly identityConfigFile?: (issuer: DevIssuer) => string;
  readonly overrides?: AppOverrides;
  readonly logger?: Logger;
  /** Where audit lines go; default: nowhere (tests that check them pass a sink). */
  readonly auditLogger?: Logger;
}

/** Counts signatures so tests can assert that a refusal issued nothing. */
function countingSigner(inner: CaSigner, onSign: () => void): CaSigner {
  return {
    // A getter, so a signer whose chain changes (or fails) is seen as it is now.
    get chain() {
      return inner.chain;
    },
    publicKey: inner.publicKey,
    hash: inner.hash,
    sign: (tbs) => {
      onSign();
      return inner.sign(tbs);
    },
  };
}

export async function startTestCa(options: TestCaOptions = {}): Promise<TestCa> {
  const issuer = await startDevIssuer(options.issuerOptions);
  const identityFile = options.identityConfigFile?.(issuer);
  const config = loadServerConfig({
    env: {
      MAYFLY_LOG_LEVEL: 'silent',
      ...(identityFile ? { MAYFLY_IDENTITY_CONFIG: identityFile } : {}),
      ...options.env,
    },
  });
  const identityConfig: IdentityConfig = {
    oidcIssuers: new Map([
      [issuer.url, { ...issuer.issuerConfig, ...options.issuerConfig }],
      ...(options.extraIssuers ?? []),
    ]),
    metaIssuers: new Map(options.metaIssuers ?? []),
    ciIssuerMetadata: new Map(options.ciIssuerMetadata ?? []),
  };
  const logger =
    options.logger ?? (process.env.MAYFLY_TEST_LOGS ? createLogger('debug') : silentLogger);
  let signs = 0;
  // MAYFLY_TEST_CA=pkcs11 (set by the *-pkcs11 e2e files): the CA key in a SoftHSM2 token.
  const hsmCa =
    !options.overrides?.signer && process.env.MAYFLY_TEST_CA === 'pkcs11'
      ? await softHsmCaSigner()
      : undefined;
  const base =
    options.overrides?.signer ??
    hsmCa?.signer ??
    (await createSigner(config, options.overrides?.clock ?? systemClock));
  const app = await createApp(config, logger, {
    discoveryRetryMs: 0,
    auditLogger: options.auditLogger ?? silentLogger,
    ...options.overrides,
    ...(identityFile ? {} : { identityConfig }),
    signer: countingSigner(base, () => signs++),
  });
  let server: Server | undefined;
  const ca: TestCa = {
    app,
    issuer,
    config,
    signCount: () => signs,
    url: '',
    async listen() {
      const bound = await listen(app.api, '127.0.0.1', 0);
      server = bound.server;
      ca.url = `http://127.0.0.1:${bound.port}`;
      return ca.url;
    },
    async close() {
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server!.close(() => resolve()));
      }
      await app.close();
      await hsmCa?.close();
      await issuer.close();
    },
  };
  return ca;
}

/** A v2 publicKeyRequest body. */
export function v2Body(
  token: string | undefined,
  pem: string,
  proof: Buffer,
): Record<string, unknown> {
  return {
    ...(token === undefined ? {} : { credentials: { oidcIdentityToken: token } }),
    publicKeyRequest: {
      publicKey: { algorithm: 'ECDSA', content: pem },
      proofOfPossession: proof.toString('base64'),
    },
  };
}

/** A v1 body as cosign sends it. */
export function v1Body(pem: string, proof: Buffer): Record<string, unknown> {
  return {
    publicKey: { content: Buffer.from(pem).toString('base64'), algorithm: 'ecdsa' },
    signedEmailAddress: proof.toString('base64'),
  };
}
