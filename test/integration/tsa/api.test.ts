/**
 * The TSA's HTTP contract: refusals as the reference server gives them (status, media type,
 * JSON body), and that a refusal changes nothing (no audit line, no token counted); the
 * chain endpoint; the start-up profile check; the clock discipline against a real SNTP
 * server on loopback (node:dgram, below); the per-address rate limit.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { systemClock } from '../../../services/common/clock';
import { KeySigner } from '../../../services/common/signer/signer';
import { createEphemeralTsaChain, validateTsaChain } from '../../../services/tsa/certificates';
import { createTsaApp } from '../../../services/tsa/app';
import { tsaConfig } from '../../../services/tsa/config';
import { silentLogger } from '../../../services/common/logger';
import { startTestTsa, type TestTsa } from '../../helpers/mayfly-tsa';
import { until } from '../../helpers/wait';

let tsa: TestTsa;

beforeAll(async () => {
  tsa = await startTestTsa();
});
afterAll(async () => {
  await tsa?.close();
});

async function post(
  body: Uint8Array | string | undefined,
  type: string | undefined,
  url = tsa.url,
): Promise<{ status: number; type: string; text: string; bytes: Buffer }> {
  const res = await fetch(`${url}/api/v1/timestamp`, {
    method: 'POST',
    headers: type === undefined ? {} : { 'Content-Type': type },
    ...(body === undefined ? {} : { body }),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    text: bytes.toString(),
    bytes,
  };
}

/** A DER TimeStampReq with any hash OID and digest (built with pkijs, as a client would). */
function derRequest(
  oid: string,
  digest: Uint8Array,
  extra: Partial<{ policy: string; ext: boolean }> = {},
): Uint8Array {
  const req = new pkijs.TimeStampReq({
    version: 1,
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: oid,
        algorithmParams: new asn1js.Null(),
      }),
      hashedMessage: new asn1js.OctetString({ valueHex: digest }),
    }),
    nonce: asn1js.Integer.fromBigInt(2n ** 150n + 7n),
    certReq: true,
    ...(extra.policy ? { reqPolicy: extra.policy } : {}),
    ...(extra.ext
      ? {
          extensions: [
            new pkijs.Extension({ extnID: '1.2.3.4', extnValue: new asn1js.Null().toBER() }),
          ],
        }
      : {}),
  });
  return new Uint8Array(req.toSchema().toBER(false));
}

const SHA256 = '2.16.840.1.101.3.4.2.1';
const digest32 = createHash('sha256').update('x').digest();
const json = (o: unknown) => JSON.stringify(o);

