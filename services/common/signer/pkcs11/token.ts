import { createPublicKey, type KeyObject } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';

/**
 * The thin layer over the PKCS#11 binding (pkcs11js): loading a module, finding a token by
 * its label, logging in, finding and generating keys, reading public keys. No private key
 * material ever crosses it: keys are generated in the token as sensitive and
 * non-extractable, and only handles and public attributes come back.
 *
 * Why pkcs11js rather than graphene-pk11: graphene is an object layer over pkcs11js with
 * synchronous calls only; pkcs11js is the binding itself and has `C_SignAsync`, which runs
 * the token's signature on libuv's thread pool, so the event loop never waits for the HSM.
 * We need only a dozen calls, and both come from the same maintainers.
 */

export type Handle = Buffer;
export type Pkcs11 = pkcs11js.PKCS11;

export class Pkcs11ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Pkcs11ConfigError';
  }
}

/**
 * Loaded modules, one per library path in this process, counted: a PKCS#11 module is
 * process-global (C_Initialize/C_Finalize act on the whole library), so the CA, a TSA and
 * the ceremony in one process share it and the last to close finalises it.
 */
const modules = new Map<string, { mod: Pkcs11; users: number }>();

/** Loads and initialises a PKCS#11 module (the library path of the HSM vendor's module). */
export function openModule(path: string): Pkcs11 {
  const open = modules.get(path);
  if (open) {
    open.users++;
    return open.mod;
  }
  const mod = new pkcs11js.PKCS11();
  try {
    mod.load(path);
  } catch (err) {
    throw new Pkcs11ConfigError(`cannot load the PKCS#11 module ${path}: ${messageOf(err)}`);
  }
  initialize(mod);
  modules.set(path, { mod, users: 1 });
  return mod;
}

/** Releases one user of a module; the last one finalises it. */
export function closeModule(mod: Pkcs11): void {
  for (const [path, open] of modules) {
    if (open.mod !== mod) continue;
    if (--open.users > 0) return;
    modules.delete(path);
    finalize(mod);
    return;
  }
}

/**
 * Finalises and initialises the module again: the only way most modules (SoftHSM among
 * them) see a token that was removed and inserted or re-created. Every session on the module
 * is gone afterwards, so every user of it reconnects.
 */
export function reinitialize(mod: Pkcs11): void {
  finalize(mod);
  initialize(mod);
}

export function initialize(mod: Pkcs11): void {
  try {
    // OS locking: our signatures run on several libuv threads at once.
    mod.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (codeOf(err) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw err;
  }
}

function finalize(mod: Pkcs11): void {
  try {
    mod.C_Finalize();
  } catch {
    // Not initialised, or the module is in a state where finalising fails: nothing to free.
  }
}

export function codeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Errors after which the session (or the whole token connection) is gone: the token was
 * removed or re-created, a network HSM restarted, the login was lost. Reconnecting is the
 * cure; retrying the same session is not.
 */
const CONNECTION_ERRORS = new Set<number>([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11js.CKR_GENERAL_ERROR,
]);

export function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && CONNECTION_ERRORS.has(code);
}

/** The slot holding the token with this label (labels are blank-padded to 32 bytes). */
export function findSlot(mod: Pkcs11, tokenLabel: string): Handle {
  for (const slot of mod.C_GetSlotList(true)) {
    const info = mod.C_GetTokenInfo(slot);
    if (info.label.replace(/[\s\0]+$/, '') === tokenLabel) return slot;
  }
  throw new Pkcs11ConfigError(`no token labelled ${JSON.stringify(tokenLabel)} is present`);
}

/** A read-only session (read-write for the ceremony), logged in as the user. */
export function openSession(mod: Pkcs11, slot: Handle, pin: string, readWrite = false): Handle {
  const session = mod.C_OpenSession(
    slot,
    pkcs11js.CKF_SERIAL_SESSION | (readWrite ? pkcs11js.CKF_RW_SESSION : 0),
  );
  try {
    mod.C_Login(session, pkcs11js.CKU_USER, pin);
  } catch (err) {
    // The login is per application and token: the second session is already logged in.
    if (codeOf(err) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
      closeSession(mod, session);
      if (codeOf(err) === pkcs11js.CKR_PIN_INCORRECT)
        throw new Pkcs11ConfigError('the token refused the PIN');
      throw err;
    }
  }
  return session;
}

export function closeSession(mod: Pkcs11, session: Handle): void {
  try {
    mod.C_CloseSession(session);
  } catch {
    // Already gone with the token.
  }
}

export function findObjects(mod: Pkcs11, session: Handle, template: pkcs11js.Template): Handle[] {
  mod.C_FindObjectsInit(session, template);
  try {
    const found: Handle[] = [];
    for (;;) {
      const batch = mod.C_FindObjects(session, 16);
      if (batch.length === 0) return found;
      found.push(...batch);
    }
  } finally {
    mod.C_FindObjectsFinal(session);
  }
}

export interface KeyQuery {
  readonly label?: string | undefined;
  readonly id?: Uint8Array | undefined;
}

