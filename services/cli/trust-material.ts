import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { decodePemBlocks } from '../common/encoding';

/**
 * Builds the JSON documents Sigstore clients read to trust a deployment, in the protobuf-specs
 * JSON shapes (sigstore_trustroot.proto): TrustedRoot v0.1 and SigningConfig v0.2. Input
 * comes from running services over HTTP or from files; nothing here signs anything.
 */

export const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';
export const SIGNING_CONFIG_MEDIA_TYPE = 'application/vnd.dev.sigstore.signingconfig.v0.2+json';

export interface TimeRangeJson {
  start: string;
  end?: string;
}

export interface CertificateAuthorityJson {
  subject: { organization: string; commonName: string };
  uri: string;
  certChain: { certificates: { rawBytes: string }[] };
  validFor: TimeRangeJson;
  operator?: string;
}

export interface TransparencyLogJson {
  baseUrl: string;
  hashAlgorithm: 'SHA2_256';
  publicKey: { rawBytes: string; keyDetails: string; validFor: TimeRangeJson };
  logId: { keyId: string };
  operator?: string;
}

export interface TrustedRootJson {
  mediaType: string;
  tlogs: TransparencyLogJson[];
  certificateAuthorities: CertificateAuthorityJson[];
  ctlogs: TransparencyLogJson[];
  timestampAuthorities: CertificateAuthorityJson[];
}

export interface CtLogInput {
  readonly baseUrl: string;
  /** PEM SubjectPublicKeyInfo. */
  readonly publicKeyPem: string;
  readonly validFrom: Date;
  readonly validUntil?: Date;
}

export type Chain = readonly Uint8Array[];

/** RFC 3339 as protobuf-specs writes a Timestamp ("…T11:58:08.000Z"). */
function iso(date: Date): string {
  return date.toISOString();
}

function subjectOf(cert: X509Certificate): { organization: string; commonName: string } {
  const fields = new Map<string, string>();
  for (const line of cert.subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !fields.has(line.slice(0, eq))) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return { organization: fields.get('O') ?? '', commonName: fields.get('CN') ?? '' };
}

/**
 * One authority: its chain (issuing or signing certificate first, root last) and the window
 * in which signatures under it are trusted, which is its first certificate's validity.
 */
export function authority(chain: Chain, uri: string, operator?: string): CertificateAuthorityJson {
  if (chain.length === 0) throw new Error('a certificate chain is empty');
  const certs = chain.map((der) => new X509Certificate(der));
  certs.forEach((cert, i) => {
    const parent = certs[i + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
      throw new Error(
        `certificate ${i + 1} of a chain (${cert.subject.replace(/\n/g, ', ')}) is not signed by the next one`,
      );
    }
  });
  const first = certs[0]!;
  return {
    subject: subjectOf(first),
    uri,
    certChain: {
      certificates: chain.map((der) => ({ rawBytes: Buffer.from(der).toString('base64') })),
    },
    validFor: { start: iso(new Date(first.validFrom)), end: iso(new Date(first.validTo)) },
    ...(operator ? { operator } : {}),
  };
}

/** The protobuf-specs PublicKeyDetails name Sigstore verifiers expect for a log key. */
export function keyDetailsOf(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'PKIX_ECDSA_P256_SHA_256';
    if (curve === 'secp384r1') return 'PKIX_ECDSA_P384_SHA_384';
    if (curve === 'secp521r1') return 'PKIX_ECDSA_P521_SHA_512';
  }
  if (key.asymmetricKeyType === 'ed25519') return 'PKIX_ED25519';
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits === 2048) return 'PKIX_RSA_PKCS1V15_2048_SHA256';
    if (bits === 3072) return 'PKIX_RSA_PKCS1V15_3072_SHA256';
    if (bits === 4096) return 'PKIX_RSA_PKCS1V15_4096_SHA256';
  }
  throw new Error(`unsupported log key type ${String(key.asymmetricKeyType)}`);
}

export function ctLog(input: CtLogInput): TransparencyLogJson {
  const key = createPublicKey(input.publicKeyPem);
  const spki = key.export({ format: 'der', type: 'spki' });
  return {
    baseUrl: input.baseUrl.replace(/\/+$/, ''),
    hashAlgorithm: 'SHA2_256',
    publicKey: {
      rawBytes: spki.toString('base64'),
      keyDetails: keyDetailsOf(key),
      validFor: {
        start: iso(input.validFrom),
        ...(input.validUntil ? { end: iso(input.validUntil) } : {}),
      },
    },
    // RFC 6962 §3.2: the log ID is the SHA-256 of the DER SubjectPublicKeyInfo.
    logId: { keyId: createHash('sha256').update(spki).digest('base64') },
  };
}

