import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync, verify } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import {
  FULCIO_OID,
  type CertificateIdentity,
} from '../../../../services/ca/certificate-identity/certificate-identity';
import { systemClock } from '../../../../services/common/clock';
import { CaError } from '../../../../services/ca/common/errors';
import { createEphemeralChain } from '../../../../services/ca/issuance/ephemeral-chain';
import {
  CertificateAuthority,
  type IssuanceRequest,
} from '../../../../services/ca/issuance/certificate-authority';
import { randomSerial } from '../../../../services/ca/issuance/serial';
import {
  KeySigner,
  generateEphemeralKey,
  type CaSigner,
} from '../../../../services/common/signer/signer';
import { makeKey } from '../../../helpers/keys';

const ISSUER_URL = 'https://issuer.example.com';
const SUBJECT = 'subject-42';
const EMAIL = 'alice@example.com';

const SIGNATURE_OIDS = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ed25519: '1.3.101.112',
};

function identity(
  san: CertificateIdentity['san'],
  extensions: CertificateIdentity['extensions'] = [
    { oid: FULCIO_OID.issuerV1, value: ISSUER_URL, encoding: 'raw' },
    { oid: FULCIO_OID.issuerV2, value: ISSUER_URL, encoding: 'utf8' },
    { oid: FULCIO_OID.tokenSubject, value: SUBJECT, encoding: 'utf8' },
  ],
): CertificateIdentity {
  return { san, extensions };
}

interface CountedCa {
  readonly ca: CertificateAuthority;
  readonly signer: CaSigner;
  signs(): number;
}

/** A CA over a signer wrapped to count signatures: a refusal must sign nothing. */
function countedCa(signer: CaSigner): CountedCa {
  let signs = 0;
  const counting: CaSigner = {
    chain: signer.chain,
    publicKey: signer.publicKey,
    hash: signer.hash,
    sign: (tbs) => {
      signs++;
      return signer.sign(tbs);
    },
  };
  return { ca: new CertificateAuthority(counting), signer, signs: () => signs };
}

async function ephemeralCa(intermediate: KeySigner = generateEphemeralKey()): Promise<CountedCa> {
  return countedCa(await createEphemeralChain(generateEphemeralKey(), intermediate, systemClock));
}

function wholeSecondsNow(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

function request(overrides: Partial<IssuanceRequest> = {}): IssuanceRequest {
  const notBefore = wholeSecondsNow();
  return {
    publicKey: new Uint8Array(makeKey('p256').publicKey.export({ type: 'spki', format: 'der' })),
    identity: identity({ type: 'email', value: EMAIL }),
    serial: randomSerial(),
    notBefore,
    notAfter: new Date(notBefore.getTime() + 600_000),
    ...overrides,
  };
}

function opensslText(der: Uint8Array): string {
  return execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], {
    input: Buffer.from(der),
    encoding: 'utf8',
  });
}

function signatureAlgorithmOf(der: Uint8Array): { outer: string; inner: string; params: boolean } {
  const cert = pkijs.Certificate.fromBER(Uint8Array.from(der));
  return {
    outer: cert.signatureAlgorithm.algorithmId,
    inner: cert.signature.algorithmId,
    params: cert.signatureAlgorithm.algorithmParams !== undefined,
  };
}

let shared: CountedCa;
beforeAll(async () => {
  shared = await ephemeralCa();
});

