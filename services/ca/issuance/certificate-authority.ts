import { X509Certificate } from 'node:crypto';
import type { CertificateIdentity } from '../certificate-identity/certificate-identity';
import { keyAlgorithmName, type AuditLog, type AuditRequest } from '../audit/audit-log';
import { CaError, isCaError } from '../common/errors';
import { withTimeout } from '../../common/timeout';
import {
  fixedSource,
  isSignerSource,
  type CaSigner,
  type SignerSource,
} from '../../common/signer/signer';
import { keyIdentifier, signatureAlgorithmFor, subjectKeyIdOf, subjectNameDer } from './der';
import { sctList, sha256 } from '../../common/ct/sct';
import type { CtLogs } from './ct-logs';
import { CT_POISON_EXTENSION, LeafTemplate, sctListExtensionDer } from './leaf-template';
import { lintCertificate, type LintExpectation, type LintIssuer } from './lint';
import { serialHex } from './serial';
import { leafKeyId, readSpki, type SpkiInfo } from './spki';

/** Plain data the registration authority hands to the CA. */
export interface IssuanceRequest {
  readonly publicKey: Uint8Array;
  readonly identity: CertificateIdentity;
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Who asked, for the audit lines (plain data: the CA never runs identity code). */
  readonly requester?: IssuanceRequester;
}

export interface IssuanceRequester {
  readonly origin: AuditRequest;
  /** The token's verified `iss`, its issuer type and `sub`. */
  readonly issuer: string;
  readonly issuerType: string;
  readonly subject: string;
}

/** A request with no requester named (a direct caller of the CA). */
const UNNAMED: IssuanceRequester = {
  origin: { requestId: '', route: 'ca', clientIp: undefined },
  issuer: '',
  issuerType: '',
  subject: '',
};

export interface CertificateAuthorityOptions {
  /** Told how long each signature took (the signer latency metric). */
  readonly observer?: SigningObserver;
  /** How long one signature may take (a hung KMS or HSM fails the request, not holds it). */
  readonly signTimeoutMs?: number;
  /** Where the CA audits what it signs: the request before, the result (or failure) after. */
  readonly audit?: AuditLog;
  /**
   * Certificate Transparency: with logs, every certificate is first a poisoned
   * precertificate logged with add-pre-chain, and the verified SCTs are embedded in the
   * final certificate. Without, certificates are issued as they are (no SCT).
   */
  readonly ct?: CtLogs;
  /** Told about each SCT embedded, per log. */
  readonly ctObserver?: { embedded(log: string): void };
}

export interface IssuedCertificate {
  readonly der: Uint8Array;
  /** CA chain, issuing certificate first, root last. */
  readonly chain: readonly Uint8Array[];
  /** Lower-case hex, for logs and audit. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** How many SCTs the certificate carries (0: no CT log configured). */
  readonly embeddedScts?: number;
}

const MAX_SERIAL_OCTETS = 20;

/** Told how long each signature by the CA key took (for the signer latency metric). */
export interface SigningObserver {
  signed(result: 'ok' | 'error', seconds: number): void;
}

/** What the CA derives once from an issuing certificate. */
interface IssuingCa {
  readonly signer: CaSigner;
  readonly issuing: X509Certificate;
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  readonly notAfter: Date;
  /** The leaf's fixed parts, encoded once (serial, validity, key and identity spliced in). */
  readonly template: LeafTemplate;
  /** What the final check compares a signed leaf with. */
  readonly lintIssuer: LintIssuer;
  /** SHA-256 of the issuing certificate's SPKI (RFC 6962 issuer_key_hash). */
  readonly issuerKeyHash: Uint8Array;
}

function describeIssuing(signer: CaSigner): IssuingCa {
  const first = signer.chain[0];
  if (!first) throw new Error('CA chain is empty');
  const issuing = new X509Certificate(first);
  const issuerName = subjectNameDer(first);
  // The AKI names the issuing certificate's own SKI; verifiers (OpenSSL, Go) refuse a
  // leaf whose AKI differs from it. Only a CA certificate without an SKI gets a computed one.
  const authorityKeyId =
    subjectKeyIdOf(first) ??
    keyIdentifier(new Uint8Array(issuing.publicKey.export({ format: 'der', type: 'spki' })));
  const signatureAlgorithm = new Uint8Array(
    signatureAlgorithmFor(signer.publicKey, signer.hash).toSchema().toBER(false),
  );
  const notAfter = new Date(Date.parse(issuing.validTo));
  return {
    signer,
    issuing,
    issuerName,
    authorityKeyId,
    notAfter,
    template: new LeafTemplate({ issuerName, authorityKeyId, signatureAlgorithm }),
    issuerKeyHash: sha256(issuing.publicKey.export({ format: 'der', type: 'spki' })),
    lintIssuer: {
      name: issuerName,
      keyId: authorityKeyId,
      // The issuing certificate's key, not the signer's: a signer whose key does not match
      // its certificate must not get a leaf out.
      publicKey: issuing.publicKey,
      hash: signer.hash,
      signatureAlgorithm,
      notAfter,
    },
  };
}

