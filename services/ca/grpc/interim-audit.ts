/**
 * ============================== INTERIM: DELETE AFTER THE RA REFACTOR ==============================
 * Until the audit line and the issued-certificate metric move out of http/ into the CA/RA
 * (so that every RA caller is audited and counted), the gRPC transport writes them itself,
 * the way http/app.ts does today (`signed()` and `answerFailure()`): one audit line per
 * CreateSigningCertificate outcome, mayfly_certificates_issued_total on success and
 * mayfly_signing_refusals_total on a client error. Everything of that kind is in this file
 * and nowhere else in grpc/: once the RA does it, delete this file and its two call sites
 * in fulcio-service.ts (`auditIssued`, `auditFailure`).
 * ====================================================================================================
 */
import { keyAlgorithmName, type AuditLog, type AuditRequest } from '../audit/audit-log';
import type { CaError } from '../common/errors';
import { TokenRefusedError } from '../identity/issuer-pool';
import type { Metrics } from '../metrics/metrics';
import type { SigningResult } from '../ra/registration-authority';
import type { CallContext } from './call-context';

export interface InterimAuditDeps {
  readonly metrics: Metrics;
  readonly audit?: AuditLog | undefined;
  readonly issuerLookup?:
    | {
        issuerLabel(iss: string): string | undefined;
        claimedIssuer(token: string): string | undefined;
      }
    | undefined;
}

function auditRequest(ctx: CallContext): AuditRequest {
  return {
    requestId: ctx.requestId,
    route: ctx.path,
    clientIp: ctx.peerIp,
    forwardedFor: ctx.clientIp,
  };
}

export function auditIssued(deps: InterimAuditDeps, ctx: CallContext, result: SigningResult): void {
  const { principal } = result;
  deps.metrics.certificatesIssued.inc({
    issuer: deps.issuerLookup?.issuerLabel(principal.issuer) ?? 'unknown',
    issuer_type: principal.issuerType,
  });
  deps.audit?.issued(auditRequest(ctx), {
    der: result.der,
    publicKey: {
      spki: result.publicKey.spki,
      algorithm: keyAlgorithmName(result.publicKey.algorithm),
    },
    serial: result.serial,
    identity: principal.certificateIdentity(),
    issuer: principal.issuer,
    issuerType: principal.issuerType,
    subject: principal.subject,
    notBefore: result.notBefore,
    notAfter: result.notAfter,
  });
  ctx.log.info(
    {
      issuer: principal.issuer,
      issuerType: principal.issuerType,
      notAfter: result.notAfter.toISOString(),
    },
    'signing certificate issued',
  );
}

// The same classes as http/app.ts's REFUSAL_REASON.
const REFUSAL_REASON: Partial<Record<CaError['code'], string>> = {
  invalid_token: 'token',
  invalid_public_key: 'key',
  insecure_public_key: 'key',
  invalid_signature: 'proof',
  invalid_csr: 'csr',
  unsupported_signature_algorithm: 'csr',
  algorithm_not_permitted: 'algorithm',
  identity_validation: 'identity',
  invalid_request: 'request',
  request_too_large: 'request',
  rate_limited: 'rate_limit',
};

/** A refused or failed CreateSigningCertificate: counted and audited. */
export function auditFailure(
  deps: InterimAuditDeps,
  ctx: CallContext,
  error: CaError,
  token: string | undefined,
): void {
  const status = error.mapping.httpStatus;
  const reason = REFUSAL_REASON[error.code];
  if (reason) deps.metrics.refusals.inc({ reason });
  // Read only for a refusal (it costs a token decode); the token itself is never kept.
  const issuer = token ? deps.issuerLookup?.claimedIssuer(token) : undefined;
  if (status >= 500) deps.audit?.failed(auditRequest(ctx), { code: error.code, status, issuer });
  else
    deps.audit?.refused(auditRequest(ctx), {
      reason: reason ?? error.code,
      code: error.code,
      status,
      tokenFailure: error instanceof TokenRefusedError ? error.reason : undefined,
      issuer,
    });
}