describe('refusals, as the reference server answers them, change nothing', () => {
  const cases: [string, () => Promise<Awaited<ReturnType<typeof post>>>, number, string][] = [
    [
      'DER SHA-1',
      () => post(derRequest('1.3.14.3.2.26', new Uint8Array(20)), 'application/timestamp-query'),
      400,
      'Weak hash algorithm in timestamp request',
    ],
    [
      'DER MD5',
      () =>
        post(derRequest('1.2.840.113549.2.5', new Uint8Array(16)), 'application/timestamp-query'),
      400,
      'Error generating timestamp response',
    ],
    [
      'DER unknown OID',
      () => post(derRequest('1.2.3.4.5', new Uint8Array(32)), 'application/timestamp-query'),
      400,
      'Error generating timestamp response',
    ],
    [
      'DER garbage',
      () => post(Buffer.from('not a timestamp request'), 'application/timestamp-query'),
      400,
      'Error generating timestamp response',
    ],
    [
      'DER with trailing bytes',
      () =>
        post(
          Buffer.concat([derRequest(SHA256, digest32), Buffer.from([0])]),
          'application/timestamp-query',
        ),
      400,
      'Error generating timestamp response',
    ],
    [
      'DER imprint of the wrong length',
      () => post(derRequest(SHA256, new Uint8Array(31)), 'application/timestamp-query'),
      400,
      'Message digest has incorrect length for specified algorithm',
    ],
    [
      'DER other policy',
      () =>
        post(derRequest(SHA256, digest32, { policy: '1.2.3.4' }), 'application/timestamp-query'),
      400,
      'unaccepted policy: requested TSA policy is not supported by the TSA',
    ],
    [
      'DER with extensions',
      () => post(derRequest(SHA256, digest32, { ext: true }), 'application/timestamp-query'),
      400,
      'unaccepted extension: requested extensions are not supported by the TSA',
    ],
    [
      'JSON sha1',
      () =>
        post(
          json({ artifactHash: Buffer.alloc(20).toString('base64'), hashAlgorithm: 'SHA1' }),
          'application/json',
        ),
      400,
      'Weak hash algorithm in timestamp request',
    ],
    [
      'JSON md5',
      () =>
        post(
          json({ artifactHash: Buffer.alloc(16).toString('base64'), hashAlgorithm: 'md5' }),
          'application/json',
        ),
      400,
      'Error generating timestamp response',
    ],
    [
      'JSON not JSON',
      () => post('{"artifactHash":', 'application/json'),
      400,
      'Error generating timestamp response',
    ],
    [
      'JSON bad base64',
      () => post(json({ artifactHash: '***', hashAlgorithm: 'sha256' }), 'application/json'),
      400,
      'Error generating timestamp response',
    ],
    [
      'JSON fractional nonce',
      () =>
        post(
          `{"artifactHash":"${digest32.toString('base64')}","hashAlgorithm":"sha256","nonce":1.5}`,
          'application/json',
        ),
      400,
      'Error generating timestamp response',
    ],
    [
      'JSON string nonce',
      () =>
        post(
          `{"artifactHash":"${digest32.toString('base64')}","hashAlgorithm":"sha256","nonce":"5"}`,
          'application/json',
        ),
      400,
      'Error generating timestamp response',
    ],
    [
      'JSON over 1 KiB',
      () =>
        post(
          `{"artifactHash":"${digest32.toString('base64')}","hashAlgorithm":"sha256","nonce":${'9'.repeat(1100)}}`,
          'application/json',
        ),
      400,
      'timestamp request is too large',
    ],
    [
      'wrong content type',
      () => post(derRequest(SHA256, digest32), 'text/plain'),
      415,
      'unsupported media type "text/plain", only [application/timestamp-query application/json] are allowed',
    ],
    [
      'no content type',
      () => post(derRequest(SHA256, digest32), undefined),
      415,
      'unsupported media type "application/octet-stream", only [application/timestamp-query application/json] are allowed',
    ],
    [
      'empty body',
      () => post(new Uint8Array(0), 'application/timestamp-query'),
      422,
      'request in body is required',
    ],
  ];
  test.each(cases)('%s', async (_name, send, status, message) => {
    const auditBefore = tsa.audit.length;
    const issuedBefore = { ...tsa.issued };
    const res = await send();
    // The reference labels its handler's JSON errors with the route's produced type.
    expect({ status: res.status, type: res.type }).toEqual({
      status,
      type: status === 400 ? 'application/timestamp-reply' : 'application/json',
    });
    const body = JSON.parse(res.text) as { code: number; message: string };
    expect(body).toEqual({ code: status === 422 ? 602 : status, message });
    expect(tsa.audit.length).toBe(auditBefore);
    expect(tsa.issued).toEqual(issuedBefore);
  });

  test('a GET on the timestamp route is 405, an unknown path 404', async () => {
    const get = await fetch(`${tsa.url}/api/v1/timestamp`);
    expect(get.status).toBe(405);
    expect(await get.json()).toEqual({
      code: 405,
      message: 'method GET is not allowed, but [POST] are',
    });
    const missing = await fetch(`${tsa.url}/api/v1/nothing`);
    expect(missing.status).toBe(404);
  });
});

test('JSON: hashAlgorithm in any case, member names in any case, a nonce past 2^53 echoed exactly', async () => {
  const nonce = '123456789012345678901234567890123456789';
  const res = await post(
    `{"ARTIFACTHASH":"${createHash('sha512').update('y').digest('base64')}","hashAlgorithm":"ShA512","nonce":${nonce}}`,
    'application/json; charset=utf-8',
  );
  expect(res.status).toBe(201);
  const signed = new pkijs.SignedData({
    schema: pkijs.TimeStampResp.fromBER(res.bytes).timeStampToken!.content,
  });
  const info = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent!.getValue());
  expect(info.nonce!.toBigInt().toString()).toBe(nonce);
  expect(info.messageImprint.hashAlgorithm.algorithmId).toBe('2.16.840.1.101.3.4.2.3');
  // certificates defaults to false: no certificate in the token.
  expect(signed.certificates).toBeUndefined();
});

