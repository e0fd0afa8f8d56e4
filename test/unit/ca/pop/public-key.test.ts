import {
  createECDH,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { CaError, type CaErrorCode } from '../../../../services/ca/common/errors';
import { verifyProof } from '../../../../services/ca/pop/proof';
import {
  importPublicKey,
  parsePublicKey,
  type SubjectPublicKey,
} from '../../../../services/ca/pop/public-key';
import { makeKey, toPem, weakKeys, type KeyKind } from '../../../helpers/keys';

function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** Runs parsePublicKey and returns the CaError it throws (fails the test if none). */
function refusal(content: Uint8Array | string): CaError {
  let parsed: SubjectPublicKey | undefined;
  try {
    parsed = parsePublicKey(content);
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    return err as CaError;
  }
  throw new Error(`expected a refusal, got a ${JSON.stringify(parsed.algorithm)} key`);
}

function expectRefused(content: Uint8Array | string, code: CaErrorCode): void {
  expect(refusal(content).code).toBe(code);
}

/** A P-256 SPKI carrying the point in SEC1 compressed form (0x02/0x03 || x). */
function compressedP256Spki(): Buffer {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const point = ecdh.getPublicKey(null, 'compressed');
  // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (33 bytes + unused-bits) }
  const prefix = Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex');
  return Buffer.concat([prefix, point]);
}

describe('parsePublicKey accepts the keys Fulcio accepts', () => {
  test.each<[KeyKind, SubjectPublicKey['algorithm']]>([
    ['p256', { kind: 'ecdsa', curve: 'P-256' }],
    ['p384', { kind: 'ecdsa', curve: 'P-384' }],
    ['p521', { kind: 'ecdsa', curve: 'P-521' }],
    ['rsa2048', { kind: 'rsa', bits: 2048 }],
    ['rsa3072', { kind: 'rsa', bits: 3072 }],
    ['rsa4096', { kind: 'rsa', bits: 4096 }],
    ['ed25519', { kind: 'ed25519' }],
  ])('accepts a %s key as PEM SPKI and reports its algorithm', (kind, algorithm) => {
    const key = makeKey(kind);
    const parsed = parsePublicKey(key.pem);
    expect(parsed.algorithm).toEqual(algorithm);
    expect(Buffer.from(parsed.spki)).toEqual(spkiOf(key.publicKey));
    expect(parsed.key.equals(key.publicKey)).toBe(true);
  });

  test('accepts PEM handed over as bytes, as the HTTP layer does after base64', () => {
    const key = makeKey('p256');
    const parsed = parsePublicKey(Buffer.from(key.pem, 'utf8'));
    expect(Buffer.from(parsed.spki)).toEqual(spkiOf(key.publicKey));
  });

  test('accepts a PKCS#1 RSA PUBLIC KEY PEM and returns the SPKI form of the same key', () => {
    const key = makeKey('rsa2048');
    const pkcs1 = key.publicKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(pkcs1).toContain('-----BEGIN RSA PUBLIC KEY-----');
    const parsed = parsePublicKey(pkcs1);
    expect(parsed.algorithm).toEqual({ kind: 'rsa', bits: 2048 });
    expect(Buffer.from(parsed.spki)).toEqual(spkiOf(key.publicKey));
  });

  test.each<KeyKind>(['p256', 'rsa2048', 'ed25519'])(
    'accepts raw SPKI DER bytes for a %s key',
    (kind) => {
      const key = makeKey(kind);
      const parsed = parsePublicKey(new Uint8Array(spkiOf(key.publicKey)));
      expect(Buffer.from(parsed.spki)).toEqual(spkiOf(key.publicKey));
    },
  );

  test('returns a canonical DER SPKI even when the PEM uses odd line lengths and CRLF', () => {
    const key = makeKey('p384');
    const b64 = spkiOf(key.publicKey).toString('base64');
    const oddPem = `-----BEGIN PUBLIC KEY-----\r\n${b64.match(/.{1,40}/g)!.join('\r\n')}\r\n-----END PUBLIC KEY-----\r\n`;
    const parsed = parsePublicKey(oddPem);
    expect(Buffer.from(parsed.spki)).toEqual(spkiOf(key.publicKey));
  });
});

describe('parsePublicKey refuses what cannot be parsed (invalid_public_key)', () => {
  test('refuses empty input', () => {
    expectRefused('', 'invalid_public_key');
    expectRefused(new Uint8Array(0), 'invalid_public_key');
  });

  test('refuses text that is neither PEM nor DER', () => {
    expectRefused('this is not a public key', 'invalid_public_key');
    expectRefused(Buffer.from('deadbeefcafebabe0123456789', 'hex'), 'invalid_public_key');
  });

  test('refuses a PEM block of the wrong type (a certificate request, a private key)', () => {
    const key = makeKey('p256');
    expectRefused(toPem('CERTIFICATE', spkiOf(key.publicKey)), 'invalid_public_key');
    const pkcs8 = key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expectRefused(pkcs8, 'invalid_public_key');
  });

  test('refuses a PEM armour around a body that is not base64', () => {
    expectRefused(
      '-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n',
      'invalid_public_key',
    );
  });

  test('refuses an RSA PUBLIC KEY PEM that holds an EC SPKI', () => {
    expectRefused(toPem('RSA PUBLIC KEY', spkiOf(makeKey('p256').publicKey)), 'invalid_public_key');
  });

  test.each<KeyKind>(['p256', 'rsa2048', 'ed25519'])('refuses truncated %s SPKI DER', (kind) => {
    const der = spkiOf(makeKey(kind).publicKey);
    expectRefused(new Uint8Array(der.subarray(0, der.length - 5)), 'invalid_public_key');
    expectRefused(toPem('PUBLIC KEY', der.subarray(0, der.length - 5)), 'invalid_public_key');
  });

  test('refuses a P-256 key whose point is in compressed form, as Go’s x509 parser does', () => {
    // Go (Fulcio, cosign, sigstore-go) cannot parse a certificate with a compressed EC point,
    // so a leaf carrying one would be unusable: it must be refused at the door.
    const der = compressedP256Spki();
    expect(createPublicKey({ key: der, format: 'der', type: 'spki' }).asymmetricKeyType).toBe('ec');
    expectRefused(toPem('PUBLIC KEY', der), 'invalid_public_key');
    expectRefused(new Uint8Array(der), 'invalid_public_key');
  });
});

describe('parsePublicKey refuses keys goodkey calls insecure (insecure_public_key)', () => {
  test('refuses an RSA-1024 key as insecure', () => {
    const error = refusal(weakKeys.rsa1024().pem);
    expect(error.code).toBe('insecure_public_key');
    expect(error.clientMessage).toBe('The public key supplied in the request is insecure');
  });

  test('refuses an RSA-2048 key with public exponent 3 as insecure', () => {
    expectRefused(weakKeys.rsaExponent3().pem, 'insecure_public_key');
  });

  test('refuses an RSA key of a size other than 2048/3072/4096 bits (2056) as insecure', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2056 });
    expectRefused(
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      'insecure_public_key',
    );
  });

  test('refuses a P-224 key as insecure', () => {
    expectRefused(weakKeys.p224().pem, 'insecure_public_key');
  });

  test('refuses a P-256 point that is not on the curve as insecure', () => {
    expectRefused(weakKeys.offCurveP256Pem(), 'insecure_public_key');
  });

  test('refuses a secp256k1 key as insecure', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    expectRefused(
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      'insecure_public_key',
    );
  });

  test('refuses an X25519 key (not a signing key) as insecure', () => {
    const { publicKey } = generateKeyPairSync('x25519');
    expectRefused(
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      'insecure_public_key',
    );
  });

  test('refuses a DSA key as insecure', () => {
    const { publicKey } = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 });
    expectRefused(
      publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      'insecure_public_key',
    );
  });
});

