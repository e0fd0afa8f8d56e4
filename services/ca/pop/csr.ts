import { constants, verify, type VerifyKeyObjectInput } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { CaError } from '../common/errors';
import { decodePemBlocks, toArrayBuffer } from '../../common/encoding';
import type { Hash } from './algorithms';
import { parsePublicKey, type SubjectPublicKey } from './public-key';

/**
 * The CSR alternative to a proof of possession: a PEM PKCS#10 request whose self-signature
 * proves the key. Everything else in it (subject, extensions, SANs) is ignored, as Fulcio
 * does. Checks run in Fulcio's order: parse, key policy, signature, algorithm.
 */

interface SignatureScheme {
  /** Go's x509.SignatureAlgorithm name, for the passthrough message. */
  readonly goName: string;
  readonly hash: Hash | 'sha1';
  readonly kind: 'ecdsa' | 'rsa' | 'rsa-pss' | 'ed25519';
}

const SCHEMES: Readonly<Record<string, SignatureScheme>> = {
  '1.2.840.10045.4.3.2': { goName: 'ECDSA-SHA256', hash: 'sha256', kind: 'ecdsa' },
  '1.2.840.10045.4.3.3': { goName: 'ECDSA-SHA384', hash: 'sha384', kind: 'ecdsa' },
  '1.2.840.10045.4.3.4': { goName: 'ECDSA-SHA512', hash: 'sha512', kind: 'ecdsa' },
  '1.2.840.10045.4.1': { goName: 'ECDSA-SHA1', hash: 'sha1', kind: 'ecdsa' },
  '1.2.840.113549.1.1.11': { goName: 'SHA256-RSA', hash: 'sha256', kind: 'rsa' },
  '1.2.840.113549.1.1.12': { goName: 'SHA384-RSA', hash: 'sha384', kind: 'rsa' },
  '1.2.840.113549.1.1.13': { goName: 'SHA512-RSA', hash: 'sha512', kind: 'rsa' },
  '1.2.840.113549.1.1.5': { goName: 'SHA1-RSA', hash: 'sha1', kind: 'rsa' },
  '1.2.840.113549.1.1.10': { goName: 'SHA256-RSAPSS', hash: 'sha256', kind: 'rsa-pss' },
  '1.3.101.112': { goName: 'Ed25519', hash: 'none', kind: 'ed25519' },
};

const PSS_HASHES: Readonly<
  Record<string, { hash: 'sha256' | 'sha384' | 'sha512'; goName: string; size: number }>
> = {
  '2.16.840.1.101.3.4.2.1': { hash: 'sha256', goName: 'SHA256-RSAPSS', size: 32 },
  '2.16.840.1.101.3.4.2.2': { hash: 'sha384', goName: 'SHA384-RSAPSS', size: 48 },
  '2.16.840.1.101.3.4.2.3': { hash: 'sha512', goName: 'SHA512-RSAPSS', size: 64 },
};
const MGF1_OID = '1.2.840.113549.1.1.8';

export interface VerifiedCsr {
  readonly key: SubjectPublicKey;
  readonly hash: Hash;
}

function parseCsrDer(pemText: string): pkijs.CertificationRequest {
  const block = decodePemBlocks(pemText)[0];
  if (!block) throw new CaError('invalid_csr', 'CSR is not PEM');
  if (block.type !== 'CERTIFICATE REQUEST' && block.type !== 'NEW CERTIFICATE REQUEST') {
    throw new CaError('invalid_csr', `unexpected PEM type ${block.type}`);
  }
  let asn: ReturnType<typeof asn1js.fromBER>;
  try {
    asn = asn1js.fromBER(toArrayBuffer(block.der));
  } catch {
    // asn1js throws (rather than reporting offset -1) on some bad values, e.g. a garbage time.
    throw new CaError('invalid_csr', 'CSR DER is malformed');
  }
  if (asn.offset === -1 || asn.offset !== block.der.length)
    throw new CaError('invalid_csr', 'CSR DER is malformed');
  let csr: pkijs.CertificationRequest;
  try {
    csr = new pkijs.CertificationRequest({ schema: asn.result });
  } catch (err) {
    throw new CaError('invalid_csr', `CSR structure is invalid: ${(err as Error).message}`);
  }
  if (!hasAttributesField(asn.result))
    throw new CaError('invalid_csr', 'CSR has no attributes field');
  return csr;
}

/**
 * RFC 2986: certificationRequestInfo ends with `attributes [0] IMPLICIT SET`, mandatory even
 * when empty. pkijs treats it as optional; Go's x509.ParseCertificateRequest (Fulcio) refuses a
 * request without it, so mayfly does too.
 */
