import {
  X509Certificate,
  constants,
  createHash,
  randomBytes,
  verify,
  type KeyObject,
} from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import type { Logger } from '../../logger';
import { hashForKey, type CaSigner, type SignatureHash } from '../signer';
import { rsaPssPublicKey } from './pss';
import {
  Pkcs11ConfigError,
  closeModule,
  closeSession,
  findKeys,
  findSlot,
  reinitialize,
  isConnectionError,
  keyTypeOf,
  messageOf,
  openModule,
  openSession,
  type Handle,
  type KeyQuery,
  type Pkcs11,
  type TokenKeyType,
} from './token';

/**
 * The `pkcs11` CA: the private key stays in the token (an HSM, a cloud KMS's PKCS#11
 * library, SoftHSM in tests); mayfly hands it a digest (ECDSA) or the TBS bytes (RSA, the
 * token hashes) and gets a signature back.
 *
 * - Off the event loop: the signature is `C_SignAsync`, which runs on libuv's thread pool.
 * - A pool of `sessions` logged-in sessions (size it to the HSM's licence and to
 *   UV_THREADPOOL_SIZE); callers beyond them wait in a queue of at most `maxQueue`, and
 *   callers beyond that are refused at once (the CA answers 500, the client retries).
 * - A connection error (session closed, token removed, module restarted) takes the pool
 *   down: queued and new calls fail fast, `healthy()` turns false (readiness), and a
 *   reconnect loop re-initialises the module, finds the token by its label, logs in again,
 *   re-finds the key and proves that it still matches the CA certificate before signing
 *   resumes. No restart needed.
 */

export interface Pkcs11PoolOptions {
  /** The PKCS#11 module (the vendor's shared library). */
  readonly module: string;
  readonly tokenLabel: string;
  /** The user PIN (read from MAYFLY_CA_PKCS11_PIN_FILE; never logged). */
  readonly pin: string;
  /** Sessions to keep open and sign on concurrently. */
  readonly sessions: number;
  /** Signatures allowed to wait for a session; more are refused at once. */
  readonly maxQueue: number;
  /** RSA keys: PKCS#1 v1.5 (Fulcio's choice) or PSS. */
  readonly rsaPadding?: 'pkcs1' | 'pss';
  /** Pause between reconnect attempts while the token is unreachable. */
  readonly reconnectIntervalMs?: number;
  readonly logger?: Logger;
  /** Told when the pool goes up or down (metrics, tests). */
  readonly onHealth?: (healthy: boolean) => void;
}

export class Pkcs11UnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Pkcs11UnavailableError';
  }
}

/** ECDSA in PKCS#11 is r || s, each half the size of the order; X.509 wants DER. */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0)
    throw new Error(`ECDSA signature of odd length ${raw.length}`);
  const half = raw.length / 2;
  const integer = (bytes: Uint8Array): Buffer => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let body = Buffer.from(bytes.subarray(i));
    if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const content = Buffer.concat([integer(raw.subarray(0, half)), integer(raw.subarray(half))]);
  const header =
    content.length < 0x80
      ? Buffer.from([0x30, content.length])
      : Buffer.from([0x30, 0x81, content.length]);
  return new Uint8Array(Buffer.concat([header, content]));
}

const HASH_MECHANISMS = {
  sha256: {
    pkcs1: 'CKM_SHA256_RSA_PKCS',
    pss: 'CKM_SHA256_RSA_PKCS_PSS',
    hash: 'CKM_SHA256',
    mgf: 'CKG_MGF1_SHA256',
    salt: 32,
  },
  sha384: {
    pkcs1: 'CKM_SHA384_RSA_PKCS',
    pss: 'CKM_SHA384_RSA_PKCS_PSS',
    hash: 'CKM_SHA384',
    mgf: 'CKG_MGF1_SHA384',
    salt: 48,
  },
  sha512: {
    pkcs1: 'CKM_SHA512_RSA_PKCS',
    pss: 'CKM_SHA512_RSA_PKCS_PSS',
    hash: 'CKM_SHA512',
    mgf: 'CKG_MGF1_SHA512',
    salt: 64,
  },
} as const;

const constant = (name: string): number => (pkcs11js as unknown as Record<string, number>)[name]!;

