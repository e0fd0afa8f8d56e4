import {
  X509Certificate,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * The probes: what a Sigstore client does, checked the way a client checks it. Each probe
 * either returns or throws a ProbeFailure saying why (never the token: it is read, used
 * and dropped).
 */

export type FailureReason =
  'connection' | 'timeout' | 'status' | 'response' | 'chain' | 'token' | 'internal';

export class ProbeFailure extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ProbeFailure';
  }
}

export type FetchLike = typeof fetch;

export interface HttpOptions {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly fetch: FetchLike;
}

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

function isTimeout(err: unknown): boolean {
  const name = (err as { name?: unknown } | undefined)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/** One HTTP exchange, body included, within the timeout; network trouble is a failure. */
async function exchange(http: HttpOptions, path: string, init: RequestInit): Promise<Answer> {
  const signal = AbortSignal.timeout(http.timeoutMs);
  try {
    const response = await http.fetch(`${http.baseUrl}${path}`, {
      ...init,
      redirect: 'manual',
      signal,
    });
    const body = await response.text();
    return {
      status: response.status,
      contentType: response.headers.get('content-type') ?? '',
      body,
    };
  } catch (err) {
    if (isTimeout(err)) throw new ProbeFailure('timeout', `no answer within ${http.timeoutMs} ms`);
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const why = typeof cause?.code === 'string' ? cause.code : (err as Error).message;
    throw new ProbeFailure('connection', `request failed: ${why}`);
  }
}

function expectStatus(answer: Answer, want: number): void {
  if (answer.status !== want) {
    throw new ProbeFailure(
      'status',
      `HTTP ${answer.status}, want ${want}: ${answer.body.slice(0, 200)}`,
      answer.status,
    );
  }
}

function json(answer: Answer): unknown {
  try {
    return JSON.parse(answer.body) as unknown;
  } catch {
    throw new ProbeFailure('response', 'the body is not JSON');
  }
}

function certificate(pem: unknown): X509Certificate {
  if (typeof pem !== 'string') throw new ProbeFailure('response', 'a certificate is not a string');
  try {
    return new X509Certificate(pem);
  } catch {
    throw new ProbeFailure('response', 'a certificate does not parse');
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function pemCertificates(text: string): X509Certificate[] {
  return (text.match(PEM_CERTIFICATE) ?? []).map(certificate);
}

/** Clocks of the prober and the CA may differ a little. */
const CLOCK_SKEW_MS = 60_000;

/** Every certificate is signed by the next one and the last one is a self-signed root. */
export function verifyLinks(chain: readonly X509Certificate[]): void {
  if (chain.length === 0) throw new ProbeFailure('chain', 'empty chain');
  chain.forEach((cert, i) => {
    const parent = chain[i + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey))
      throw new ProbeFailure(
        'chain',
        i + 1 < chain.length
          ? `certificate ${i} is not signed by certificate ${i + 1}`
          : 'the last certificate is not a self-signed root',
      );
  });
}

/** A chain as a client checks it: linked up to a self-signed root, every certificate valid now. */
export function verifyChain(chain: readonly X509Certificate[], now: Date): void {
  verifyLinks(chain);
  chain.forEach((cert, i) => {
    if (
      Date.parse(cert.validFrom) > now.getTime() + CLOCK_SKEW_MS ||
      Date.parse(cert.validTo) < now.getTime() - CLOCK_SKEW_MS
    )
      throw new ProbeFailure(
        'chain',
        `certificate ${i} is not valid now (${cert.validFrom} to ${cert.validTo})`,
      );
  });
}

/** The chain's root is one of the trusted roots (byte for byte). */
function assertAnchored(
  chain: readonly X509Certificate[],
  roots: readonly X509Certificate[],
): void {
  const root = chain[chain.length - 1]!;
  if (!roots.some((r) => r.raw.equals(root.raw)))
    throw new ProbeFailure(
      'chain',
      `root ${root.subject.replace(/\n/g, ', ')} is not in the trust bundle`,
    );
}

/** GET /api/v2/trustBundle: every chain verifies; answers the roots. */
export async function probeTrustBundle(http: HttpOptions): Promise<X509Certificate[]> {
  const answer = await exchange(http, '/api/v2/trustBundle', {
    headers: { accept: 'application/json' },
  });
  expectStatus(answer, 200);
  const body = json(answer) as { chains?: { certificates?: unknown[] }[] };
  if (!Array.isArray(body.chains) || body.chains.length === 0)
    throw new ProbeFailure('response', 'no chains in the trust bundle');
  return body.chains.map((chain, i) => {
    if (!Array.isArray(chain.certificates) || chain.certificates.length === 0)
      throw new ProbeFailure('response', `trust bundle chain ${i} is empty`);
    const certs = chain.certificates.map(certificate);
    // A published next CA may not be valid yet and a retired one may have expired: the
    // links are checked, the dates are not.
    verifyLinks(certs);
    return certs[certs.length - 1]!;
  });
}

/** GET /api/v2/configuration: a JSON list of issuers. */
export async function probeConfiguration(http: HttpOptions): Promise<void> {
  const answer = await exchange(http, '/api/v2/configuration', {
    headers: { accept: 'application/json' },
  });
  expectStatus(answer, 200);
  const body = json(answer) as { issuers?: unknown };
  if (!Array.isArray(body.issuers)) throw new ProbeFailure('response', 'no issuers list');
}

/** GET /api/v1/rootCert: a PEM chain. */
export async function probeRootCert(http: HttpOptions): Promise<void> {
  const answer = await exchange(http, '/api/v1/rootCert', {});
  expectStatus(answer, 200);
  if (pemCertificates(answer.body).length === 0)
    throw new ProbeFailure('response', 'no certificate in the answer');
}

/** The identity the proof of possession signs: the token's `email`, else its `sub` (as cosign). */
export function identityName(token: string): string {
  const parts = token.split('.');
  if (parts.length !== 3) throw new ProbeFailure('token', 'the token is not a JWT');
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch {
    throw new ProbeFailure('token', 'the token payload is not JSON');
  }
  if (typeof claims.email === 'string' && claims.email) return claims.email;
  if (typeof claims.sub === 'string' && claims.sub) return claims.sub;
  throw new ProbeFailure('token', 'the token has neither email nor sub');
}

export async function readToken(file: string): Promise<string> {
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (!token) throw new Error('empty');
    return token;
  } catch (err) {
    throw new ProbeFailure(
      'token',
      `cannot read the token file ${file}: ${(err as Error).message}`,
    );
  }
}

export interface ProbeKey {
  readonly privateKey: KeyObject;
  readonly pem: string;
  readonly spki: Buffer;
  /** The proof of possession: a DER ECDSA-SHA256 signature over the token's identity. */
  readonly proof: Buffer;
}

/** A fresh P-256 key and its proof for this token, as a signing client makes them. */
export function freshKey(token: string): ProbeKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKey,
    pem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    proof: sign('sha256', Buffer.from(identityName(token)), {
      key: privateKey,
      dsaEncoding: 'der',
    }),
  };
}

