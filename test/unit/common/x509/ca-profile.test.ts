import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as pkijs from 'pkijs';
import { ManualClock } from '../../../../services/common/clock';
import { toArrayBuffer } from '../../../../services/common/encoding';
import { KeySigner } from '../../../../services/common/signer/signer';
import { buildCaCertificate } from '../../../../services/common/x509/ca-certificate';
import { createEphemeralChain } from '../../../../services/ca/issuance/ephemeral-chain';

/**
 * The CA's ephemeral chain and the key ceremony's CA-certificate builder make certificates of
 * one profile: the same extensions (order, criticality, values), validity rules, Name
 * encoding and signature algorithm, for P-256, P-384 and RSA keys. Each side is checked
 * against the explicit profile and against the other. (This test first ran against the CA's
 * own builder, issuance/ca-certificates.ts, before the ephemeral chain was switched to
 * buildCaCertificate; the explicit profile keeps pinning both.)
 */

const START = new Date('2026-03-04T05:06:07.890Z');
const NOW = new Date('2026-03-04T05:06:07.000Z'); // whole seconds
const YEAR_MS = 365 * 24 * 3600 * 1000;

const KEYS = {
  'P-256': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  'P-384': () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey,
  RSA: () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
};

const SIG_OID = {
  'P-256': '1.2.840.10045.4.3.2',
  'P-384': '1.2.840.10045.4.3.3',
  RSA: '1.2.840.113549.1.1.11',
};

function hex(bytes: ArrayBuffer | Uint8Array): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('hex');
}

/** Name DER for O=mayfly, CN=cn: one UTF8String attribute per RDN. */
function expectedName(cn: string): string {
  const attr = (oid: number[], value: string): Buffer => {
    const o = Buffer.from([0x06, oid.length, ...oid]);
    const v = Buffer.concat([Buffer.from([0x0c, value.length]), Buffer.from(value)]);
    const seq = Buffer.concat([Buffer.from([0x30, o.length + v.length]), o, v]);
    return Buffer.concat([Buffer.from([0x31, seq.length]), seq]);
  };
  const body = Buffer.concat([attr([0x55, 0x04, 0x0a], 'mayfly'), attr([0x55, 0x04, 0x03], cn)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]).toString('hex');
}

function keyId(cert: X509Certificate): string {
  const info = new pkijs.PublicKeyInfo({
    schema: pkijs.PublicKeyInfo.fromBER(
      toArrayBuffer(new Uint8Array(cert.publicKey.export({ format: 'der', type: 'spki' }))),
    ).toSchema(),
  });
  return createHash('sha1').update(info.subjectPublicKey.valueBlock.valueHexView).digest('hex');
}

/** Everything of the profile a certificate shows, minus serial, keys and signature bytes. */
function profile(der: Uint8Array) {
  const cert = pkijs.Certificate.fromBER(toArrayBuffer(der));
  const serial = new Uint8Array(cert.serialNumber.valueBlock.valueHexView);
  return {
    version: cert.version,
    serialPositive: (serial[0]! & 0x80) === 0 && serial.length <= 20,
    tbsSignature: hex(cert.signature.toSchema().toBER(false)),
    signatureAlgorithm: hex(cert.signatureAlgorithm.toSchema().toBER(false)),
    issuer: hex(cert.issuer.toSchema().toBER(false)),
    subject: hex(cert.subject.toSchema().toBER(false)),
    notBefore: [cert.notBefore.type, cert.notBefore.value.toISOString()],
    notAfter: [cert.notAfter.type, cert.notAfter.value.toISOString()],
    extensions: (cert.extensions ?? []).map((e) => ({
      oid: e.extnID,
      critical: e.critical,
      // key identifiers differ per key; their derivation is checked separately
      value:
        e.extnID === '2.5.29.14' || e.extnID === '2.5.29.35'
          ? 'keyid'
          : hex(e.extnValue.valueBlock.valueHexView),
    })),
  };
}