describe('CertificateAuthority.issue', () => {
  test('returns a leaf that openssl parses as the Fulcio profile (email identity)', async () => {
    const req = request();
    const { der } = await shared.ca.issue(req);
    const text = opensslText(der);
    expect(text).toContain('Version: 3 (0x2)');
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(text).toMatch(/Issuer: O ?= ?mayfly, CN ?= ?mayfly ephemeral intermediate/);
    expect(text).toMatch(/Subject: *\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+Code Signing\n/);
    expect(text).toMatch(/X509v3 Subject Key Identifier: \n\s+([0-9A-F]{2}:){19}[0-9A-F]{2}\n/);
    expect(text).toMatch(
      /X509v3 Authority Key Identifier: \n\s+(keyid:)?([0-9A-F]{2}:){19}[0-9A-F]{2}\n/,
    );
    expect(text).toMatch(
      /X509v3 Subject Alternative Name: critical\n\s+email:alice@example\.com\n/,
    );
    expect(text).toContain('1.3.6.1.4.1.57264.1.1:');
    expect(text).toContain('1.3.6.1.4.1.57264.1.8:');
    expect(text).toContain('1.3.6.1.4.1.57264.1.24:');
    expect(text).not.toContain('Basic Constraints');
    expect(text).toContain('ASN1 OID: prime256v1');
  });

  test('returns a leaf that openssl parses for a uri identity', async () => {
    const uri = 'https://example.com/users/1';
    const { der } = await shared.ca.issue(
      request({ identity: identity({ type: 'uri', value: uri }) }),
    );
    expect(opensslText(der)).toMatch(
      /X509v3 Subject Alternative Name: critical\n\s+URI:https:\/\/example\.com\/users\/1\n/,
    );
  });

  test('returns a leaf that openssl parses for an otherName (username) identity', async () => {
    const { der } = await shared.ca.issue(
      request({ identity: identity({ type: 'otherName', value: 'alice!example.com' }) }),
    );
    const text = opensslText(der);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s+othername:/i);
    expect(new X509Certificate(der).subjectAltName).toMatch(/^othername:/i);
  });

  test('returns a leaf whose signature verifies with the issuing certificate’s key', async () => {
    const { der, chain } = await shared.ca.issue(request());
    const leaf = new X509Certificate(der);
    const intermediate = new X509Certificate(chain[0]!);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(new X509Certificate(chain[1]!).publicKey)).toBe(false);
  });

  test('signs with ecdsa-with-SHA256 and no parameters when the CA key is P-256', async () => {
    const { der } = await shared.ca.issue(request());
    expect(signatureAlgorithmOf(der)).toEqual({
      outer: SIGNATURE_OIDS.ecdsaWithSha256,
      inner: SIGNATURE_OIDS.ecdsaWithSha256,
      params: false,
    });
  });

  test('returns the validity it was asked for and the CA chain, issuing certificate first', async () => {
    const req = request();
    const issued = await shared.ca.issue(req);
    const leaf = new X509Certificate(issued.der);
    expect(Date.parse(leaf.validFrom)).toBe(req.notBefore.getTime());
    expect(Date.parse(leaf.validTo)).toBe(req.notAfter.getTime());
    expect(issued.notBefore).toEqual(req.notBefore);
    expect(issued.notAfter).toEqual(req.notAfter);
    expect(issued.chain).toEqual(shared.signer.chain);
    expect(issued.chain).toHaveLength(2);
    const root = new X509Certificate(issued.chain[1]!);
    expect(root.checkIssued(root)).toBe(true);
    expect(shared.ca.trustBundle()).toEqual([shared.signer.chain]);
  });

  test('gives each request its own serial', async () => {
    const a = new X509Certificate((await shared.ca.issue(request())).der);
    const b = new X509Certificate((await shared.ca.issue(request())).der);
    expect(a.serialNumber).not.toBe(b.serialNumber);
    const req = request();
    const c = new X509Certificate((await shared.ca.issue(req)).der);
    expect(c.serialNumber.replace(/^0+/, '')).toBe(
      Buffer.from(req.serial).toString('hex').toUpperCase().replace(/^0+/, ''),
    );
  });

  test('signs exactly once per issued certificate', async () => {
    const ca = await ephemeralCa();
    await ca.ca.issue(request());
    await ca.ca.issue(request());
    expect(ca.signs()).toBe(2);
  });
});

describe('CA keys other than P-256', () => {
  test('a P-384 CA key signs leaves with ecdsa-with-SHA384', async () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    const { ca, signer } = await ephemeralCa(new KeySigner(p384));
    const { der } = await ca.issue(request());
    expect(signatureAlgorithmOf(der)).toEqual({
      outer: SIGNATURE_OIDS.ecdsaWithSha384,
      inner: SIGNATURE_OIDS.ecdsaWithSha384,
      params: false,
    });
    expect(opensslText(der)).toMatch(/Signature Algorithm: ecdsa-with-SHA384/);
    const cert = asn1js.fromBER(Uint8Array.from(der)).result as asn1js.Sequence;
    const [tbs, , signature] = cert.valueBlock.value as [
      asn1js.Sequence,
      asn1js.Sequence,
      asn1js.BitString,
    ];
    const tbsBytes = Buffer.from(tbs.valueBeforeDecodeView);
    const sig = Buffer.from(signature.valueBlock.valueHexView);
    expect(verify('sha384', tbsBytes, { key: signer.publicKey, dsaEncoding: 'der' }, sig)).toBe(
      true,
    );
    expect(verify('sha256', tbsBytes, { key: signer.publicKey, dsaEncoding: 'der' }, sig)).toBe(
      false,
    );
  });

  test('an RSA CA key signs leaves with sha256WithRSAEncryption and NULL parameters', async () => {
    const { ca, signer } = await ephemeralCa(new KeySigner(makeKey('rsa2048').privateKey));
    const { der } = await ca.issue(request());
    expect(signatureAlgorithmOf(der)).toEqual({
      outer: SIGNATURE_OIDS.sha256WithRsa,
      inner: SIGNATURE_OIDS.sha256WithRsa,
      params: true,
    });
    expect(new X509Certificate(der).verify(signer.publicKey)).toBe(true);
    expect(opensslText(der)).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
  });

  test('an Ed25519 CA key signs leaves with Ed25519 and no parameters', async () => {
    const ed = generateKeyPairSync('ed25519').privateKey;
    const { ca, signer } = await ephemeralCa(new KeySigner(ed));
    const { der } = await ca.issue(request());
    expect(signatureAlgorithmOf(der)).toEqual({
      outer: SIGNATURE_OIDS.ed25519,
      inner: SIGNATURE_OIDS.ed25519,
      params: false,
    });
    expect(new X509Certificate(der).verify(signer.publicKey)).toBe(true);
  });
});

