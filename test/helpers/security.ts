import { createHmac, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import type { FetchLike } from '../../services/ca/identity/oidc-verifier';
import type { TestKey } from './keys';

/**
 * Helpers for the security matrix (test/integration/security-matrix.test.ts): hostile
 * tokens built by hand, raw HTTP over 127.0.0.1, a log sink, an outbound-request recorder
 * and a ledger of every secret the suite sends.
 */

/** Lines written to a pino logger, one string per line. */
export function logSink(): { readonly lines: string[]; readonly stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

/**
 * The real fetch, recording every URL the CA asks for. A request for a host other than
 * 127.0.0.1 is recorded and refused, so a test can see it was attempted and nothing
 * leaves the machine.
 */
export function recordingFetch(): { readonly fetch: FetchLike; readonly calls: string[] } {
  const calls: string[] = [];
  const wrapped: FetchLike = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    calls.push(url.href);
    if (url.hostname !== '127.0.0.1') {
      return Promise.reject(new Error(`the security matrix does not reach ${url.host}`));
    }
    return fetch(input, init);
  };
  return { fetch: wrapped, calls };
}

export function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** An unsigned token (`alg: none`, empty signature). */
export function algNoneToken(claims: Record<string, unknown>): string {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`;
}

/** A token MAC'd with HS256 under `secret` (the key-confusion attack when it is public). */
export function hs256Token(
  claims: Record<string, unknown>,
  secret: string | Buffer,
  kid: string,
): string {
  const signingInput = `${b64url({ alg: 'HS256', typ: 'JWT', kid })}.${b64url(claims)}`;
  const mac = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${mac}`;
}

export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly text: string;
}

/** One POST over the network (a fresh connection), the whole answer read. */
export function postOverNetwork(
  baseUrl: string,
  path: string,
  body: string | Buffer,
  headers: Record<string, string>,
  options: { readonly chunked?: boolean } = {},
): Promise<HttpAnswer> {
  const url = new URL(baseUrl);
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      {
        host: url.hostname,
        port: Number(url.port),
        method: 'POST',
        path,
        agent: false,
        headers: {
          ...(options.chunked ? {} : { 'content-length': String(bytes.length) }),
          ...headers,
        },
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    // A server may answer and close before a large body is fully written; the answer is
    // what counts then.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (options.chunked) {
      for (let at = 0; at < bytes.length; at += 64 * 1024)
        req.write(bytes.subarray(at, at + 65536));
      req.end();
    } else req.end(bytes);
  });
}

export interface RawAnswer {
  /** Everything the server wrote before closing (or before the timeout). */
  readonly text: string;
  /** The server closed the connection (rather than the wait timing out). */
  readonly closed: boolean;
}

/**
 * Writes raw bytes to the server on a plain TCP socket and reads until the server closes
 * the connection or `timeoutMs` passes. Write errors (the server hung up mid-request) are
 * part of the answer, not a failure.
 */
export function rawExchange(baseUrl: string, bytes: Buffer, timeoutMs = 5000): Promise<RawAnswer> {
  const url = new URL(baseUrl);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => socket.write(bytes));
  });
}

interface Secret {
  readonly label: string;
  readonly value: string;
  /** Public key material of a key that was certified: it is inside the issued leaf. */
  readonly certified: boolean;
}

/** Shorter values could match by chance (a JWK `e` of "AQAB", an empty JWT segment). */
const MIN_SECRET_LENGTH = 16;

function pemBody(pem: string): { joined: string; lines: string[] } {
  const lines = pem
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('-----'));
  return { joined: lines.join(''), lines };
}

/**
 * Every secret the suite sent (or holds: the client and CA private keys), in every form a
 * leak could take, and a scan of captured text for any of them.
 */
export class SecretLedger {
  private readonly secrets = new Map<string, Secret>();

  get size(): number {
    return this.secrets.size;
  }