function expectProfile(
  der: Uint8Array,
  kind: 'root' | 'intermediate',
  alg: keyof typeof SIG_OID,
): void {
  const p = profile(der);
  expect(p.version).toBe(2);
  expect(p.serialPositive).toBe(true);
  const algId = pkijs.AlgorithmIdentifier.fromBER(
    toArrayBuffer(Buffer.from(p.signatureAlgorithm, 'hex')),
  );
  expect(algId.algorithmId).toBe(SIG_OID[alg]);
  // RSA carries NULL parameters, ECDSA none (RFC 5758 §3.2)
  expect(algId.algorithmParams === undefined).toBe(alg !== 'RSA');
  expect(p.tbsSignature).toBe(p.signatureAlgorithm);
  expect(p.issuer).toBe(expectedName('mayfly ephemeral root'));
  expect(p.subject).toBe(
    expectedName(kind === 'root' ? 'mayfly ephemeral root' : 'mayfly ephemeral intermediate'),
  );
  const years = kind === 'root' ? 10 : 3;
  expect(p.notBefore).toEqual([0, NOW.toISOString()]); // UTCTime
  expect(p.notAfter).toEqual([0, new Date(NOW.getTime() + years * YEAR_MS).toISOString()]);
  expect(p.extensions).toEqual([
    { oid: '2.5.29.15', critical: true, value: '03020106' },
    ...(kind === 'intermediate'
      ? [{ oid: '2.5.29.37', critical: false, value: '300a06082b06010505070303' }]
      : []),
    {
      oid: '2.5.29.19',
      critical: true,
      value: kind === 'root' ? '30060101ff020101' : '30060101ff020100',
    },
    { oid: '2.5.29.14', critical: false, value: 'keyid' },
    { oid: '2.5.29.35', critical: false, value: 'keyid' },
  ]);
}

function keyIds(der: Uint8Array) {
  const cert = pkijs.Certificate.fromBER(toArrayBuffer(der));
  const value = (oid: string) =>
    hex(cert.extensions!.find((e) => e.extnID === oid)!.extnValue.valueBlock.valueHexView);
  return { ski: value('2.5.29.14'), aki: value('2.5.29.35') };
}

describe.each(Object.keys(KEYS) as (keyof typeof KEYS)[])('CA certificate profile, %s', (alg) => {
  it('the ephemeral chain has the profile, and the ceremony builder makes the same one', async () => {
    const root = new KeySigner(KEYS[alg]());
    const intermediate = new KeySigner(KEYS[alg]());
    const ephemeral = await createEphemeralChain(root, intermediate, new ManualClock(START));
    const [ephInt, ephRoot] = ephemeral.chain;

    const rootDn = { organization: 'mayfly', commonName: 'mayfly ephemeral root' };
    const intDn = { organization: 'mayfly', commonName: 'mayfly ephemeral intermediate' };
    const cerRoot = await buildCaCertificate({
      subject: rootDn,
      issuer: rootDn,
      subjectKey: root.publicKey,
      issuerSigner: root,
      pathLen: 1,
      codeSigningEku: false,
      notBefore: NOW,
      notAfter: new Date(NOW.getTime() + 10 * YEAR_MS),
    });
    const cerInt = await buildCaCertificate({
      subject: intDn,
      issuer: rootDn,
      subjectKey: intermediate.publicKey,
      issuerSigner: root,
      pathLen: 0,
      codeSigningEku: true,
      notBefore: NOW,
      notAfter: new Date(NOW.getTime() + 3 * YEAR_MS),
    });

    for (const [r, i] of [
      [ephRoot!, ephInt!],
      [cerRoot, cerInt],
    ] as const) {
      expectProfile(r, 'root', alg);
      expectProfile(i, 'intermediate', alg);
      const rootX = new X509Certificate(r);
      const intX = new X509Certificate(i);
      expect(rootX.verify(rootX.publicKey)).toBe(true);
      expect(intX.verify(rootX.publicKey)).toBe(true);
      expect(intX.checkIssued(rootX)).toBe(true);
      expect(keyIds(r)).toEqual({ ski: `0414${keyId(rootX)}`, aki: `30168014${keyId(rootX)}` });
      expect(keyIds(i)).toEqual({ ski: `0414${keyId(intX)}`, aki: `30168014${keyId(rootX)}` });
    }
    expect(profile(cerRoot)).toEqual(profile(ephRoot!));
    expect(profile(cerInt)).toEqual(profile(ephInt!));
  });
});
