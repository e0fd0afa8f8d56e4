/**
 * TLS presentation-language encoding (RFC 8446 §3) for the RFC 6962 structures: big-endian
 * integers and length-prefixed vectors. A reader that refuses to run past its input.
 */

export class TlsWriter {
  private readonly parts: Buffer[] = [];
  private length = 0;

  private push(b: Buffer): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  uint(value: number, bytes: number): this {
    if (!Number.isSafeInteger(value) || value < 0 || value >= 2 ** (8 * bytes))
      throw new RangeError(`value ${value} does not fit in ${bytes} bytes`);
    const b = Buffer.alloc(bytes);
    let v = value;
    for (let i = bytes - 1; i >= 0; i--) {
      b[i] = v % 256;
      v = Math.floor(v / 256);
    }
    return this.push(b);
  }

  u8(v: number): this {
    return this.uint(v, 1);
  }
  u16(v: number): this {
    return this.uint(v, 2);
  }
  u64(v: number): this {
    return this.uint(v, 8);
  }

  bytes(b: Uint8Array): this {
    return this.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }

  /** A vector with a `lengthBytes`-byte length prefix. */
  vector(b: Uint8Array, lengthBytes: number): this {
    this.uint(b.length, lengthBytes);
    return this.bytes(b);
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

export class TlsReadError extends Error {}

export class TlsReader {
  private offset = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.offset === this.buf.length;
  }

  get position(): number {
    return this.offset;
  }

  uint(bytes: number): number {
    const b = this.bytes(bytes);
    let v = 0;
    for (const x of b) v = v * 256 + x;
    return v;
  }

  bytes(n: number): Buffer {
    if (this.offset + n > this.buf.length) throw new TlsReadError('truncated');
    const b = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }

  vector(lengthBytes: number): Buffer {
    return this.bytes(this.uint(lengthBytes));
  }
}