export function checkIssued(
  chain: readonly X509Certificate[],
  key: ProbeKey,
  roots: readonly X509Certificate[],
  now: Date,
): void {
  if (chain.length < 2)
    throw new ProbeFailure('chain', `chain of ${chain.length}, want a leaf and its CA`);
  const leaf = chain[0]!;
  const leafKey = createPublicKey(leaf.publicKey.export({ type: 'spki', format: 'pem' }));
  if (!leafKey.export({ type: 'spki', format: 'der' }).equals(key.spki))
    throw new ProbeFailure('chain', 'the certificate is not for the probe key');
  verifyChain(chain, now);
  assertAnchored(chain, roots);
}

/** POST /api/v2/signingCert with a fresh P-256 key and its proof, as sigstore-js does. */
export async function probeSigningCertV2(
  http: HttpOptions,
  token: string,
  roots: readonly X509Certificate[],
  now: () => Date,
): Promise<void> {
  const key = freshKey(token);
  const answer = await exchange(http, '/api/v2/signingCert', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      credentials: { oidcIdentityToken: token },
      publicKeyRequest: {
        publicKey: { algorithm: 'ECDSA', content: key.pem },
        proofOfPossession: key.proof.toString('base64'),
      },
    }),
  });
  expectStatus(answer, 200);
  const body = json(answer) as Record<string, { chain?: { certificates?: unknown[] } } | undefined>;
  const certificates =
    body.signedCertificateDetachedSct?.chain?.certificates ??
    body.signedCertificateEmbeddedSct?.chain?.certificates;
  if (!Array.isArray(certificates))
    throw new ProbeFailure('response', 'no certificate chain in the answer');
  checkIssued(certificates.map(certificate), key, roots, now());
}

/** POST /api/v1/signingCert as cosign 2 does: Bearer token, base64 PEM key, PEM chain back. */
export async function probeSigningCertV1(
  http: HttpOptions,
  token: string,
  roots: readonly X509Certificate[],
  now: () => Date,
): Promise<void> {
  const key = freshKey(token);
  const answer = await exchange(http, '/api/v1/signingCert', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/pem-certificate-chain',
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({
      publicKey: { content: Buffer.from(key.pem).toString('base64'), algorithm: 'ecdsa' },
      signedEmailAddress: key.proof.toString('base64'),
    }),
  });
  expectStatus(answer, 201);
  checkIssued(pemCertificates(answer.body), key, roots, now());
}

export async function readTrustedRoots(file: string): Promise<X509Certificate[]> {
  const roots = pemCertificates(await readFile(file, 'utf8'));
  if (roots.length === 0) throw new Error(`no certificate in ${file}`);
  return roots;
}
