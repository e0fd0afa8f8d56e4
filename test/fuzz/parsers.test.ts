import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { CaError } from '../../services/ca/common/errors';
import { IdentityConfigError } from '../../services/ca/config/identity-config';
import { parseIdentityConfig } from '../../services/ca/identity/identity-config';
import { verifyCsr } from '../../services/ca/pop/csr';
import { importPublicKey, parsePublicKey } from '../../services/ca/pop/public-key';
import { flipBit, fuzzParams, guardUnhandledRejections, named } from '../helpers/fuzz';
import { makeCsr, makeKey, type KeyKind } from '../helpers/keys';

/** A PEM block for any bytes, empty ones included. */
function toPem(type: string, der: Uint8Array): string {
  const b64 = (
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? []
  ).join('\n');
  return `-----BEGIN ${type}-----\n${b64}\n-----END ${type}-----\n`;
}

const RUNS = 1000;

guardUnhandledRejections();

/** Runs `fn`; an exception must be of class `type` (and, if given, carry one of `codes`). */
function onlyThrows(
  fn: () => unknown,
  type: new (...args: never[]) => Error,
  codes?: readonly string[],
): unknown {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof type)) {
      throw new Error(`expected a ${type.name}, got: ${(err as Error).stack ?? String(err)}`);
    }
    if (codes) expect(codes).toContain((err as CaError).code);
    return undefined;
  }
}

/** Byte-level damage to a buffer: flips, overwrites, truncation, insertion, deletion. */
const byteMutation = fc.oneof(
  fc
    .tuple(fc.nat(), fc.nat(7))
    .map(([i, bit]) => named<Buffer>(`flip byte ${i} bit ${bit}`, (b) => flipBit(b, i, bit))),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([i, v]) =>
    named<Buffer>(`set byte ${i} to ${v}`, (b) => {
      const copy = Buffer.from(b);
      if (copy.length > 0) copy[i % copy.length] = v;
      return copy;
    }),
  ),
  fc.nat().map((n) => named<Buffer>(`truncate to ${n}`, (b) => b.subarray(0, n % (b.length + 1)))),
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([i, bytes]) =>
    named<Buffer>(`insert ${Buffer.from(bytes).toString('hex')} at ${i}`, (b) => {
      const at = i % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), bytes, b.subarray(at)]);
    }),
  ),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 16 })).map(([i, n]) =>
    named<Buffer>(`delete ${n} bytes at ${i}`, (b) => {
      const at = i % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
    }),
  ),
);
const byteMutations = fc.array(byteMutation, { minLength: 1, maxLength: 4 });
const apply = (b: Buffer, ms: readonly ((b: Buffer) => Buffer)[]): Buffer =>
  ms.reduce((x, m) => m(x), b);

const KINDS: KeyKind[] = ['p256', 'p384', 'p521', 'rsa2048', 'ed25519'];
const keys = KINDS.map((kind) => makeKey(kind));
const spkis = keys.map((k) => k.publicKey.export({ type: 'spki', format: 'der' }));
const csrs = keys.map((k) => makeCsr(k));
const KEY_CODES = ['invalid_public_key', 'insecure_public_key'];

describe('parsePublicKey under fuzzing', () => {
  test('returns an acceptable key or throws a public-key CaError for mutated SPKI DER', () => {
    fc.assert(
      fc.property(fc.nat(KINDS.length - 1), byteMutations, (k, ms) => {
        const der = apply(spkis[k]!, ms);
        const key = onlyThrows(() => parsePublicKey(der), CaError, KEY_CODES);
        if (key)
          expect(['ecdsa', 'rsa', 'ed25519']).toContain(
            (key as { algorithm: { kind: string } }).algorithm.kind,
          );
      }),
      fuzzParams(RUNS),
    );
  });

  test('returns an acceptable key or throws a public-key CaError for mutated PEM text', () => {
    fc.assert(
      fc.property(fc.nat(KINDS.length - 1), byteMutations, fc.boolean(), (k, ms, onDer) => {
        const pem = onDer
          ? toPem('PUBLIC KEY', apply(spkis[k]!, ms))
          : apply(Buffer.from(keys[k]!.pem), ms).toString('latin1');
        onlyThrows(() => parsePublicKey(pem), CaError, KEY_CODES);
      }),
      fuzzParams(RUNS),
    );
  });

  test('throws only a public-key CaError for arbitrary bytes and strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc
            .tuple(
              fc.constantFrom('PUBLIC KEY', 'RSA PUBLIC KEY', 'CERTIFICATE', ''),
              fc.uint8Array({ maxLength: 200 }),
            )
            .map(([type, der]) => toPem(type, der)),
        ),
        (input) => {
          onlyThrows(() => parsePublicKey(input), CaError, KEY_CODES);
        },
      ),
      fuzzParams(RUNS),
    );
  });
});

/** A parser's answer, comparable across the two: the SPKI and algorithm, or the refusal. */
async function answerOf(parse: () => unknown): Promise<unknown> {
  try {
    const key = (await parse()) as { spki: Uint8Array; algorithm: unknown };
    return { spki: Buffer.from(key.spki).toString('hex'), algorithm: key.algorithm };
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    return { code: (err as CaError).code, detail: (err as CaError).detail };
  }
}

