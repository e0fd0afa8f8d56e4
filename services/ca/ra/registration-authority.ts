import type { Clock } from '../common/clock';
import { CaError } from '../common/errors';
import type { Logger } from '../common/logger';
import type { Principal } from '../identity/principal';
import type { CertificateAuthority, IssuedCertificate } from '../issuance/certificate-authority';
import { randomSerial } from '../issuance/serial';
import type { AlgorithmPolicy } from '../pop/algorithms';
import { verifyCsr } from '../pop/csr';
import { verifyProof } from '../pop/proof';
import { parsePublicKey } from '../pop/public-key';

/**
 * The request flow of POST signingCert, independent of HTTP: verify the identity, then the
 * key and its proof, then let the CA issue. The order is Fulcio's, so that every failure
 * gets the same answer it would get from Fulcio.
 */

export type KeyMaterial =
  | {
      readonly kind: 'publicKey';
      readonly content: Uint8Array | string;
      readonly proof: Uint8Array;
    }
  | { readonly kind: 'csr'; readonly pem: string };

export interface SigningRequest {
  readonly token: string;
  /** Undefined when the request named no key at all. */
  readonly key: KeyMaterial | undefined;
}

export interface Authenticator {
  authenticate(token: string): Promise<Principal>;
}

export interface SigningResult extends IssuedCertificate {
  readonly principal: Principal;
}

export interface RegistrationAuthorityDeps {
  readonly identity: Authenticator;
  readonly ca: CertificateAuthority;
  readonly algorithms: AlgorithmPolicy;
  readonly clock: Clock;
  readonly lifetimeSeconds: number;
  readonly logger: Logger;
}

export class RegistrationAuthority {
  constructor(private readonly deps: RegistrationAuthorityDeps) {}

  async createSigningCertificate(request: SigningRequest): Promise<SigningResult> {
    const principal = await this.deps.identity.authenticate(request.token);
    const key = this.verifyKey(request.key, principal);
    const { notBefore, notAfter } = this.validity();
    const issued = await this.deps.ca.issue({
      publicKey: key.spki,
      identity: principal.certificateIdentity(),
      serial: randomSerial(),
      notBefore,
      notAfter,
    });
    return { ...issued, principal };
  }

  private verifyKey(material: KeyMaterial | undefined, principal: Principal) {
    if (!material) throw new CaError('invalid_public_key', 'request names no public key');
    if (material.kind === 'csr') {
      const { key, hash } = verifyCsr(material.pem);
      this.deps.algorithms.assertPermitted(key.algorithm, hash);
      return key;
    }
    const key = parsePublicKey(material.content);
    const hash = verifyProof(key, material.proof, principal.name);
    this.deps.algorithms.assertPermitted(key.algorithm, hash);
    return key;
  }

  /** Now to now + lifetime in whole seconds, never past the issuing certificate. */
  private validity(): { notBefore: Date; notAfter: Date } {
    const now = Math.floor(this.deps.clock.now().getTime() / 1000) * 1000;
    const limit = this.deps.ca.notAfterLimit.getTime();
    const notAfter = Math.min(now + this.deps.lifetimeSeconds * 1000, limit);
    if (notAfter <= now) throw new CaError('ca_backend', 'the issuing certificate has expired');
    if (notAfter < now + this.deps.lifetimeSeconds * 1000) {
      this.deps.logger.warn(
        { notAfter: new Date(notAfter).toISOString() },
        'leaf validity shortened to the issuing certificate',
      );
    }
    return { notBefore: new Date(now), notAfter: new Date(notAfter) };
  }
}