/** How one key signs: what goes in (digest or message), the mechanism, what comes out. */
interface SigningProfile {
  readonly type: TokenKeyType;
  readonly hash: Exclude<SignatureHash, null>;
  readonly mechanism: pkcs11js.Mechanism;
  readonly maxSignatureBytes: number;
  readonly pss: boolean;
}

function profileFor(
  type: TokenKeyType,
  certKey: KeyObject,
  padding: 'pkcs1' | 'pss',
): SigningProfile {
  const hash = hashForKey(certKey) ?? 'sha256';
  if (type === 'ec') {
    return {
      type,
      hash,
      mechanism: { mechanism: pkcs11js.CKM_ECDSA },
      maxSignatureBytes: 132,
      pss: false,
    };
  }
  const names = HASH_MECHANISMS[hash];
  const bytes = Math.ceil((certKey.asymmetricKeyDetails?.modulusLength ?? 4096) / 8);
  if (padding === 'pss') {
    const parameter: pkcs11js.RsaPSS = {
      type: pkcs11js.CK_PARAMS_RSA_PSS,
      hashAlg: constant(names.hash),
      mgf: constant(names.mgf),
      saltLen: names.salt,
    };
    return {
      type,
      hash,
      mechanism: { mechanism: constant(names.pss), parameter },
      maxSignatureBytes: bytes,
      pss: true,
    };
  }
  return {
    type,
    hash,
    mechanism: { mechanism: constant(names.pkcs1) },
    maxSignatureBytes: bytes,
    pss: false,
  };
}

/** A key in the token bound to one CA certificate; its handle is re-found after a reconnect. */
interface BoundKey {
  readonly query: KeyQuery;
  readonly describe: string;
  readonly certKey: KeyObject;
  readonly profile: SigningProfile;
  handle: Handle | undefined;
  generation: number;
}

interface Waiter {
  resolve(session: Handle): void;
  reject(err: Error): void;
}

export class Pkcs11Pool {
  private mod: Pkcs11;
  private slot: Handle | undefined;
  private free: Handle[] = [];
  private readonly waiters: Waiter[] = [];
  private inFlight = 0;
  private drained: (() => void) | undefined;
  /** Bumped at every (re)connect: handles from an older generation are dead. */
  private generation = 0;
  private up = false;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnecting = false;
  /** The key the CA signs with now: proven against its certificate at every reconnect. */
  private current: BoundKey | undefined;
  private readonly padding: 'pkcs1' | 'pss';

  /** Connects now (a bad module, token label or PIN fails the start). */
  constructor(private readonly options: Pkcs11PoolOptions) {
    if (options.sessions < 1)
      throw new Pkcs11ConfigError('the session pool needs at least one session');
    this.padding = options.rsaPadding ?? 'pkcs1';
    this.mod = openModule(options.module);
    try {
      this.connect();
    } catch (err) {
      closeModule(this.mod);
      throw err;
    }
  }

  healthy(): boolean {
    return this.up && !this.closed;
  }

  /** Sessions idle, calls signing, calls waiting (for metrics and tests). */
  stats(): { idle: number; inFlight: number; queued: number; generation: number } {
    return {
      idle: this.free.length,
      inFlight: this.inFlight,
      queued: this.waiters.length,
      generation: this.generation,
    };
  }

  private connect(): void {
    const slot = findSlot(this.mod, this.options.tokenLabel);
    const sessions: Handle[] = [];
    try {
      for (let i = 0; i < this.options.sessions; i++)
        sessions.push(openSession(this.mod, slot, this.options.pin));
    } catch (err) {
      for (const s of sessions) closeSession(this.mod, s);
      throw err;
    }
    this.slot = slot;
    this.free = sessions;
    this.generation++;
    this.up = true;
  }

