import type {
  Metadata,
  ServerUnaryCall,
  UntypedServiceImplementation,
  sendUnaryData,
} from '@grpc/grpc-js';
import { certificatePem } from '../../common/encoding';
import type { Logger } from '../../common/logger';
import { CaError } from '../common/errors';
import type { IssuerDescription } from '../identity/issuer-pool';
import type { Metrics } from '../metrics/metrics';
import type {
  KeyMaterial,
  RegistrationAuthority,
  SigningRequest,
  SigningResult,
} from '../ra/registration-authority';
import { callContext, compileTrust, type CallContext } from './call-context';
import type {
  ConfigurationMessage,
  CreateSigningCertificateRequestMessage,
  SigningCertificateMessage,
  TrustBundleMessage,
} from './messages';
import { OK_OUTCOME, logFailure, outcomeOf, startTimer, statusOf, toCaError } from './observe';
import { FULCIO_SERVICE } from '../../common/grpc/protos';

/**
 * dev.sigstore.fulcio.v2.CA over gRPC: a thin adapter from the protobuf messages to the
 * registration authority, the same RA (identity, proof, key policy, limits, CA) the HTTP
 * API calls, so a request can do nothing over gRPC that it cannot do over HTTP. The
 * per-client-address limit is spent first, as the HTTP API spends it before reading a body.
 */

export interface FulcioServiceDeps {
  readonly ra: Pick<RegistrationAuthority, 'handle'>;
  readonly trustBundle: () => readonly (readonly Uint8Array[])[];
  readonly issuers: () => readonly IssuerDescription[];
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Proxies whose x-forwarded-for metadata names the client (as for the HTTP API). */
  readonly trustedProxies?: readonly string[] | undefined;
}

/** Fulcio's metadata key for the token when the request's credentials field is empty. */
export const TOKEN_METADATA_KEY = 'oidcidentitytoken';

/**
 * The token as Fulcio reads it over gRPC: the credentials field, or, when that is empty,
 * the `oidcidentitytoken` metadata key if it has exactly one value. `authorization` is not
 * read (Fulcio's gateway maps it onto that key for HTTP only).
 */
export function tokenOf(
  request: CreateSigningCertificateRequestMessage,
  metadata: Metadata,
): string {
  const fromBody = request.credentials?.oidcIdentityToken ?? '';
  if (fromBody) return fromBody;
  const values = metadata.get(TOKEN_METADATA_KEY);
  return values.length === 1 && typeof values[0] === 'string' ? values[0] : '';
}

/**
 * The key as Fulcio reads it: a non-empty certificate_signing_request (raw PEM bytes) wins;
 * otherwise whatever public_key_request holds, so a request naming neither, or an empty
 * one, fails as an unparsable public key.
 */
export function keyOf(request: CreateSigningCertificateRequestMessage): KeyMaterial | undefined {
  const csr = request.certificateSigningRequest;
  if (csr && csr.length > 0) return { kind: 'csr', pem: csr.toString('latin1') };
  const pkr = request.publicKeyRequest;
  if (!pkr) return undefined;
  return {
    kind: 'publicKey',
    content: pkr.publicKey?.content ?? '',
    proof: pkr.proofOfPossession ?? Buffer.alloc(0),
  };
}

export function signingRequestOf(
  request: CreateSigningCertificateRequestMessage,
  metadata: Metadata,
): SigningRequest {
  return { token: tokenOf(request, metadata), key: keyOf(request) };
}

/** v2 chain PEMs are trimmed (Fulcio's csc.go); the CA part is encoded once per chain. */
const chainPemCache = new WeakMap<readonly Uint8Array[], readonly string[]>();
const trimmed = (der: Uint8Array) => certificatePem(der).trim();

function chainPems(result: SigningResult): string[] {
  let chain = chainPemCache.get(result.chain);
  if (!chain) {
    chain = result.chain.map(trimmed);
    chainPemCache.set(result.chain, chain);
  }
  return [trimmed(result.der), ...chain];
}

type Unary<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

export function createFulcioService(deps: FulcioServiceDeps): UntypedServiceImplementation {
  const trust = compileTrust(deps.trustedProxies);

  /** Runs one unary call: its context, its metrics, its status from the error table. */
  function unary<Req, Res>(
    method: string,
    handle: (call: ServerUnaryCall<Req, Res>, ctx: CallContext) => Promise<Res>,
    onFailure?: (ctx: CallContext, error: CaError, call: ServerUnaryCall<Req, Res>) => void,
  ): Unary<Req, Res> {
    const path = `/${FULCIO_SERVICE}/${method}`;
    return (call, callback) => {
      const done = startTimer(deps.metrics, FULCIO_SERVICE, method, 'unary');
      let ctx: CallContext;
      try {
        ctx = callContext(call, path, deps.logger, trust);
      } catch (err) {
        const error = toCaError(err);
        done(outcomeOf(error));
        callback(statusOf(error));
        return;
      }
      handle(call, ctx).then(
        (value) => {
          done(OK_OUTCOME);
          callback(null, value);
        },
        (err: unknown) => {
          const error = toCaError(err);
          logFailure(ctx, error);
          try {
            onFailure?.(ctx, error, call);
          } finally {
            done(outcomeOf(error));
            callback(statusOf(error));
          }
        },
      );
    };
  }

  const createSigningCertificate = unary<
    CreateSigningCertificateRequestMessage,
    SigningCertificateMessage
  >('CreateSigningCertificate', async (call, ctx) => {
    // The RA spends the per-client limit, runs the flow, and audits and counts the
    // outcome itself, as for every transport.
    const result = await deps.ra.handle(
      {
        requestId: ctx.requestId,
        route: ctx.path,
        clientIp: ctx.peerIp,
        forwardedFor: ctx.clientIp,
        clientAddress: ctx.clientIp,
        log: ctx.log,
      },
      async () => signingRequestOf(call.request, call.metadata),
    );
    if (result.embeddedScts)
      return { signedCertificateEmbeddedSct: { chain: { certificates: chainPems(result) } } };
    return {
      signedCertificateDetachedSct: {
        chain: { certificates: chainPems(result) },
        signedCertificateTimestamp: Buffer.alloc(0),
      },
    };
  });

  const getTrustBundle = unary<unknown, TrustBundleMessage>('GetTrustBundle', async () => {
    let bundle: readonly (readonly Uint8Array[])[];
    try {
      bundle = deps.trustBundle();
    } catch (err) {
      throw new CaError('trust_bundle', `trust bundle unavailable: ${(err as Error).message}`);
    }
    // Trust-bundle PEMs keep their trailing newline, as Fulcio marshals them.
    return { chains: bundle.map((chain) => ({ certificates: chain.map(certificatePem) })) };
  });

  const getConfiguration = unary<unknown, ConfigurationMessage>('GetConfiguration', async () => {
    let issuers: readonly IssuerDescription[];
    try {
      issuers = deps.issuers();
    } catch (err) {
      throw new CaError('configuration', `configuration unavailable: ${(err as Error).message}`);
    }
    return { issuers: issuers.map((issuer) => ({ ...issuer })) };
  });

  return {
    CreateSigningCertificate: createSigningCertificate,
    GetTrustBundle: getTrustBundle,
    GetConfiguration: getConfiguration,
  };
}