export interface TrustedRootInput {
  /** CA chains: the signing one, then a next or previous one during a rotation. */
  readonly caChains: readonly Chain[];
  readonly caUri?: string;
  readonly tsaChains: readonly Chain[];
  readonly tsaUri?: string;
  readonly ctLogs?: readonly CtLogInput[];
  readonly operator?: string;
}

export function buildTrustedRoot(input: TrustedRootInput): TrustedRootJson {
  if (input.caChains.length === 0) throw new Error('a trusted root needs at least one CA chain');
  for (const chain of input.tsaChains) {
    // Verifiers take the first certificate as the TSA's and need the rest to reach a root.
    if (chain.length < 2) throw new Error('a TSA chain needs the TSA certificate and its root');
  }
  return {
    mediaType: TRUSTED_ROOT_MEDIA_TYPE,
    tlogs: [],
    certificateAuthorities: input.caChains.map((c) =>
      authority(c, input.caUri ?? '', input.operator),
    ),
    ctlogs: (input.ctLogs ?? []).map(ctLog),
    timestampAuthorities: input.tsaChains.map((c) =>
      authority(c, input.tsaUri ?? '', input.operator),
    ),
  };
}

export interface ServiceJson {
  url: string;
  majorApiVersion: number;
  validFor: TimeRangeJson;
  operator: string;
}

export interface SigningConfigJson {
  mediaType: string;
  caUrls: ServiceJson[];
  oidcUrls: ServiceJson[];
  rekorTlogUrls: ServiceJson[];
  tsaUrls: ServiceJson[];
  rekorTlogConfig: { selector: 'ANY' | 'ALL' | 'EXACT'; count?: number };
  tsaConfig: { selector: 'ANY' | 'ALL' | 'EXACT'; count?: number };
}

export interface SigningConfigInput {
  readonly caUrl: string;
  readonly tsaUrl?: string;
  readonly oidcUrl?: string;
  readonly operator?: string;
  readonly validFrom: Date;
}

export function buildSigningConfig(input: SigningConfigInput): SigningConfigJson {
  const service = (url: string, majorApiVersion: number): ServiceJson => ({
    url,
    majorApiVersion,
    validFor: { start: iso(new Date(Math.floor(input.validFrom.getTime() / 1000) * 1000)) },
    operator: input.operator ?? 'mayfly',
  });
  const base = (url: string) => url.replace(/\/+$/, '');
  return {
    mediaType: SIGNING_CONFIG_MEDIA_TYPE,
    caUrls: [service(base(input.caUrl), 1)],
    oidcUrls: input.oidcUrl ? [service(base(input.oidcUrl), 1)] : [],
    rekorTlogUrls: [],
    // Clients POST to the URL as given, so it names the endpoint, as Sigstore's own does.
    tsaUrls: input.tsaUrl
      ? [
          service(
            /\/api\/v1\/timestamp$/.test(base(input.tsaUrl))
              ? base(input.tsaUrl)
              : `${base(input.tsaUrl)}/api/v1/timestamp`,
            1,
          ),
        ]
      : [],
    rekorTlogConfig: { selector: 'ANY' },
    tsaConfig: { selector: 'ANY' },
  };
}

/** Every CERTIFICATE block of a PEM text, in order. */
export function pemChain(text: string, what: string): Uint8Array[] {
  const chain = decodePemBlocks(text)
    .filter((b) => b.type === 'CERTIFICATE')
    .map((b) => new Uint8Array(b.der));
  if (chain.length === 0) throw new Error(`${what} holds no PEM certificate`);
  return chain;
}

export async function readPemChain(path: string): Promise<Uint8Array[]> {
  return pemChain(await readFile(path, 'utf8'), path);
}

async function get(url: string): Promise<Response> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res;
}

/** The CA's chains from Fulcio's `GET /api/v2/trustBundle`. */
export async function fetchCaChains(caUrl: string): Promise<Uint8Array[][]> {
  const res = await get(`${caUrl.replace(/\/+$/, '')}/api/v2/trustBundle`);
  const body = (await res.json()) as { chains?: { certificates?: unknown }[] };
  const chains = (body.chains ?? []).map((c, i) => {
    if (!Array.isArray(c.certificates))
      throw new Error(`trust bundle chain ${i} has no certificates`);
    return c.certificates.flatMap((pem: unknown) =>
      pemChain(String(pem), `trust bundle chain ${i}`),
    );
  });
  if (chains.length === 0) throw new Error(`${caUrl} has an empty trust bundle`);
  return chains;
}

/** The TSA's chain from `GET /api/v1/timestamp/certchain`. */
export async function fetchTsaChain(tsaUrl: string): Promise<Uint8Array[]> {
  const base = tsaUrl.replace(/\/+$/, '').replace(/\/api\/v1\/timestamp$/, '');
  const res = await get(`${base}/api/v1/timestamp/certchain`);
  return pemChain(await res.text(), `${base}/api/v1/timestamp/certchain`);
}