  /**
   * The signer for one CA chain: the private key named by `keyLabel`, or else the one whose
   * CKA_ID is the issuing certificate's subject key identifier (how `mayfly ca create` and
   * `mayfly ca rotate` mark the keys they make, so a rotation is a change of files only).
   * The key must sign a fresh challenge that verifies with the certificate's public key.
   */
  signerFor(chain: readonly Uint8Array[], keyLabel?: string): CaSigner {
    const issuing = new X509Certificate(chain[0]!);
    const query: KeyQuery =
      keyLabel !== undefined && keyLabel !== ''
        ? { label: keyLabel }
        : { id: subjectKeyId(issuing) };
    const describe =
      query.label !== undefined
        ? `label ${JSON.stringify(query.label)}`
        : `id ${Buffer.from(query.id!).toString('hex')}`;
    const certKey = issuing.publicKey;
    const session = this.probeSession();
    try {
      const handle = this.findKey(session, query, describe);
      const type = keyTypeOf(this.mod, session, handle);
      if (type !== certKey.asymmetricKeyType)
        throw new Pkcs11ConfigError(
          `the token key (${describe}) is ${type}, the CA certificate's key is ${String(certKey.asymmetricKeyType)}`,
        );
      const bound: BoundKey = {
        query,
        describe,
        certKey,
        profile: profileFor(type, certKey, this.padding),
        handle,
        generation: this.generation,
      };
      this.proveSync(session, bound);
      this.current = bound;
      const publicKey = bound.profile.pss ? rsaPssPublicKey(certKey, bound.profile.hash) : certKey;
      return {
        chain,
        publicKey,
        hash: bound.profile.hash,
        sign: (tbs) => this.sign(bound, tbs),
      };
    } finally {
      closeSession(this.mod, session);
    }
  }

  /** A session of its own for the start/reload check, so that it never waits behind load. */
  private probeSession(): Handle {
    if (!this.up || this.slot === undefined)
      throw new Pkcs11UnavailableError('the PKCS#11 token is not connected');
    return openSession(this.mod, this.slot, this.options.pin);
  }

  private findKey(session: Handle, query: KeyQuery, describe: string): Handle {
    const keys = findKeys(this.mod, session, pkcs11js.CKO_PRIVATE_KEY, query);
    if (keys.length === 0)
      throw new Pkcs11ConfigError(`no private key with ${describe} in the token`);
    if (keys.length > 1)
      throw new Pkcs11ConfigError(`${keys.length} private keys with ${describe} in the token`);
    return keys[0]!;
  }

  private input(bound: BoundKey, message: Uint8Array): Buffer {
    // ECDSA: the token signs a digest we make; RSA: the token hashes the message itself.
    return bound.profile.type === 'ec'
      ? createHash(bound.profile.hash).update(message).digest()
      : Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  }

  private output(bound: BoundKey, signature: Buffer): Uint8Array {
    return bound.profile.type === 'ec' ? ecdsaRawToDer(signature) : new Uint8Array(signature);
  }

  private checks(bound: BoundKey, message: Uint8Array, signature: Uint8Array): boolean {
    return verify(
      bound.profile.hash,
      message,
      {
        key: bound.certKey,
        dsaEncoding: 'der',
        ...(bound.profile.pss
          ? {
              padding: constants.RSA_PKCS1_PSS_PADDING,
              saltLength: HASH_MECHANISMS[bound.profile.hash].salt,
            }
          : {}),
      },
      signature,
    );
  }

  private proveSync(session: Handle, bound: BoundKey): void {
    const challenge = randomBytes(64);
    this.mod.C_SignInit(session, bound.profile.mechanism, bound.handle!);
    const raw = this.mod.C_Sign(
      session,
      this.input(bound, challenge),
      Buffer.alloc(bound.profile.maxSignatureBytes),
    );
    if (!this.checks(bound, challenge, this.output(bound, raw)))
      throw new Pkcs11ConfigError(
        `the token key (${bound.describe}) does not match the CA certificate: public keys are not equal`,
      );
  }

  private async sign(bound: BoundKey, tbs: Uint8Array): Promise<Uint8Array> {
    const input = this.input(bound, tbs);
    const { session, generation } = await this.acquire();
    let healthy = true;
    try {
      if (bound.generation !== generation) {
        bound.handle = this.findKey(session, bound.query, bound.describe);
        bound.generation = generation;
      }
      this.mod.C_SignInit(session, bound.profile.mechanism, bound.handle!);
      const raw = await this.mod.C_SignAsync(
        session,
        input,
        Buffer.alloc(bound.profile.maxSignatureBytes),
      );
      return this.output(bound, raw);
    } catch (err) {
      if (isConnectionError(err) || err instanceof Pkcs11ConfigError) {
        healthy = false;
        this.markDown(generation, err);
      }
      throw err;
    } finally {
      this.release(session, generation, healthy);
    }
  }