export function findKeys(
  mod: Pkcs11,
  session: Handle,
  objectClass: number,
  query: KeyQuery,
): Handle[] {
  const template: pkcs11js.Template = [{ type: pkcs11js.CKA_CLASS, value: objectClass }];
  if (query.label !== undefined) template.push({ type: pkcs11js.CKA_LABEL, value: query.label });
  if (query.id !== undefined)
    template.push({ type: pkcs11js.CKA_ID, value: Buffer.from(query.id) });
  return findObjects(mod, session, template);
}

export type TokenKeyType = 'ec' | 'rsa';

export function keyTypeOf(mod: Pkcs11, session: Handle, key: Handle): TokenKeyType {
  const [attr] = mod.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_KEY_TYPE }]);
  const value = attr?.value;
  const type = Buffer.isBuffer(value) ? value.readUIntLE(0, Math.min(value.length, 6)) : value;
  if (type === pkcs11js.CKK_EC) return 'ec';
  if (type === pkcs11js.CKK_RSA) return 'rsa';
  throw new Pkcs11ConfigError(`the key's type (${String(type)}) is neither EC nor RSA`);
}

// --- public keys and key generation (the ceremony) ---

const CURVES = {
  'P-256': { oid: '1.2.840.10045.3.1.7', der: '06082a8648ce3d030107' },
  'P-384': { oid: '1.3.132.0.34', der: '06052b81040022' },
} as const;
export type TokenCurve = keyof typeof CURVES;

export type KeySpec =
  | { readonly type: 'ec'; readonly curve: TokenCurve }
  | { readonly type: 'rsa'; readonly bits: 2048 | 3072 | 4096 };

export function parseKeySpec(text: string): KeySpec {
  switch (text) {
    case 'ecdsa-p256':
      return { type: 'ec', curve: 'P-256' };
    case 'ecdsa-p384':
      return { type: 'ec', curve: 'P-384' };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return { type: 'rsa', bits: Number(text.slice(4)) as 2048 | 3072 | 4096 };
    default:
      throw new Pkcs11ConfigError(
        `unknown key type ${JSON.stringify(text)} (ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096)`,
      );
  }
}

/** Reads a public key object (EC point or RSA modulus and exponent) as a node KeyObject. */
export function readPublicKey(mod: Pkcs11, session: Handle, publicKey: Handle): KeyObject {
  const type = keyTypeOf(mod, session, publicKey);
  if (type === 'rsa') {
    const [n, e] = mod.C_GetAttributeValue(session, publicKey, [
      { type: pkcs11js.CKA_MODULUS },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT },
    ]);
    return createPublicKey({
      key: {
        kty: 'RSA',
        n: (n!.value as Buffer).toString('base64url'),
        e: (e!.value as Buffer).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  const [params, point] = mod.C_GetAttributeValue(session, publicKey, [
    { type: pkcs11js.CKA_EC_PARAMS },
    { type: pkcs11js.CKA_EC_POINT },
  ]);
  const paramsHex = (params!.value as Buffer).toString('hex');
  const curve = Object.values(CURVES).find((c) => c.der === paramsHex);
  if (!curve) throw new Pkcs11ConfigError('the EC key is on a curve other than P-256 or P-384');
  // CKA_EC_POINT is the DER OCTET STRING holding the uncompressed point (most modules);
  // a few return the bare point.
  let raw = point!.value as Buffer;
  if (raw[0] === 0x04 && raw.length > 1 && raw[1] === raw.length - 2 && raw[2] === 0x04)
    raw = raw.subarray(2);
  else if (raw[0] === 0x04 && raw[1] === 0x81) raw = raw.subarray(3);
  const algorithmBody = Buffer.from(`06072a8648ce3d0201${paramsHex}`, 'hex');
  const algorithm = Buffer.concat([derLength(0x30, algorithmBody.length), algorithmBody]);
  const bitString = Buffer.concat([Buffer.from([0x03, raw.length + 1, 0x00]), raw]);
  const body = Buffer.concat([algorithm, bitString]);
  const spki = Buffer.concat([derLength(0x30, body.length), body]);
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function derLength(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  if (length < 0x100) return Buffer.from([tag, 0x81, length]);
  return Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
}

/**
 * A key pair generated inside the token: the private half sensitive, never extractable,
 * allowed to sign only; both halves carry the label and id.
 */
export function generateKeyPair(
  mod: Pkcs11,
  session: Handle,
  spec: KeySpec,
  label: string,
  id: Uint8Array,
): { privateKey: Handle; publicKey: Handle } {
  const common = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
  ];
  const publicTemplate: pkcs11js.Template = [
    ...common,
    { type: pkcs11js.CKA_VERIFY, value: true },
    ...(spec.type === 'ec'
      ? [{ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(CURVES[spec.curve].der, 'hex') }]
      : [
          { type: pkcs11js.CKA_MODULUS_BITS, value: spec.bits },
          { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        ]),
  ];
  const privateTemplate: pkcs11js.Template = [
    ...common,
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: false },
  ];
  const mechanism =
    spec.type === 'ec' ? pkcs11js.CKM_EC_KEY_PAIR_GEN : pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN;
  return mod.C_GenerateKeyPair(session, { mechanism }, publicTemplate, privateTemplate);
}