function sameChain(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  return a.length === b.length && a.every((der, i) => Buffer.from(der).equals(b[i]!));
}

/**
 * The CA proper. It trusts nothing about the request it gets: it re-checks the key,
 * the SAN and the validity, builds the certificate, signs it and parses it back.
 *
 * It signs with whatever its source holds when a request starts (the file CA may be
 * reloaded meanwhile); one request never mixes two CAs.
 */
export class CertificateAuthority {
  private readonly source: SignerSource;
  private readonly described = new WeakMap<CaSigner, IssuingCa>();
  private readonly observer: SigningObserver | undefined;
  private readonly signTimeoutMs: number;
  private readonly audit: AuditLog | undefined;
  private readonly ct: CtLogs | undefined;
  private readonly ctObserver: { embedded(log: string): void } | undefined;

  constructor(signer: CaSigner | SignerSource, options: CertificateAuthorityOptions = {}) {
    this.source = isSignerSource(signer) ? signer : fixedSource(signer);
    this.observer = options.observer;
    this.signTimeoutMs = options.signTimeoutMs ?? 10_000;
    this.audit = options.audit;
    this.ct = options.ct;
    this.ctObserver = options.ctObserver;
    this.issuingCa(); // a CA without a chain fails here, at start
  }

  private issuingCa(): IssuingCa {
    const { signer } = this.source.current();
    let ca = this.described.get(signer);
    if (!ca) {
      ca = describeIssuing(signer);
      this.described.set(signer, ca);
    }
    return ca;
  }

  /** The latest notAfter a leaf may have. */
  get notAfterLimit(): Date {
    return this.issuingCa().notAfter;
  }

  /** The signing chain first, then any other published chain (next, previous CA). */
  trustBundle(): readonly (readonly Uint8Array[])[] {
    const { signer, publishedChains } = this.source.current();
    const chains: (readonly Uint8Array[])[] = [signer.chain];
    for (const chain of publishedChains)
      if (!chains.some((c) => sameChain(c, chain))) chains.push(chain);
    return chains;
  }

  /**
   * Audit, sign, audit (as Boulder's CA): the certificate about to be signed is audited
   * before the signer is called, then the certificate issued, or the failure — whatever
   * failed, from the re-check to the final lint.
   */
  async issue(request: IssuanceRequest): Promise<IssuedCertificate> {
    const requester = request.requester ?? UNNAMED;
    const serial = serialHex(request.serial);
    try {
      const issued = await this.signed(request, requester, serial);
      this.audit?.issued(requester.origin, {
        der: issued.der,
        publicKey: { spki: request.publicKey, algorithm: issued.keyAlgorithm },
        serial,
        identity: request.identity,
        issuer: requester.issuer,
        issuerType: requester.issuerType,
        subject: requester.subject,
        notBefore: request.notBefore,
        notAfter: request.notAfter,
      });
      return {
        der: issued.der,
        chain: issued.chain,
        serial,
        notBefore: request.notBefore,
        notAfter: request.notAfter,
        embeddedScts: issued.embeddedScts,
      };
    } catch (err) {
      this.audit?.failed(requester.origin, {
        code: isCaError(err) ? err.code : 'internal',
        status: isCaError(err) ? err.mapping.httpStatus : 500,
        issuer: requester.issuer || undefined,
        serial,
      });
      throw err;
    }
  }

