/**
 * Drives the unmodified Sigstore JS client libraries against mayfly.
 *
 * Signing uses the same building blocks as `sigstore.sign()` (FulcioSigner + a witness + a bundle
 * builder) but with a TSA witness only: we run no Rekor, so the bundle's only proof of signing
 * time is an RFC 3161 timestamp. Verification builds a TrustedRoot from mayfly's
 * `GET /api/v2/trustBundle` plus the TSA chain, with no tlogs and (unless asked) no ctlogs.
 * See docs/sigstore-js-notes.md for what the libraries send and check.
 */
import { createPublicKey } from 'node:crypto';

import { bundleFromJSON, bundleToJSON, type SerializedBundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import {
  DSSEBundleBuilder,
  FulcioSigner,
  MessageSignatureBundleBuilder,
  TSAWitness,
  type BundleBuilder,
} from '@sigstore/sign';
import { Verifier, toSignedEntity, toTrustMaterial, type Signer } from '@sigstore/verify';

import { buildTrustedRoot, type TrustedRootJson } from '../../services/cli/trust-material';

/** JSON body of Fulcio's `GET /api/v2/trustBundle`. */
export interface TrustBundleJSON {
  chains: { certificates: string[] }[];
}

/** The protobuf-specs JSON encoding of a TrustedRoot (as `mayfly trusted-root` writes it). */
export type TrustedRootJSON = TrustedRootJson;

/** A certificate as PEM text (one or more blocks) or as DER bytes. */
export type CertificateInput = string | Uint8Array;

export type BundleKind = 'messageSignature' | 'dsseEnvelope';

export interface SignOptions {
  /** mayfly base URL without path, e.g. `http://127.0.0.1:5555`; the client appends `/api/v2/signingCert`. */
  fulcioURL: string;
  /** TSA base URL; the client appends `/api/v1/timestamp` when the URL has no path. */
  tsaURL: string;
  /** A raw OIDC JWT. It must carry `email` with `email_verified: true`, or else a `sub` (see notes). */
  identityToken: string;
  payload: Buffer | string;
  /**
   * `messageSignature` (default, what `sigstore sign` does for a blob): a v0.2 bundle whose
   * verification material is `x509CertificateChain` holding only the leaf.
   * `dsseEnvelope`: a v0.3 bundle with a single `certificate`.
   */
  kind?: BundleKind;
  /** DSSE payloadType; only used with `kind: 'dsseEnvelope'`. */
  payloadType?: string;
  /** Per-request timeout in milliseconds for the Fulcio and TSA calls. */
  timeoutMs?: number;
}

const DEFAULT_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const DEFAULT_TIMEOUT_MS = 10_000;

/** Signs `payload` with an ephemeral P-256 key certified by mayfly and timestamped by the TSA. */
export async function signWithSigstoreJs(options: SignOptions): Promise<SerializedBundle> {
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signer = new FulcioSigner({
    fulcioBaseURL: stripTrailingSlash(options.fulcioURL),
    identityProvider: { getToken: () => Promise.resolve(options.identityToken) },
    // No retries: a failing mayfly should fail the test at once with its own status and message.
    retry: 0,
    timeout,
  });
  const witnesses = [
    new TSAWitness({ tsaBaseURL: stripTrailingSlash(options.tsaURL), retry: 0, timeout }),
  ];
  const kind = options.kind ?? 'messageSignature';
  const builder: BundleBuilder =
    kind === 'dsseEnvelope'
      ? new DSSEBundleBuilder({ signer, witnesses })
      : new MessageSignatureBundleBuilder({ signer, witnesses });

  try {
    const bundle = await builder.create({
      data: toBuffer(options.payload),
      type: kind === 'dsseEnvelope' ? (options.payloadType ?? DEFAULT_PAYLOAD_TYPE) : undefined,
    });
    return bundleToJSON(bundle);
  } catch (err) {
    // sigstore-js wraps the HTTP error (which holds mayfly's status and message) in an
    // InternalError with a generic message; surface the whole chain in the test failure.
    throw new Error(`sigstore-js signing failed: ${describeError(err)}`, { cause: err });
  }
}

export interface VerifyOptions {
  bundle: SerializedBundle;
  /** The signed artifact. For DSSE bundles it must equal the envelope payload. */
  payload: Buffer | string;
  /** mayfly's `GET /api/v2/trustBundle` JSON; each chain becomes one certificate authority. */
  trustBundle: TrustBundleJSON;
  /** TSA chain, signing certificate first, root last (PEM strings and/or DER). */
  tsaChain: readonly CertificateInput[];
  /** Expected identity, compared exactly (not as a regular expression, see below). */
  identity: { san: string; issuer: string };
  /**
   * CT log public keys (SPKI as PEM or DER). Only needed if mayfly embeds SCTs in the leaf:
   * @sigstore/verify checks every embedded SCT even with ctlogThreshold 0, and throws
   * "SCT verification failed" when the log is not in the trusted root. When given, at least
   * one verified SCT is required; when omitted, the trusted root has no ctlogs and none is.
   */
  ctLogPublicKeys?: readonly (string | Uint8Array)[];
}

export interface VerifiedIdentity {
  /** The leaf's SAN: URI if present, else the rfc822Name (email). */
  san: string;
  /** The leaf's issuer, from 1.3.6.1.4.1.57264.1.8 (falling back to the deprecated .1.1). */
  issuer: string;
}

/**
 * Verifies a bundle with @sigstore/verify: chain to a mayfly CA at the TSA's time, the RFC 3161
 * timestamp, the signature, and the identity. Throws on any failure.
 */
export async function verifyWithSigstoreJs(options: VerifyOptions): Promise<VerifiedIdentity> {
  const bundle = bundleFromJSON(options.bundle);
  const payload = toBuffer(options.payload);

  // toSignedEntity ignores the artifact for DSSE (the payload is inside the envelope), so an
  // envelope over a different payload would verify; check it ourselves.
  if (
    bundle.content.$case === 'dsseEnvelope' &&
    !bundle.content.dsseEnvelope.payload.equals(payload)
  ) {
    throw new Error('DSSE envelope payload does not match the expected payload');
  }

  const ctLogPublicKeys = options.ctLogPublicKeys ?? [];
  const trustedRoot = TrustedRoot.fromJSON(
    buildTrustedRootJSON(options.trustBundle, options.tsaChain, ctLogPublicKeys),
  );
  const verifier = new Verifier(toTrustMaterial(trustedRoot), {
    // No Rekor: the bundle has no tlog entries, and the default threshold is 1.
    tlogThreshold: 0,
    // Without CT logs in the trusted root no SCT could be checked, so require none. (A Fulcio
    // without a CT log returns a detached, empty SCT, which sigstore-js drops anyway.)
    ctlogThreshold: ctLogPublicKeys.length > 0 ? 1 : 0,
    // The RFC 3161 timestamp is then the only source of signing time, and it is required: the
    // leaf chain is validated at each verified timestamp's time, and only there.
    timestampThreshold: 1,
  });

  const { san, issuer } = options.identity;
  let signer: Signer;
  try {
    signer = verifier.verify(toSignedEntity(bundle, payload), {
      // The verifier does `actualSAN.match(policySAN)`: the policy value is an unanchored
      // regular expression. Escape and anchor it so "a.b@x.y" cannot match "aXb@x.yz".
      subjectAlternativeName: `^${escapeRegExp(san)}$`,
      extensions: { issuer },
    });
  } catch (err) {
    throw new Error(`sigstore-js verification failed: ${describeError(err)}`, { cause: err });
  }

  const verified = {
    san: signer.identity?.subjectAlternativeName ?? '',
    issuer: signer.identity?.extensions?.issuer ?? '',
  };
  // Belt and braces: the policy already enforced both, this guards against regex surprises.
  if (verified.san !== san || verified.issuer !== issuer) {
    throw new Error(
      `verified identity ${JSON.stringify(verified)} is not ${JSON.stringify(options.identity)}`,
    );
  }
  return verified;
}

/**
 * Builds the TrustedRoot JSON (protobuf-specs shape) from mayfly's trust bundle and a TSA chain
 * with the same code as `mayfly trusted-root` (services/cli/trust-material.ts): each CA and the
 * TSA valid for their first certificate's validity.
 */
export function buildTrustedRootJSON(
  trustBundle: TrustBundleJSON,
  tsaChain: readonly CertificateInput[],
  ctLogPublicKeys: readonly (string | Uint8Array)[] = [],
): TrustedRootJSON {
  if (trustBundle.chains.length === 0) throw new Error('trust bundle has no chains');
  const caChains = trustBundle.chains.map((chain, i) => {
    const ders = chain.certificates.flatMap((c) => toDerList(c));
    if (ders.length === 0) throw new Error(`trust bundle chain ${i} has no certificates`);
    return ders.map((d) => new Uint8Array(d));
  });
  const tsaDers = tsaChain.flatMap((c) => toDerList(c)).map((d) => new Uint8Array(d));
  return buildTrustedRoot({
    caChains,
    tsaChains: [tsaDers],
    ctLogs: ctLogPublicKeys.map((key) => ({
      baseUrl: '',
      publicKeyPem: createPublicKey(
        typeof key === 'string' ? key : { key: Buffer.from(key), format: 'der', type: 'spki' },
      )
        .export({ format: 'pem', type: 'spki' })
        .toString(),
      validFrom: new Date(0),
    })),
  });
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----/g;

/** PEM text may hold several blocks, with or without trailing whitespace (Fulcio trims leaf PEMs). */
function toDerList(input: CertificateInput): Buffer[] {
  if (typeof input !== 'string')
    return [Buffer.from(input.buffer, input.byteOffset, input.byteLength)];
  const ders = [...input.matchAll(PEM_CERT)].map((m) => Buffer.from(m[1] ?? '', 'base64'));
  if (ders.length === 0) throw new Error(`not a PEM certificate: ${input.slice(0, 40)}...`);
  return ders;
}

function toBuffer(payload: Buffer | string): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
}

function stripTrailingSlash(url: string): string {
  // The clients build `${baseURL}/api/...`; a trailing slash would produce `//api/...`.
  return url.replace(/\/+$/, '');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Flattens sigstore-js error chains into one line, e.g.
 * `CA_CREATE_SIGNING_CERTIFICATE_ERROR: error creating signing certificate - (400) <mayfly message>`.
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 8; depth++) {
    if (!(cur instanceof Error)) {
      parts.push(String(cur));
      break;
    }
    const { message } = cur;
    const code = (cur as { code?: unknown }).code;
    // InternalError already appends its HTTPError cause's message to its own; skip repeats.
    if (!parts.some((p) => p.includes(message))) {
      parts.push(typeof code === 'string' ? `${code}: ${message}` : message);
    }
    cur = cur.cause;
  }
  return parts.join(' <- ');
}