describe('the CA re-checks every request and signs nothing it refuses', () => {
  let ca: CountedCa;
  beforeEach(async () => {
    ca = await ephemeralCa();
  });

  async function expectRefused(req: IssuanceRequest): Promise<CaError> {
    let error: unknown;
    try {
      await ca.ca.issue(req);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).code).toBe('ca_backend');
    expect((error as CaError).clientMessage).toBe('error communicating with CA backend');
    expect(ca.signs()).toBe(0);
    return error as CaError;
  }

  test('accepts the baseline request (so the refusals below are about one field each)', async () => {
    await ca.ca.issue(request());
    expect(ca.signs()).toBe(1);
  });

  test('refuses a 21-octet serial', async () => {
    const serial = new Uint8Array(21).fill(0x11);
    await expectRefused(request({ serial }));
  });

  test('refuses a negative serial (high bit set)', async () => {
    const serial = randomSerial();
    serial[0] = serial[0]! | 0x80;
    await expectRefused(request({ serial }));
  });

  test('refuses an empty serial', async () => {
    await expectRefused(request({ serial: new Uint8Array(0) }));
  });

  test('refuses a zero serial (RFC 5280 serials are positive)', async () => {
    await expectRefused(request({ serial: new Uint8Array(20) }));
  });

  test('refuses a notAfter past the issuing certificate’s notAfter', async () => {
    const limit = ca.ca.notAfterLimit;
    const notAfter = new Date(limit.getTime() + 1000);
    await expectRefused(request({ notBefore: new Date(limit.getTime() - 599_000), notAfter }));
  });

  test('accepts a notAfter equal to the issuing certificate’s notAfter', async () => {
    const limit = ca.ca.notAfterLimit;
    expect(limit.getTime()).toBe(Date.parse(new X509Certificate(ca.signer.chain[0]!).validTo));
    await ca.ca.issue(request({ notBefore: new Date(limit.getTime() - 600_000), notAfter: limit }));
    expect(ca.signs()).toBe(1);
  });

  test('refuses a notBefore that is not a whole second', async () => {
    const base = request();
    await expectRefused({ ...base, notBefore: new Date(base.notBefore.getTime() + 1) });
  });

  test('refuses a notAfter that is not a whole second', async () => {
    const base = request();
    await expectRefused({ ...base, notAfter: new Date(base.notAfter.getTime() - 500) });
  });

  test('refuses an empty or inverted validity', async () => {
    const base = request();
    await expectRefused({ ...base, notAfter: base.notBefore });
    await expectRefused({ ...base, notAfter: new Date(base.notBefore.getTime() - 1000) });
  });

  test('refuses a public key that does not parse', async () => {
    await expectRefused(request({ publicKey: Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x01]) }));
    await expectRefused(request({ publicKey: new Uint8Array(0) }));
  });

  test('refuses a key type the CA does not issue for (X25519)', async () => {
    const x25519 = generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'der' });
    await expectRefused(request({ publicKey: new Uint8Array(x25519) }));
  });

  test('refuses an empty SAN', async () => {
    await expectRefused(request({ identity: identity({ type: 'email', value: '' }) }));
  });

  test('refuses a SAN with control characters', async () => {
    await expectRefused(request({ identity: identity({ type: 'email', value: 'a\n@b.com' }) }));
  });

  test('refuses a non-ASCII email or URI SAN (not an IA5String)', async () => {
    await expectRefused(
      request({ identity: identity({ type: 'email', value: 'zoë@example.com' }) }),
    );
  });

  test('refuses an identity without the 1.8 issuer extension', async () => {
    await expectRefused(
      request({
        identity: identity({ type: 'email', value: EMAIL }, [
          { oid: FULCIO_OID.issuerV1, value: ISSUER_URL, encoding: 'raw' },
          { oid: FULCIO_OID.tokenSubject, value: SUBJECT, encoding: 'utf8' },
        ]),
      }),
    );
  });

  test('refuses an identity whose 1.8 issuer extension is empty', async () => {
    await expectRefused(
      request({
        identity: identity({ type: 'email', value: EMAIL }, [
          { oid: FULCIO_OID.issuerV2, value: '', encoding: 'utf8' },
        ]),
      }),
    );
  });

  test('refuses when the signer fails, without leaking a certificate', async () => {
    const failing = countedCa({
      ...ca.signer,
      chain: ca.signer.chain,
      sign: () => Promise.reject(new Error('HSM unplugged')),
    });
    let error: unknown;
    try {
      await failing.ca.issue(request());
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).code).toBe('ca_backend');
  });

  test('refuses a certificate whose signature does not verify (a signer with the wrong key)', async () => {
    const other = generateEphemeralKey();
    const wrong = countedCa({
      chain: ca.signer.chain,
      publicKey: ca.signer.publicKey,
      hash: ca.signer.hash,
      sign: (tbs) => other.sign(tbs),
    });
    let error: unknown;
    try {
      await wrong.ca.issue(request());
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).code).toBe('ca_backend');
    expect((error as CaError).detail).toMatch(/signature does not verify/);
  });
});