  private add(label: string, value: string, certified = false): void {
    if (value.length < MIN_SECRET_LENGTH) return;
    const known = this.secrets.get(value);
    // Certified wins: once a key is inside an issued leaf, a successful answer may hold it.
    if (!known || (certified && !known.certified))
      this.secrets.set(value, { label, value, certified });
  }

  /** A token: whole, and each of its segments. */
  token(token: string, label = 'token'): void {
    this.add(label, token);
    token.split('.').forEach((segment, i) => this.add(`${label} segment ${i}`, segment));
  }

  /** A proof of possession (or any signature) as sent: base64, base64url and hex. */
  proof(proof: Buffer, label = 'proof'): void {
    this.add(label, proof.toString('base64'));
    this.add(`${label} (base64url)`, proof.toString('base64url'));
    this.add(`${label} (hex)`, proof.toString('hex'));
  }

  /** PEM text as sent: its base64 body, each body line, and the base64 of the PEM text. */
  pem(pem: string, label: string, certified = false): void {
    const { joined, lines } = pemBody(pem);
    this.add(`${label} (PEM body)`, joined, certified);
    lines.forEach((line, i) => this.add(`${label} (PEM line ${i})`, line, certified));
    this.add(`${label} (base64 of the PEM)`, Buffer.from(pem).toString('base64'), certified);
  }

  /** A public key: SPKI base64 and hex, PEM forms, and its JWK coordinates or modulus. */
  publicKey(key: KeyObject | string, label: string, certified = false): void {
    const object = typeof key === 'string' ? tryPublicKey(key) : key;
    if (typeof key === 'string') this.pem(key, label, certified);
    if (!object) return;
    const der = object.export({ type: 'spki', format: 'der' });
    this.add(`${label} (SPKI base64)`, der.toString('base64'), certified);
    this.add(`${label} (SPKI hex)`, der.toString('hex'), certified);
    this.pem(object.export({ type: 'spki', format: 'pem' }).toString(), label, certified);
    let jwk: JsonWebKey = {};
    try {
      jwk = object.export({ format: 'jwk' });
    } catch {
      // No JWK form for some curves (P-224): the DER and PEM forms above cover them.
    }
    for (const field of ['x', 'y', 'n'] as const) {
      const value = jwk[field];
      if (typeof value === 'string') this.add(`${label} (JWK ${field})`, value, certified);
    }
  }

  /** A private key: PKCS#8 PEM forms and the JWK private members. */
  privateKey(key: KeyObject, label: string): void {
    this.pem(key.export({ type: 'pkcs8', format: 'pem' }).toString(), label);
    this.add(
      `${label} (PKCS#8 base64)`,
      key.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
    );
    let jwk: JsonWebKey = {};
    try {
      jwk = key.export({ format: 'jwk' });
    } catch {
      // No JWK form for some curves (P-224): the PKCS#8 forms above cover them.
    }
    for (const field of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) {
      const value = jwk[field];
      if (typeof value === 'string') this.add(`${label} (JWK ${field})`, value);
    }
  }

  /** A client key pair: both halves. */
  keyPair(key: TestKey, label: string, certified = false): void {
    this.publicKey(key.publicKey, `${label} public key`, certified);
    this.publicKey(key.pem, `${label} public key`, certified);
    this.privateKey(key.privateKey, `${label} private key`);
  }

  /**
   * The secrets found in `text`. `issuedAnswer` marks the body of a successful signing
   * answer: the certified keys are inside its certificates by design.
   */
  leaksIn(text: string, issuedAnswer = false): string[] {
    const found: string[] = [];
    for (const secret of this.secrets.values()) {
      if (issuedAnswer && secret.certified) continue;
      if (text.includes(secret.value)) found.push(secret.label);
    }
    return found;
  }
}

function tryPublicKey(pem: string): KeyObject | undefined {
  try {
    return createPublicKey(pem);
  } catch {
    return undefined;
  }
}