test('GET /api/v1/timestamp/certchain: the PEM chain, TSA certificate first', async () => {
  const res = await fetch(`${tsa.url}/api/v1/timestamp/certchain`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/pem-certificate-chain');
  expect(await res.text()).toBe(tsa.certChainPem.join(''));
});

/** The chain's leaf with its EKU extension changed by `mutate`, re-signed by the root key. */
function withLeafEku(
  chain: readonly Uint8Array[],
  rootKey: KeyObject,
  mutate: (extensions: pkijs.Extension[]) => pkijs.Extension[],
): Uint8Array[] {
  const cert = pkijs.Certificate.fromBER(chain[0]!);
  cert.extensions = mutate(cert.extensions ?? []);
  const tbs = cert.encodeTBS().toBER(false);
  const signature = sign('sha256', Buffer.from(tbs), { key: rootKey, dsaEncoding: 'der' });
  const der = new asn1js.Sequence({
    value: [
      asn1js.fromBER(tbs).result,
      cert.signatureAlgorithm.toSchema(),
      new asn1js.BitString({ valueHex: signature }),
    ],
  }).toBER(false);
  return [new Uint8Array(der), chain[1]!];
}

function ekuExtension(critical: boolean, purposes: string[]): pkijs.Extension {
  return new pkijs.Extension({
    extnID: '2.5.29.37',
    critical,
    extnValue: new pkijs.ExtKeyUsage({ keyPurposes: purposes }).toSchema().toBER(false),
  });
}

describe('the TSA refuses to start with a chain outside its profile', () => {
  const TIME_STAMPING = '1.3.6.1.5.5.7.3.8';
  const others = (exts: pkijs.Extension[]) => exts.filter((e) => e.extnID !== '2.5.29.37');
  test.each([
    ['no EKU', (exts: pkijs.Extension[]) => others(exts)],
    [
      'timeStamping not critical',
      (exts: pkijs.Extension[]) => [...others(exts), ekuExtension(false, [TIME_STAMPING])],
    ],
    [
      'timeStamping and codeSigning',
      (exts: pkijs.Extension[]) => [
        ...others(exts),
        ekuExtension(true, [TIME_STAMPING, '1.3.6.1.5.5.7.3.3']),
      ],
    ],
  ])('%s', async (_name, mutate) => {
    const rootKey = ecKey();
    const good = await createEphemeralTsaChain(
      new KeySigner(rootKey),
      new KeySigner(ecKey()),
      systemClock,
    );
    expect(() => validateTsaChain(good.chain, good.publicKey, systemClock)).not.toThrow();
    // The control: re-signing without a change still passes.
    const same = withLeafEku(good.chain, rootKey, (exts) => exts);
    expect(() => validateTsaChain(same, good.publicKey, systemClock)).not.toThrow();
    const bad = withLeafEku(good.chain, rootKey, mutate);
    await expect(
      createTsaApp(tsaConfig(), silentLogger, { signer: { ...good, chain: bad } }),
    ).rejects.toThrow(
      'the TSA certificate must carry the extended key usage timeStamping, critical, and no other',
    );
  });

  test("a CA as TSA certificate, or a key that is not the certificate's", async () => {
    const good = await createEphemeralTsaChain(
      new KeySigner(ecKey()),
      new KeySigner(ecKey()),
      systemClock,
    );
    expect(() =>
      validateTsaChain([good.chain[1]!, good.chain[1]!], good.publicKey, systemClock),
    ).toThrow(/must not be a CA/);
    expect(() =>
      validateTsaChain(good.chain, new KeySigner(ecKey()).publicKey, systemClock),
    ).toThrow(/does not match/);
    expect(() => validateTsaChain([good.chain[0]!], good.publicKey, systemClock)).toThrow(
      /at least its root/,
    );
  });
});

function ecKey() {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
}

/** A minimal SNTP server (RFC 4330 server side) whose clock runs `offsetMs` ahead of ours. */
async function startSntp(offsetMs: () => number): Promise<{ address: string; socket: Socket }> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 48) return;
    const out = Buffer.alloc(48);
    out[0] = (0 << 6) | (4 << 3) | 4; // LI 0, VN 4, mode 4 (server)
    out[1] = 1; // stratum 1
    msg.copy(out, 24, 40, 48); // origin = the client's transmit time
    const now = Date.now() + offsetMs();
    const write = (at: number) => {
      out.writeUInt32BE(Math.floor(now / 1000) + 2_208_988_800, at);
      out.writeUInt32BE(Math.floor(((now % 1000) / 1000) * 2 ** 32), at + 4);
    };
    write(32);
    write(40);
    socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return { address: `127.0.0.1:${(socket.address() as AddressInfo).port}`, socket };
}