describe('importPublicKey under fuzzing', () => {
  test('gives exactly the answer parsePublicKey gives for mutated SPKI DER and PEM', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(KINDS.length - 1),
        byteMutations,
        fc.boolean(),
        async (k, ms, pem) => {
          const der = apply(spkis[k]!, ms);
          const content = pem ? toPem('PUBLIC KEY', der) : der;
          expect(await answerOf(() => importPublicKey(content))).toEqual(
            await answerOf(() => parsePublicKey(content)),
          );
        },
      ),
      fuzzParams(RUNS),
    );
  });
});

describe('verifyCsr under fuzzing', () => {
  test('throws only CaErrors for byte mutations of a valid CSR', () => {
    fc.assert(
      fc.property(fc.nat(KINDS.length - 1), byteMutations, fc.boolean(), (k, ms, onDer) => {
        const pem = csrs[k]!;
        const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
        const mutated = onDer
          ? toPem('CERTIFICATE REQUEST', apply(der, ms))
          : apply(Buffer.from(pem), ms).toString('latin1');
        onlyThrows(() => verifyCsr(mutated), CaError);
      }),
      fuzzParams(RUNS),
    );
  });

  test('refuses a CSR whose DER asn1js cannot decode with invalid_csr (found by fuzzing)', () => {
    // An Ed25519 CSR whose signatureAlgorithm became a GeneralizedTime of garbage bytes.
    const der = Buffer.from(
      'MIGPMEMCAQAwEjEQMA4GA1UEAwwHaWdub3JlZDAqMAUGAytlcAMhAADswjr8w/HpJNRkq+yN/eK71UMVPgDhNPeN' +
        'f9n4qklgGDAFBgMrZXADQQB34dEZfRL1YSPOFeuO7VZ0r4ykJVWa6KPQWkc+qEopF7MVZ1ekt6jxyfPxAR0M' +
        'HaYu2CETqI6B1JEJEYQZ1L4E',
      'base64',
    );
    expect(() => verifyCsr(toPem('CERTIFICATE REQUEST', der))).toThrow(
      expect.objectContaining({ code: 'invalid_csr' }),
    );
  });

  test('accepts each unmutated CSR', () => {
    for (const csr of csrs) expect(verifyCsr(csr).key).toBeDefined();
  });
});

describe('parseIdentityConfig under fuzzing', () => {
  const shipped = readFileSync(path.join(__dirname, '../../config/identity.yaml'), 'utf8');
  const lines = shipped.split('\n');

  test('returns a config or throws IdentityConfigError for random YAML and JSON text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
          fc
            .dictionary(
              fc.constantFrom(
                'oidc-issuers',
                'meta-issuers',
                'ci-issuer-metadata',
                'OIDCIssuers',
                'x',
              ),
              fc.jsonValue({ maxDepth: 3 }),
            )
            .map((v) => JSON.stringify(v)),
          fc
            .array(
              fc.constantFrom(
                'a:',
                '  b: c',
                '- d',
                '&x',
                '*x',
                '<<: *x',
                ': ',
                '{',
                '[',
                '"',
                "'",
                '\t',
                '%YAML 1.2',
                '---',
                '!!binary x',
              ),
              { maxLength: 12 },
            )
            .map((ls) => ls.join('\n')),
        ),
        (text) => {
          onlyThrows(() => parseIdentityConfig(text), IdentityConfigError);
        },
      ),
      fuzzParams(RUNS),
    );
  });

  test('returns a config or throws IdentityConfigError for mutations of config/identity.yaml', () => {
    const lineMutation = fc.oneof(
      fc
        .nat()
        .map((i) =>
          named<string[]>(`delete line ${i}`, (ls) => ls.filter((_, j) => j !== i % ls.length)),
        ),
      fc.tuple(fc.nat(), fc.string({ unit: 'grapheme', maxLength: 30 })).map(([i, text]) =>
        named<string[]>(`line ${i} = ${JSON.stringify(text)}`, (ls) => {
          const copy = [...ls];
          copy[i % copy.length] = text;
          return copy;
        }),
      ),
      fc.tuple(fc.nat(), fc.nat()).map(([i, j]) =>
        named<string[]>(`swap lines ${i} and ${j}`, (ls) => {
          const copy = [...ls];
          const a = i % copy.length;
          const b = j % copy.length;
          [copy[a], copy[b]] = [copy[b]!, copy[a]!];
          return copy;
        }),
      ),
      fc.tuple(fc.nat(), fc.constantFrom(' ', '  ', '\t')).map(([i, indent]) =>
        named<string[]>(`indent line ${i} by ${JSON.stringify(indent)}`, (ls) => {
          const copy = [...ls];
          copy[i % copy.length] = indent + copy[i % copy.length]!;
          return copy;
        }),
      ),
    );
    fc.assert(
      fc.property(fc.array(lineMutation, { minLength: 1, maxLength: 4 }), (ms) => {
        const text = ms.reduce((ls, m) => m(ls), lines).join('\n');
        onlyThrows(() => parseIdentityConfig(text), IdentityConfigError);
      }),
      fuzzParams(RUNS / 5),
    );
  });
});