describe('the JWK import of canonical EC and Ed25519 keys (the fast path)', () => {
  /** The same SPKI with one bit of the last coordinate byte flipped: off the curve. */
  function offCurve(der: Buffer): Buffer {
    const bytes = Buffer.from(der);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01;
    return bytes;
  }

  test.each<KeyKind>(['p256', 'p384', 'p521', 'ed25519'])(
    'a %s key from DER gives the same key, SPKI and algorithm as OpenSSL’s DER decoder',
    (kind) => {
      for (let i = 0; i < 5; i++) {
        const key = makeKey(kind);
        const der = spkiOf(key.publicKey);
        const parsed = parsePublicKey(der);
        const decoded = createPublicKey({ key: der, format: 'der', type: 'spki' });
        expect(parsed.key.equals(decoded)).toBe(true);
        expect(Buffer.from(parsed.spki)).toEqual(der);
        expect(parsed.key.asymmetricKeyDetails).toEqual(decoded.asymmetricKeyDetails);
      }
    },
  );

  test.each<KeyKind>(['p256', 'p384', 'p521'])(
    'refuses a %s point off the curve as insecure, like the DER decoder',
    (kind) => {
      const der = offCurve(spkiOf(makeKey(kind).publicKey));
      expect(() => createPublicKey({ key: der, format: 'der', type: 'spki' })).toThrow();
      expectRefused(der, 'insecure_public_key');
      expectRefused(toPem('PUBLIC KEY', der), 'insecure_public_key');
    },
  );

  test('refuses the all-zero P-256 point and coordinates past the field prime', () => {
    const prefix = spkiOf(makeKey('p256').publicKey).subarray(0, 27);
    const zero = Buffer.concat([prefix, Buffer.alloc(64)]);
    expectRefused(zero, 'insecure_public_key');
    const p = Buffer.from(
      'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
      'hex',
    );
    expectRefused(Buffer.concat([prefix, p, p]), 'insecure_public_key');
    expectRefused(
      Buffer.concat([prefix, Buffer.alloc(32, 0xff), Buffer.alloc(32, 0xff)]),
      'insecure_public_key',
    );
  });

  test('a P-256 header around a point that is not uncompressed (hybrid 0x06) is refused', () => {
    const der = Buffer.from(spkiOf(makeKey('p256').publicKey));
    der[26] = 0x06;
    expect(() => parsePublicKey(der)).toThrow(CaError);
  });

  test('an SPKI with trailing bytes is refused, as Go refuses it ("trailing data")', async () => {
    // OpenSSL's DER decoder reads the key and ignores what follows; Go's
    // x509.ParsePKIXPublicKey (Fulcio) refuses it. Both paths, every key kind, DER and PEM.
    for (const kind of ['p256', 'p384', 'rsa2048', 'ed25519'] as const) {
      const canonical = spkiOf(makeKey(kind).publicKey);
      for (const extra of [Buffer.from([0]), Buffer.from('3000', 'hex'), canonical]) {
        const der = Buffer.concat([canonical, extra]);
        for (const content of [der, toPem('PUBLIC KEY', der)]) {
          const err = refusal(content);
          expect([kind, err.code, err.detail]).toEqual([
            kind,
            'invalid_public_key',
            `trailing data after the spki key (${extra.length} bytes)`,
          ]);
          await expect(importPublicKey(content)).rejects.toMatchObject({
            code: 'invalid_public_key',
          });
        }
      }
    }
  });

  test('a PKCS#1 RSA PUBLIC KEY with trailing bytes is refused, as Go refuses it', () => {
    const pkcs1 = makeKey('rsa2048').publicKey.export({ type: 'pkcs1', format: 'der' });
    const err = refusal(toPem('RSA PUBLIC KEY', Buffer.concat([pkcs1, Buffer.from([5])])));
    expect([err.code, err.detail]).toEqual([
      'invalid_public_key',
      'trailing data after the pkcs1 key (1 bytes)',
    ]);
  });

  test('an SPKI cut short or in indefinite-length BER is refused as unparsable', () => {
    const canonical = spkiOf(makeKey('p256').publicKey);
    expectRefused(canonical.subarray(0, canonical.length - 1), 'invalid_public_key');
    // SEQUENCE with indefinite length (0x80) and end-of-contents: BER, not DER.
    const ber = Buffer.concat([Buffer.from([0x30, 0x80]), canonical.subarray(2), Buffer.alloc(2)]);
    expectRefused(ber, 'invalid_public_key');
  });
});