describe('clock discipline against an SNTP server on loopback', () => {
  test('within the bound: timestamps, ready, offset metric near 0', async () => {
    const sntp = await startSntp(() => 0);
    const t = await startTestTsa({ config: { ntpServer: sntp.address, maxClockOffsetMs: 500 } });
    try {
      expect(
        (
          await post(
            json({ artifactHash: digest32.toString('base64'), hashAlgorithm: 'sha256' }),
            'application/json',
            t.url,
          )
        ).status,
      ).toBe(201);
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
      const offset = (await t.app.metrics.clockOffset.get()).values[0]!.value;
      expect(Math.abs(offset)).toBeLessThan(0.5);
    } finally {
      await t.close();
      sntp.socket.close();
    }
  });

  test('past the bound: 503, not ready, the offset published; back in bound: serving again', async () => {
    let offset = 5000;
    const sntp = await startSntp(() => offset);
    const t = await startTestTsa({
      config: { ntpServer: sntp.address, maxClockOffsetMs: 1000, ntpIntervalMs: 1000 },
    });
    try {
      const res = await post(
        json({ artifactHash: digest32.toString('base64'), hashAlgorithm: 'sha256' }),
        'application/json',
        t.url,
      );
      expect(res.status).toBe(503);
      expect(JSON.parse(res.text)).toEqual({
        code: 503,
        message: 'the timestamp authority clock is not synchronised',
      });
      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({
        status: 'NOT_SERVING',
        failing: ['clock_offset_too_large'],
      });
      expect((await t.app.metrics.clockOffset.get()).values[0]!.value).toBeGreaterThan(4);
      expect(t.audit).toHaveLength(0);
      offset = 0;
      await until(async () => (await fetch(`${t.url}/readyz`)).status === 200, 'ready again');
      expect(
        (
          await post(
            json({ artifactHash: digest32.toString('base64'), hashAlgorithm: 'sha256' }),
            'application/json',
            t.url,
          )
        ).status,
      ).toBe(201);
    } finally {
      await t.close();
      sntp.socket.close();
    }
  });

  test('no answer from the time source: the offset is unknown and the TSA refuses', async () => {
    const silent = createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    const t = await startTestTsa({
      config: {
        ntpServer: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
        ntpTimeoutMs: 100,
      },
    });
    try {
      const res = await post(
        json({ artifactHash: digest32.toString('base64'), hashAlgorithm: 'sha256' }),
        'application/json',
        t.url,
      );
      expect(res.status).toBe(503);
      expect((await t.app.metrics.clockSamples.get()).values).toEqual([
        expect.objectContaining({ labels: { result: 'error' }, value: 1 }),
      ]);
    } finally {
      await t.close();
      silent.close();
    }
  });
});

test('the per-address rate limit refuses with 429 past the burst, through the shared limiter', async () => {
  const t = await startTestTsa({ config: { rateLimitPerSecond: 1, rateLimitBurst: 3 } });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push(
        (
          await post(
            json({ artifactHash: digest32.toString('base64'), hashAlgorithm: 'sha256' }),
            'application/json',
            t.url,
          )
        ).status,
      );
    }
    expect(statuses.slice(0, 3)).toEqual([201, 201, 201]);
    expect(statuses.slice(3)).toEqual([429, 429]);
    expect((await t.app.metrics.rateLimited.get()).values[0]!.value).toBe(2);
  } finally {
    await t.close();
  }
});