  private async signed(
    request: IssuanceRequest,
    requester: IssuanceRequester,
    serial: string,
  ): Promise<{
    der: Uint8Array;
    chain: readonly Uint8Array[];
    keyAlgorithm: string;
    embeddedScts: number;
  }> {
    // One snapshot for the whole request: chain, key and names stay together.
    const ca = this.issuingCa();
    const { signer } = ca;
    // The CA's one read of the key: its re-check, its algorithm and its identifier.
    const key = this.recheck(request, ca.notAfter);
    const keyAlgorithm = keyAlgorithmName(key.key);
    const subjectKeyId = leafKeyId(key);
    this.audit?.signing(requester.origin, {
      publicKey: { spki: request.publicKey, algorithm: keyAlgorithm },
      serial,
      identity: request.identity,
      issuer: requester.issuer,
      issuerType: requester.issuerType,
      subject: requester.subject,
      notBefore: request.notBefore,
      notAfter: request.notAfter,
    });
    const fields = {
      serial: request.serial,
      notBefore: request.notBefore,
      notAfter: request.notAfter,
      spki: request.publicKey,
      subjectKeyId,
      identity: request.identity,
    };
    const expectation = {
      ...request,
      spki: request.publicKey,
      subjectKeyId,
      issuer: ca.lintIssuer,
    };
    if (!this.ct) {
      const der = await this.signChecked(ca, ca.template.tbs(fields), expectation);
      return { der, chain: signer.chain, keyAlgorithm, embeddedScts: 0 };
    }
    try {
      this.ct.assertEligible(request.notAfter);
    } catch (err) {
      throw new CaError('ct_log', `no SCT: ${(err as Error).message}`, { cause: err });
    }
    // RFC 6962 §3.1: the precertificate is the certificate with the critical poison as
    // its last extension, signed by the issuing key itself (no precert-signing CA).
    const precert = await this.signChecked(ca, ca.template.tbs(fields, CT_POISON_EXTENSION), {
      ...expectation,
      ct: { poison: true },
    });
    let obtained;
    try {
      obtained = await this.ct.obtain({
        precert,
        issuers: signer.chain,
        issuerKeyHash: ca.issuerKeyHash,
        // What the log signs: the precertificate's TBS without the poison, which is the
        // template without a last extension.
        tbs: ca.template.tbs(fields),
        notAfter: request.notAfter,
      });
    } catch (err) {
      throw new CaError('ct_log', `no SCT: ${(err as Error).message}`, { cause: err });
    }
    // The final certificate: the same template, the poison's place taken by the SCT list,
    // signed by the key captured with this request's snapshot (a reload meanwhile changes
    // nothing here).
    const list = sctList(obtained.map((o) => o.sct));
    const der = await this.signChecked(ca, ca.template.tbs(fields, sctListExtensionDer(list)), {
      ...expectation,
      ct: { sctList: list },
    });
    for (const o of obtained) this.ctObserver?.embedded(o.log.url);
    return { der, chain: signer.chain, keyAlgorithm, embeddedScts: obtained.length };
  }

  /** Signs a TBS with the request's signer, then reads the result back (lint.ts). */
  private async signChecked(
    ca: IssuingCa,
    tbs: Buffer,
    expectation: LintExpectation,
  ): Promise<Uint8Array> {
    let der: Uint8Array;
    try {
      der = ca.template.certificate(tbs, await this.timedSign(ca.signer, tbs));
    } catch (err) {
      throw new CaError('ca_backend', `signing failed: ${(err as Error).message}`, { cause: err });
    }
    const problems = lintCertificate(der, expectation);
    if (problems.length > 0) {
      throw new CaError(
        'ca_backend',
        `issued certificate failed its check: ${problems.join('; ')}`,
      );
    }
    return der;
  }

  private async timedSign(signer: CaSigner, tbs: Uint8Array): Promise<Uint8Array> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      // A signature that arrives after the timeout is dropped: the request already failed.
      const signature = await withTimeout(
        signer.sign(tbs),
        this.signTimeoutMs,
        () => new Error(`the signer did not answer within ${this.signTimeoutMs} ms`),
      );
      this.observer?.signed('ok', seconds());
      return signature;
    } catch (err) {
      this.observer?.signed('error', seconds());
      throw err;
    }
  }

  /** Throws unless the request is one the CA signs; returns the key as the CA read it. */
  private recheck(request: IssuanceRequest, notAfterLimit: Date): SpkiInfo {
    const fail = (why: string): never => {
      throw new CaError('ca_backend', `issuance request refused: ${why}`);
    };
    // The key's structure and policy, read with the CA's own DER reader (pop/ parsed it
    // with OpenSSL, checked the point and verified the proof of possession with it).
    let spki;
    try {
      spki = readSpki(request.publicKey);
    } catch (err) {
      fail(`public key does not parse: ${(err as Error).message}`);
    }
    const key = spki!.key;
    if (key.kind === 'rsa' && (![2048, 3072, 4096].includes(key.bits) || key.exponent !== 65537))
      fail('RSA key outside the key policy');
    if (
      request.serial.length === 0 ||
      request.serial.length > MAX_SERIAL_OCTETS ||
      (request.serial[0]! & 0x80) !== 0 ||
      request.serial.every((b) => b === 0)
    ) {
      fail('serial is not a positive integer of at most 20 octets');
    }
    if (request.notBefore.getTime() % 1000 !== 0 || request.notAfter.getTime() % 1000 !== 0)
      fail('validity not whole seconds');
    if (request.notAfter <= request.notBefore) fail('empty validity');
    if (request.notAfter > notAfterLimit) fail('validity outlives the issuing certificate');
    const san = request.identity.san.value;
    if (!san || [...san].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
      fail('empty or unprintable SAN');
    if (request.identity.san.type !== 'otherName' && /[^\u0020-\u007e]/.test(san))
      fail('SAN is not IA5');
    if (!request.identity.extensions.some((e) => e.oid === '1.3.6.1.4.1.57264.1.8' && e.value)) {
      fail('extensions must have a non-empty issuer url');
    }
    return spki!;
  }
}