function hasAttributesField(outer: asn1js.AsnType): boolean {
  const info = outer instanceof asn1js.Sequence ? outer.valueBlock.value[0] : undefined;
  if (!(info instanceof asn1js.Sequence)) return false;
  const fields = info.valueBlock.value;
  const last = fields[3];
  return (
    fields.length === 4 &&
    last !== undefined &&
    last.idBlock.tagClass === 3 &&
    last.idBlock.tagNumber === 0 &&
    last.idBlock.isConstructed
  );
}

function schemeOf(csr: pkijs.CertificationRequest): SignatureScheme | undefined {
  const oid = csr.signatureAlgorithm.algorithmId;
  const scheme = SCHEMES[oid];
  if (scheme?.kind !== 'rsa-pss') return scheme;
  // RSASSA-PSS names its hash in the parameters. Like Go's x509, only MGF1 with the same
  // hash, a salt as long as the hash and the default trailer are recognised; anything else
  // is an unknown algorithm, whose signature does not verify.
  try {
    const params = new pkijs.RSASSAPSSParams({ schema: csr.signatureAlgorithm.algorithmParams });
    const pss = PSS_HASHES[params.hashAlgorithm.algorithmId];
    if (!pss) return undefined;
    const mgf = params.maskGenAlgorithm;
    const mgfHash = new pkijs.AlgorithmIdentifier({ schema: mgf.algorithmParams });
    if (
      mgf.algorithmId !== MGF1_OID ||
      mgfHash.algorithmId !== params.hashAlgorithm.algorithmId ||
      params.saltLength !== pss.size ||
      params.trailerField !== 1
    ) {
      return undefined;
    }
    return { goName: pss.goName, hash: pss.hash, kind: 'rsa-pss' };
  } catch {
    return undefined;
  }
}

export function verifyCsr(pemText: string): VerifiedCsr {
  const csr = parseCsrDer(pemText);
  let spkiDer: ArrayBuffer;
  try {
    spkiDer = csr.subjectPublicKeyInfo.toSchema().toBER(false);
  } catch {
    throw new CaError('invalid_csr', 'CSR public key could not be encoded');
  }
  let key: SubjectPublicKey;
  try {
    key = parsePublicKey(new Uint8Array(spkiDer));
  } catch (err) {
    // Fulcio reports an unusable CSR key as insecure (goodkey runs on the parsed key).
    if (err instanceof CaError && err.code === 'invalid_public_key') {
      throw new CaError('insecure_public_key', `CSR key: ${err.detail}`);
    }
    throw err;
  }
  const scheme = schemeOf(csr);
  const signature = new Uint8Array(csr.signatureValue.valueBlock.valueHexView);
  const tbs = csr.tbsView;
  if (!scheme || scheme.hash === 'sha1' || !signatureVerifies(scheme, key, tbs, signature)) {
    // Go's CheckSignature fails for unknown and SHA-1 algorithms too.
    throw new CaError(
      'invalid_signature',
      `CSR self-signature does not verify (${csr.signatureAlgorithm.algorithmId})`,
    );
  }
  if (scheme.kind === 'rsa-pss') {
    const message = `unrecognized signature algorithm: ${scheme.goName}`;
    throw new CaError('unsupported_signature_algorithm', message, { clientMessage: message });
  }
  return { key, hash: scheme.hash as Hash };
}

function signatureVerifies(
  scheme: SignatureScheme,
  key: SubjectPublicKey,
  tbs: Uint8Array,
  signature: Uint8Array,
): boolean {
  const kindMatches =
    (scheme.kind === 'ecdsa' && key.algorithm.kind === 'ecdsa') ||
    ((scheme.kind === 'rsa' || scheme.kind === 'rsa-pss') && key.algorithm.kind === 'rsa') ||
    (scheme.kind === 'ed25519' && key.algorithm.kind === 'ed25519');
  if (!kindMatches) return false;
  const input: VerifyKeyObjectInput = { key: key.key };
  if (scheme.kind === 'ecdsa') input.dsaEncoding = 'der';
  if (scheme.kind === 'rsa') input.padding = constants.RSA_PKCS1_PADDING;
  if (scheme.kind === 'rsa-pss') {
    input.padding = constants.RSA_PKCS1_PSS_PADDING;
    input.saltLength = constants.RSA_PSS_SALTLEN_DIGEST;
  }
  try {
    return verify(scheme.hash === 'none' ? null : scheme.hash, tbs, input, signature);
  } catch {
    return false;
  }
}
