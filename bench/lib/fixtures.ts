import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DevAlgorithm, DevIssuer } from '../../services/dev-issuer/dev-issuer';
import type { RequestShape } from './load';

/**
 * Realistic requests, made before any measurement: one identity token per CI job minted by
 * a local OIDC issuer, a fresh P-256 key per request with its proof of possession, in both
 * API versions' shapes.
 */

export interface Fixture {
  readonly email: string;
  readonly token: string;
  /** SPKI PEM, as clients send it. */
  readonly pem: string;
  readonly spki: Buffer;
  /** DER ECDSA signature over the email. */
  readonly proof: Buffer;
  /** POST /api/v2/signingCert body. */
  readonly v2Body: string;
  /** POST /api/v1/signingCert body (the token goes in Authorization). */
  readonly v1Body: string;
}

export async function makeFixtures(
  issuer: DevIssuer,
  count: number,
  alg: DevAlgorithm = 'ES256',
  tag = 'job',
  // Tokens last as long as a long benchmark (or soak); a CI token would last minutes.
  expiresIn = 4 * 3600,
): Promise<Fixture[]> {
  const out: Fixture[] = [];
  for (let i = 0; i < count; i++) {
    const email = `ci-${tag}-${i}@builds.example.com`;
    const token = await issuer.mintEmail(email, { alg, expiresIn });
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const proof = sign('sha256', Buffer.from(email, 'utf8'), {
      key: privateKey,
      dsaEncoding: 'der',
    });
    out.push({
      email,
      token,
      pem,
      spki,
      proof,
      v2Body: JSON.stringify({
        credentials: { oidcIdentityToken: token },
        publicKeyRequest: {
          publicKey: { algorithm: 'ECDSA', content: pem },
          proofOfPossession: proof.toString('base64'),
        },
      }),
      v1Body: JSON.stringify({
        publicKey: { content: Buffer.from(pem).toString('base64'), algorithm: 'ecdsa' },
        signedEmailAddress: proof.toString('base64'),
      }),
    });
  }
  return out;
}

/**
 * Limits high enough that no benchmark request is refused: the limiter does all of its
 * work (every bucket is spent) without changing what is measured.
 */
export function generousLimitsFile(dir: string): string {
  const path = join(dir, 'ratelimits.yaml');
  writeFileSync(
    path,
    [
      'defaults:',
      '  per-client-ip: { burst: 1000000, count: 100000, period: 1s }',
      '  per-identity: { burst: 1000000, count: 100000, period: 1s }',
      '  per-issuer: { burst: 1000000, count: 100000, period: 1s }',
      '  global: { burst: 1000000, count: 100000, period: 1s }',
      '',
    ].join('\n'),
  );
  return path;
}

export function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), 'mayfly-bench-'));
}

/** The fixtures as POST /api/v2/signingCert requests, for the load generators. */
export function v2Requests(fixtures: readonly Fixture[]): RequestShape[] {
  return fixtures.map((f) => ({
    path: '/api/v2/signingCert',
    body: f.v2Body,
    headers: { 'content-type': 'application/json' },
  }));
}
