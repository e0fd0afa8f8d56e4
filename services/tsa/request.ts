import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { TsaError } from './errors';
import { JsonSyntaxError, member, parseJson, type JsonValue } from './json-request';

/**
 * A timestamp request as the TSA serves it, whichever encoding it came in: the DER
 * TimeStampReq of RFC 3161 §2.4.1 (`application/timestamp-query`) or the reference server's
 * JSON form (`application/json`). Checks follow the reference's order and messages.
 */

export type HashName = 'sha256' | 'sha384' | 'sha512';

export const HASH_OIDS: Readonly<Record<HashName, string>> = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};
const HASH_SIZES: Readonly<Record<HashName, number>> = { sha256: 32, sha384: 48, sha512: 64 };
const SHA1_OID = '1.3.14.3.2.26';
const HASH_BY_OID = new Map(Object.entries(HASH_OIDS).map(([n, oid]) => [oid, n as HashName]));

export interface TimestampRequest {
  readonly hash: HashName;
  /** The message imprint's AlgorithmIdentifier as the response must echo it. */
  readonly hashAlgorithm: pkijs.AlgorithmIdentifier;
  readonly digest: Uint8Array;
  /** Absent: the response carries no nonce. */
  readonly nonce?: bigint;
  /** Put the TSA certificate in the token's SignedData. */
  readonly certReq: boolean;
  /** The policy asked for, if any (dotted OID). */
  readonly policy?: string;
}

/** The reference bounds the JSON form before parsing it; the DER form is bounded too. */
export const MAX_JSON_REQUEST_BYTES = 1024;
export const MAX_DER_REQUEST_BYTES = 16 * 1024;

function checkHashAndDigest(hash: HashName | 'sha1' | undefined, digest: Uint8Array): HashName {
  if (hash === 'sha1') throw new TsaError('weak_hash', 'SHA-1 imprint');
  if (hash === undefined) throw new TsaError('bad_request', 'unsupported hash algorithm');
  if (digest.length !== HASH_SIZES[hash]) {
    throw new TsaError(
      'digest_length',
      `expected ${HASH_SIZES[hash]} bytes, got ${digest.length} bytes`,
    );
  }
  return hash;
}

function checkPolicy(policy: string | undefined, accepted: readonly string[]): void {
  if (policy !== undefined && !accepted.includes(policy)) {
    throw new TsaError('unaccepted_policy', `policy ${policy}`);
  }
}

export function parseDerRequest(
  body: Uint8Array,
  acceptedPolicies: readonly string[],
): TimestampRequest {
  if (body.length > MAX_DER_REQUEST_BYTES) throw new TsaError('too_large', `${body.length} bytes`);
  const asn1 = asn1js.fromBER(body);
  if (asn1.offset === -1) throw new TsaError('bad_request', `not BER: ${asn1.result.error}`);
  if (asn1.offset !== body.length) throw new TsaError('bad_request', 'trailing data');
  let req: pkijs.TimeStampReq;
  try {
    req = new pkijs.TimeStampReq({ schema: asn1.result });
  } catch (err) {
    throw new TsaError('bad_request', `not a TimeStampReq: ${(err as Error).message}`);
  }
  if (req.version !== 1) throw new TsaError('bad_request', `version ${req.version}`);
  const oid = req.messageImprint.hashAlgorithm.algorithmId;
  const hash = checkHashAndDigest(
    oid === SHA1_OID ? 'sha1' : HASH_BY_OID.get(oid),
    new Uint8Array(req.messageImprint.hashedMessage.valueBlock.valueHexView),
  );
  if (req.extensions && req.extensions.length > 0) {
    throw new TsaError('unaccepted_extension', `${req.extensions.length} extensions`);
  }
  checkPolicy(req.reqPolicy, acceptedPolicies);
  return {
    hash,
    hashAlgorithm: req.messageImprint.hashAlgorithm,
    digest: new Uint8Array(req.messageImprint.hashedMessage.valueBlock.valueHexView),
    ...(req.nonce ? { nonce: req.nonce.toBigInt() } : {}),
    certReq: req.certReq ?? false,
    ...(req.reqPolicy ? { policy: req.reqPolicy } : {}),
  };
}

const OID_TEXT = /^[0-2](\.(0|[1-9]\d*))+$/;
const BASE64_STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function stringField(object: Map<string, JsonValue>, name: string): string {
  const value = member(object, name);
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new TsaError('bad_request', `${name} is not a string`);
  return value;
}

/** The JSON form: {artifactHash, hashAlgorithm, nonce, certificates, tsaPolicyOID}. */
export function parseJsonRequest(
  body: Uint8Array,
  acceptedPolicies: readonly string[],
): TimestampRequest {
  if (body.length > MAX_JSON_REQUEST_BYTES) {
    throw new TsaError('too_large', `${body.length} bytes`);
  }
  let parsed: JsonValue;
  try {
    parsed = parseJson(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (err) {
    if (err instanceof JsonSyntaxError || err instanceof TypeError) {
      throw new TsaError('bad_request', `not JSON: ${err.message}`);
    }
    throw err;
  }
  if (parsed === null) parsed = { object: new Map() };
  if (typeof parsed !== 'object' || !('object' in parsed)) {
    throw new TsaError('bad_request', 'not a JSON object');
  }
  const object = parsed.object;
  const hashText = stringField(object, 'hashAlgorithm').toLowerCase();
  const certificates = member(object, 'certificates');
  if (certificates !== undefined && certificates !== null && typeof certificates !== 'boolean') {
    throw new TsaError('bad_request', 'certificates is not a boolean');
  }
  const nonceValue = member(object, 'nonce');
  let nonce: bigint | undefined;
  if (nonceValue !== undefined && nonceValue !== null) {
    if (typeof nonceValue !== 'object' || !('number' in nonceValue)) {
      throw new TsaError('bad_request', 'nonce is not a number');
    }
    if (!/^-?\d+$/.test(nonceValue.number)) {
      throw new TsaError('bad_request', 'nonce is not an integer');
    }
    nonce = BigInt(nonceValue.number);
  }
  const artifactHash = stringField(object, 'artifactHash');
  const policyText = stringField(object, 'tsaPolicyOID');
  // The reference's order: hash algorithm, policy OID syntax, base64, digest length, policy.
  const hashName =
    hashText === 'sha1' ? 'sha1' : hashText in HASH_OIDS ? (hashText as HashName) : undefined;
  if (hashName === 'sha1') throw new TsaError('weak_hash', 'SHA-1 imprint');
  if (hashName === undefined) throw new TsaError('bad_request', 'unsupported hash algorithm');
  if (policyText !== '' && !OID_TEXT.test(policyText)) {
    throw new TsaError('bad_request', 'tsaPolicyOID is not an OID');
  }
  const b64 = artifactHash.replace(/[\r\n]/g, '');
  if (!BASE64_STD.test(b64)) throw new TsaError('bad_request', 'artifactHash is not base64');
  const digest = new Uint8Array(Buffer.from(b64, 'base64'));
  const hash = checkHashAndDigest(hashName, digest);
  const policy = policyText === '' ? undefined : policyText;
  checkPolicy(policy, acceptedPolicies);
  return {
    hash,
    // Go's encoder writes the imprint's algorithm with NULL parameters.
    hashAlgorithm: new pkijs.AlgorithmIdentifier({
      algorithmId: HASH_OIDS[hash],
      algorithmParams: new asn1js.Null(),
    }),
    digest,
    ...(nonce === undefined ? {} : { nonce }),
    certReq: certificates === true,
    ...(policy === undefined ? {} : { policy }),
  };
}