describe('importPublicKey (the raw-point import for canonical EC keys) agrees with parsePublicKey', () => {
  /** The answer of a parser: the key's SPKI and algorithm, or the refusal's code and detail. */
  async function answerOf(
    parse: () => SubjectPublicKey | Promise<SubjectPublicKey>,
  ): Promise<unknown> {
    try {
      const parsed = await parse();
      return {
        spki: Buffer.from(parsed.spki).toString('hex'),
        algorithm: parsed.algorithm,
        exported: parsed.key.export({ type: 'spki', format: 'der' }).toString('hex'),
      };
    } catch (err) {
      expect(err).toBeInstanceOf(CaError);
      return { code: (err as CaError).code, detail: (err as CaError).detail };
    }
  }

  async function expectSameAnswer(content: Uint8Array | string): Promise<void> {
    expect(await answerOf(() => importPublicKey(content))).toEqual(
      await answerOf(() => parsePublicKey(content)),
    );
  }

  function offCurve(der: Buffer): Buffer {
    const bytes = Buffer.from(der);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01;
    return bytes;
  }

  test.each<KeyKind>(['p256', 'p384', 'p521', 'rsa2048', 'ed25519'])(
    'gives the same key, SPKI and algorithm for %s keys, as PEM and as DER',
    async (kind) => {
      for (let i = 0; i < 3; i++) {
        const key = makeKey(kind);
        await expectSameAnswer(key.pem);
        await expectSameAnswer(spkiOf(key.publicKey));
        await expectSameAnswer(Buffer.from(key.pem));
      }
    },
  );

  test('verifies a proof of possession with the key it imported', async () => {
    const key = makeKey('p256');
    const proof = sign('sha256', Buffer.from('ci@example.com'), {
      key: key.privateKey,
      dsaEncoding: 'der',
    });
    const imported = await importPublicKey(key.pem);
    expect(verifyProof(imported, proof, 'ci@example.com')).toBe('sha256');
    expect(() => verifyProof(imported, proof, 'other@example.com')).toThrow(CaError);
  });

  test.each<KeyKind>(['p256', 'p384', 'p521'])(
    'refuses a %s point off the curve as insecure, with the same detail',
    async (kind) => {
      const der = offCurve(spkiOf(makeKey(kind).publicKey));
      await expectSameAnswer(der);
      await expectSameAnswer(toPem('PUBLIC KEY', der));
      await expect(importPublicKey(der)).rejects.toMatchObject({ code: 'insecure_public_key' });
    },
  );

  test('refuses the all-zero point, coordinates past the field prime, a hybrid point and a compressed point as parsePublicKey does', async () => {
    const canonical = spkiOf(makeKey('p256').publicKey);
    const prefix = canonical.subarray(0, 27);
    const p = Buffer.from(
      'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
      'hex',
    );
    const hybrid = Buffer.from(canonical);
    hybrid[26] = 0x06;
    for (const der of [
      Buffer.concat([prefix, Buffer.alloc(64)]),
      Buffer.concat([prefix, p, p]),
      Buffer.concat([prefix, Buffer.alloc(32, 0xff), Buffer.alloc(32, 0xff)]),
      hybrid,
      compressedP256Spki(),
      Buffer.concat([canonical, Buffer.from([0])]),
    ]) {
      await expectSameAnswer(der);
    }
  });

  test('answers weak keys, PKCS#1 PEMs, other PEM types and garbage as parsePublicKey does', async () => {
    for (const content of [
      weakKeys.rsa1024().pem,
      weakKeys.rsaExponent3().pem,
      weakKeys.p224().pem,
      weakKeys.offCurveP256Pem(),
      toPem(
        'RSA PUBLIC KEY',
        makeKey('rsa2048').publicKey.export({ type: 'pkcs1', format: 'der' }),
      ),
      toPem('CERTIFICATE REQUEST', Buffer.from('not a request')),
      '',
      'neither PEM nor DER',
      Buffer.from([0x30, 0x03, 0x02, 0x01]),
    ]) {
      await expectSameAnswer(content);
    }
  });
});
