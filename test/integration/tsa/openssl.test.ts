/**
 * mayfly's TSA checked by an implementation we did not write: `openssl ts` makes the
 * queries (DER) and verifies every response shape (each hash, with and without nonce and
 * certReq, the JSON form) with -CAfile (the root) and -untrusted (the TSA certificate), and
 * prints the TSTInfo so its fields can be compared with what was asked.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pkijs from 'pkijs';
import { startTestTsa, type TestTsa } from '../../helpers/mayfly-tsa';

let tsa: TestTsa;
let dir: string;
let rootPem: string;
let leafPem: string;
const data = Buffer.from('timestamp me, openssl\n');
let dataPath: string;

function openssl(args: string[]): { status: number | null; out: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8', cwd: dir });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

async function post(
  body: Buffer,
  type: string,
): Promise<{ status: number; type: string; body: Buffer }> {
  const res = await fetch(`${tsa.url}/api/v1/timestamp`, {
    method: 'POST',
    headers: { 'Content-Type': type },
    body,
  });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: Buffer.from(await res.arrayBuffer()),
  };
}

function verify(reply: string, how: string[]): void {
  const run = openssl([
    'ts',
    '-verify',
    '-in',
    reply,
    ...how,
    '-CAfile',
    rootPem,
    '-untrusted',
    leafPem,
  ]);
  if (run.status !== 0 || !/Verification: OK/.test(run.out)) {
    throw new Error(`openssl ts -verify failed:\n${run.out}`);
  }
}

function replyText(reply: string): string {
  const run = openssl(['ts', '-reply', '-in', reply, '-text']);
  expect(run.status).toBe(0);
  return run.out;
}

beforeAll(async () => {
  tsa = await startTestTsa();
  dir = mkdtempSync(join(tmpdir(), 'mayfly-tsa-openssl-'));
  rootPem = join(dir, 'root.pem');
  leafPem = join(dir, 'tsa.pem');
  writeFileSync(rootPem, tsa.certChainPem.at(-1)!);
  writeFileSync(leafPem, tsa.certChainPem[0]!);
  dataPath = join(dir, 'data.txt');
  writeFileSync(dataPath, data);
});

afterAll(async () => {
  await tsa?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.each([
  ['sha256', []],
  ['sha384', []],
  ['sha512', []],
  ['sha256', ['-cert']],
  ['sha256', ['-no_nonce']],
  ['sha512', ['-cert', '-no_nonce']],
  ['sha256', ['-tspolicy', '1.3.6.1.4.1.57264.2']],
] as const)('openssl ts -query -%s %j', (hash, flags) => {
  const name = `${hash}${flags.join('')}`;
  let reply: string;
  let query: string;

  beforeAll(async () => {
    query = join(dir, `${name}.tsq`);
    reply = join(dir, `${name}.tsr`);
    const q = openssl(['ts', '-query', '-data', dataPath, `-${hash}`, ...flags, '-out', query]);
    expect(q.status).toBe(0);
    const res = await post(readFileSync(query), 'application/timestamp-query');
    expect(res.status).toBe(201);
    expect(res.type).toBe('application/timestamp-reply');
    writeFileSync(reply, res.body);
  });

  test('verifies against the query (imprint, nonce, policy) and the data', () => {
    verify(reply, ['-queryfile', query]);
    verify(reply, ['-data', dataPath]);
  });

  test('TSTInfo: granted, policy, whole-second time, accuracy 1 s, nonce and certs as asked', () => {
    const text = replyText(reply);
    expect(text).toMatch(/Status: Granted\./);
    expect(text).toMatch(/Policy OID: 1\.3\.6\.1\.4\.1\.57264\.2/);
    expect(text).toMatch(/Time stamp: \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT/);
    expect(text).toMatch(/Accuracy: 0x01 seconds, unspecified millis, unspecified micros/);
    expect(text).toMatch(/Ordering: no/);
    if (flags.includes('-no_nonce' as never)) expect(text).toMatch(/Nonce: unspecified/);
    else expect(text).toMatch(/Nonce: 0x[0-9A-F]+/);
    const token = pkijs.TimeStampResp.fromBER(readFileSync(reply));
    const signed = new pkijs.SignedData({ schema: token.timeStampToken!.content });
    expect(signed.certificates?.length ?? 0).toBe(flags.includes('-cert' as never) ? 1 : 0);
    const tst = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent!.getValue());
    expect(Buffer.from(tst.messageImprint.hashedMessage.valueBlock.valueHexView)).toEqual(
      createHash(hash).update(data).digest(),
    );
    // sigstore-js reads GeneralizedTime with no fraction or exactly three digits: none here.
    const tstDer = Buffer.from(signed.encapContentInfo.eContent!.getValue());
    const at = tstDer.indexOf(Buffer.from([0x18, 0x0f]));
    expect(at).toBeGreaterThan(0);
    expect(tstDer.subarray(at + 2, at + 17).toString('latin1')).toMatch(/^\d{14}Z$/);
  });
});

test('the JSON form (what sigstore-js sends) verifies too, with a nonce above 2^64 echoed exactly', async () => {
  const nonce = 2n ** 100n + 12345n;
  const digest = createHash('sha384').update(data).digest('base64');
  const res = await post(
    Buffer.from(
      `{"artifactHash":"${digest}","hashAlgorithm":"SHA384","nonce":${nonce},"certificates":true}`,
    ),
    'application/json',
  );
  expect(res.status).toBe(201);
  expect(res.type).toBe('application/timestamp-reply');
  const reply = join(dir, 'json.tsr');
  writeFileSync(reply, res.body);
  verify(reply, ['-data', dataPath]);
  expect(replyText(reply)).toContain(`Nonce: 0x${nonce.toString(16).toUpperCase()}`);
  // DER, not BER: the TSTInfo sits in a primitive OCTET STRING (pkijs would chunk it into a
  // constructed one, which sigstore-js misreads).
  const signed = new pkijs.SignedData({
    schema: pkijs.TimeStampResp.fromBER(res.body).timeStampToken!.content,
  });
  const tst = Buffer.from(signed.encapContentInfo.eContent!.getValue());
  const at = res.body.indexOf(tst);
  expect(at).toBeGreaterThan(2);
  const header =
    tst.length < 0x80
      ? [0x04, tst.length]
      : tst.length < 0x100
        ? [0x04, 0x81, tst.length]
        : [0x04, 0x82, tst.length >> 8, tst.length & 0xff];
  expect(res.body.subarray(at - header.length, at)).toEqual(Buffer.from(header));
});

test('every token has its own positive serial of at most 160 bits, and one audit line', async () => {
  const digest = createHash('sha256').update(randomBytes(8)).digest('base64');
  const serials = new Set<string>();
  const before = tsa.audit.length;
  for (let i = 0; i < 20; i++) {
    const res = await post(
      Buffer.from(JSON.stringify({ artifactHash: digest, hashAlgorithm: 'sha256' })),
      'application/json',
    );
    expect(res.status).toBe(201);
    const signed = new pkijs.SignedData({
      schema: pkijs.TimeStampResp.fromBER(res.body).timeStampToken!.content,
    });
    const tst = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent!.getValue());
    const serial = tst.serialNumber.toBigInt();
    expect(serial > 0n).toBe(true);
    expect(serial < 2n ** 160n).toBe(true);
    serials.add(serial.toString(16));
    const line = tsa.audit[before + i]!;
    expect(
      Object.keys(line)
        .filter((k) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(k))
        .sort(),
    ).toEqual(['digest', 'genTime', 'hashAlgorithm', 'serial']);
    expect(line.serial).toBe(serial.toString(16));
    expect(line.digest).toBe(Buffer.from(digest, 'base64').toString('hex'));
  }
  expect(serials.size).toBe(20);
});