  private acquire(): Promise<{ session: Handle; generation: number }> {
    if (this.closed)
      return Promise.reject(new Pkcs11UnavailableError('the PKCS#11 signer is closed'));
    if (!this.up)
      return Promise.reject(
        new Pkcs11UnavailableError('the PKCS#11 token is unavailable; reconnecting'),
      );
    const generation = this.generation;
    const session = this.free.pop();
    this.inFlight++;
    if (session !== undefined) return Promise.resolve({ session, generation });
    if (this.waiters.length >= this.options.maxQueue) {
      this.inFlight--;
      return Promise.reject(new Pkcs11UnavailableError('the PKCS#11 signing queue is full'));
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({
        resolve: (s) => resolve({ session: s, generation }),
        reject: (err) => {
          this.inFlight--;
          this.settle();
          reject(err);
        },
      });
    });
  }

  private release(session: Handle, generation: number, healthy: boolean): void {
    if (healthy && this.up && generation === this.generation) {
      // The session goes straight to the next caller (already counted in flight).
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(session);
      else this.free.push(session);
    }
    this.inFlight--;
    this.settle();
  }

  private settle(): void {
    if (this.inFlight === 0 && this.drained) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }

  private markDown(generation: number, err: unknown): void {
    if (!this.up || generation !== this.generation || this.closed) return;
    this.up = false;
    this.options.logger?.error(
      { err: messageOf(err) },
      'PKCS#11 token lost: signing stops until it is back',
    );
    this.options.onHealth?.(false);
    const waiting = this.waiters.splice(0);
    for (const w of waiting)
      w.reject(new Pkcs11UnavailableError('the PKCS#11 token is unavailable; reconnecting'));
    this.free = [];
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting || this.closed) return;
    this.reconnecting = true;
    try {
      // Calls still inside the module must come back before it is finalised.
      if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      while (!this.closed) {
        try {
          reinitialize(this.mod);
          this.connect();
          try {
            this.proveCurrent();
          } catch (err) {
            this.up = false;
            throw err;
          }
          this.options.logger?.info(
            { generation: this.generation },
            'PKCS#11 token back: signing resumes',
          );
          this.options.onHealth?.(true);
          return;
        } catch (err) {
          this.options.logger?.warn({ err: messageOf(err) }, 'PKCS#11 reconnect failed; retrying');
          await new Promise<void>((resolve) => {
            this.reconnectTimer = setTimeout(resolve, this.options.reconnectIntervalMs ?? 1000);
          });
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /** After a reconnect: the current key is found again and still matches its certificate. */
  private proveCurrent(): void {
    const bound = this.current;
    if (!bound) return;
    const session = this.free[0]!;
    bound.handle = this.findKey(session, bound.query, bound.describe);
    bound.generation = this.generation;
    this.proveSync(session, bound);
  }

  /** Closes the sessions and finalises the module (after calls in flight are back). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.up = false;
    clearTimeout(this.reconnectTimer);
    for (const w of this.waiters.splice(0))
      w.reject(new Pkcs11UnavailableError('the PKCS#11 signer is closed'));
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    for (const s of this.free) closeSession(this.mod, s);
    this.free = [];
    closeModule(this.mod);
  }
}

function subjectKeyId(cert: X509Certificate): Uint8Array {
  // node:crypto has no accessor for extensions; the SKI is read from the DER.
  const der = cert.raw;
  const oid = Buffer.from('0603551d0e', 'hex');
  const at = der.indexOf(oid);
  if (at < 0)
    throw new Pkcs11ConfigError(
      'the CA certificate has no subject key identifier: set the key label',
    );
  let i = at + oid.length;
  if (der[i] === 0x01) i += 3; // critical BOOLEAN
  // extnValue OCTET STRING { OCTET STRING keyIdentifier }
  if (der[i] !== 0x04 || der[i + 2] !== 0x04)
    throw new Pkcs11ConfigError('cannot read the subject key identifier');
  const len = der[i + 3]!;
  return new Uint8Array(der.subarray(i + 4, i + 4 + len));
}
