/**
 * mayfly's TSA against Sigstore's own timestamp-authority, built from Debian's Go sources by
 * scripts/go-refs.sh (never skipped: CI builds it before jest runs):
 *
 * - the reference `timestamp-cli` gets timestamps from mayfly and `timestamp-cli verify`
 *   accepts them (and refuses them for another artifact or another root);
 * - a differential test sends the same requests, good and bad, to mayfly and to the reference
 *   `timestamp-server` (same key and chain, `--use-http-201`) and compares the status, the
 *   media type, the error bodies and the structure of the tokens.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { systemClock } from '../../../services/common/clock';
import { certificatePem } from '../../../services/common/encoding';
import { KeySigner } from '../../../services/common/signer/signer';
import { createEphemeralTsaChain } from '../../../services/tsa/certificates';
import { goTool } from '../../helpers/go-refs';
import { startTestTsa, type TestTsa } from '../../helpers/mayfly-tsa';
import { freePort } from '../../helpers/redis';
import { until } from '../../helpers/wait';

jest.setTimeout(120_000);

let dir: string;
let mayfly: TestTsa;
let reference: { url: string; child: ChildProcess; output: () => string };
let cli: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-tsa-ref-'));
  cli = goTool('timestamp-cli');
  const server = goTool('timestamp-server');
  // One key and chain for both servers, so their tokens differ only in what each server does.
  const leafKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const signer = await createEphemeralTsaChain(
    new KeySigner(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey),
    new KeySigner(leafKey),
    systemClock,
  );
  writeFileSync(join(dir, 'key.pem'), leafKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'chain.pem'), signer.chain.map((d) => certificatePem(d)).join(''));
  writeFileSync(join(dir, 'leaf.pem'), certificatePem(signer.chain[0]!));
  writeFileSync(join(dir, 'root.pem'), certificatePem(signer.chain[1]!));
  mayfly = await startTestTsa({
    config: { signer: 'file', cert: join(dir, 'chain.pem'), key: join(dir, 'key.pem') },
  });
  const [port, metrics] = [await freePort(), await freePort()];
  const child = spawn(
    server,
    [
      'serve',
      '--host=127.0.0.1',
      `--port=${port}`,
      '--timestamp-signer=file',
      `--file-signer-key-path=${join(dir, 'key.pem')}`,
      `--certificate-chain-path=${join(dir, 'chain.pem')}`,
      '--disable-ntp-monitoring', // it would query public NTP servers
      '--use-http-201', // the status Sigstore's clients were written against (mayfly's)
    ],
    { cwd: dir, env: { ...process.env, MAYFLY_TSA_METRICS_ADDR: `127.0.0.1:${metrics}` } },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  reference = { url: `http://127.0.0.1:${port}`, child, output: () => output };
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`timestamp-server exited:\n${output}`);
    try {
      return (await fetch(`${reference.url}/api/v1/timestamp/certchain`)).status === 200;
    } catch {
      return false;
    }
  }, 'the reference timestamp-server');
});

afterAll(async () => {
  if (reference?.child.exitCode === null) {
    const exited = new Promise((r) => reference.child.once('exit', r));
    reference.child.kill('SIGTERM');
    const timer = setTimeout(() => reference.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  await mayfly?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs timestamp-cli without blocking the event loop (mayfly serves from this process). */
function runCli(args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(cli, args, { cwd: dir, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({
        status: err ? (typeof code === 'number' ? code : null) : 0,
        out: `${stdout}${stderr}`,
      });
    });
  });
}

describe('the reference timestamp-cli', () => {
  test.each(['sha256', 'sha384', 'sha512'])(
    'timestamps with mayfly (%s) and verifies the token',
    async (hash) => {
      writeFileSync(join(dir, 'artifact.txt'), randomBytes(64).toString('hex'));
      writeFileSync(join(dir, 'other.txt'), 'another artifact');
      const got = await runCli([
        `--timestamp_server=${mayfly.url}`,
        'timestamp',
        '--artifact=artifact.txt',
        `--hash=${hash}`,
        '--certificate=true',
        `--out=${hash}.tsr`,
      ]);
      expect(got).toMatchObject({ status: 0 });
      const verify = (artifact: string, root = 'root.pem') =>
        runCli([
          'verify',
          `--timestamp=${hash}.tsr`,
          `--artifact=${artifact}`,
          `--certificate-chain=${root}`,
          '--certificate=leaf.pem',
          '--common-name=mayfly TSA (ephemeral)',
        ]);
      const ok = await verify('artifact.txt');
      if (ok.status !== 0)
        throw new Error(`timestamp-cli verify refused mayfly's token:\n${ok.out}`);
      expect(ok.out).toMatch(/Successfully verified timestamp/);
      expect((await verify('other.txt')).status).not.toBe(0);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Differential: the same requests to both servers
// ---------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  type: string;
  body: Buffer;
}

async function send(base: string, body: Uint8Array | string, type?: string): Promise<Answer> {
  const res = await fetch(`${base}/api/v1/timestamp`, {
    method: 'POST',
    headers: type === undefined ? {} : { 'Content-Type': type },
    body,
  });
  return {
    status: res.status,
    type: (res.headers.get('content-type') ?? '').split(';')[0]!,
    body: Buffer.from(await res.arrayBuffer()),
  };
}

function oidOf(a: pkijs.AlgorithmIdentifier): string {
  return a.algorithmId;
}

/** What a client can see of a token, minus what must differ (times, serials, signatures). */
function structure(der: Buffer): unknown {
  const resp = pkijs.TimeStampResp.fromBER(der);
  const signed = new pkijs.SignedData({ schema: resp.timeStampToken!.content });
  const tst = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent!.getValue());
  const si = signed.signerInfos[0]!;
  const genTime = Buffer.from(signed.encapContentInfo.eContent!.getValue());
  return {
    status: resp.status.status,
    statusStrings: resp.status.statusStrings?.length ?? 0,
    contentType: resp.timeStampToken!.contentType,
    signedDataVersion: signed.version,
    digestAlgorithms: signed.digestAlgorithms.map(oidOf),
    eContentType: signed.encapContentInfo.eContentType,
    certificates: (signed.certificates ?? []).length,
    crls: (signed.crls ?? []).length,
    signerInfos: signed.signerInfos.length,
    signerInfo: {
      version: si.version,
      sid:
        si.sid instanceof pkijs.IssuerAndSerialNumber
          ? 'issuerAndSerialNumber'
          : 'subjectKeyIdentifier',
      digestAlgorithm: oidOf(si.digestAlgorithm),
      signatureAlgorithm: oidOf(si.signatureAlgorithm),
      signedAttrs: (si.signedAttrs?.attributes ?? []).map((a) => a.type).sort(),
      unsignedAttrs: (si.unsignedAttrs?.attributes ?? []).map((a) => a.type).sort(),
    },
    tstInfo: {
      version: tst.version,
      policy: tst.policy,
      imprintAlgorithm: oidOf(tst.messageImprint.hashAlgorithm),
      imprint: Buffer.from(tst.messageImprint.hashedMessage.valueBlock.valueHexView).toString(
        'hex',
      ),
      serialPositive: tst.serialNumber.toBigInt() > 0n,
      serialBits: tst.serialNumber.toBigInt().toString(2).length <= 160,
      accuracy: tst.accuracy
        ? {
            seconds: tst.accuracy.seconds,
            millis: tst.accuracy.millis,
            micros: tst.accuracy.micros,
          }
        : undefined,
      ordering: tst.ordering ?? false,
      nonce: tst.nonce?.toBigInt().toString(),
      tsa: tst.tsa !== undefined,
      extensions: (tst.extensions ?? []).length,
      // Whole seconds, no fraction: the GeneralizedTime is 15 characters.
      genTimeWholeSeconds: /^\d{14}Z$/.test(
        genTime.subarray(genTime.indexOf(Buffer.from([0x18, 0x0f])) + 2).toString('latin1', 0, 15),
      ),
    },
  };
}

function derRequest(options: {
  oid: string;
  digest: Uint8Array;
  nonce?: bigint;
  certReq?: boolean;
  policy?: string;
}): Buffer {
  const req = new pkijs.TimeStampReq({
    version: 1,
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: options.oid,
        algorithmParams: new asn1js.Null(),
      }),
      hashedMessage: new asn1js.OctetString({ valueHex: options.digest }),
    }),
    ...(options.nonce === undefined ? {} : { nonce: asn1js.Integer.fromBigInt(options.nonce) }),
    ...(options.certReq === undefined ? {} : { certReq: options.certReq }),
    ...(options.policy ? { reqPolicy: options.policy } : {}),
  });
  return Buffer.from(req.toSchema().toBER(false));
}

const OIDS = {
  sha1: '1.3.14.3.2.26',
  md5: '1.2.840.113549.2.5',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};
const d = (hash: string) => createHash(hash).update('differential').digest();
const QUERY = 'application/timestamp-query';

const CASES: [string, Uint8Array | string, string | undefined][] = [
  [
    'DER sha256, nonce, certReq',
    derRequest({ oid: OIDS.sha256, digest: d('sha256'), nonce: 2n ** 159n + 3n, certReq: true }),
    QUERY,
  ],
  [
    'DER sha384, no nonce, no certReq',
    derRequest({ oid: OIDS.sha384, digest: d('sha384') }),
    QUERY,
  ],
  [
    'DER sha512, nonce, certReq false',
    derRequest({ oid: OIDS.sha512, digest: d('sha512'), nonce: 1n, certReq: false }),
    QUERY,
  ],
  [
    'DER with the Sigstore policy',
    derRequest({ oid: OIDS.sha256, digest: d('sha256'), policy: '1.3.6.1.4.1.57264.2' }),
    QUERY,
  ],
  [
    'DER with another policy',
    derRequest({ oid: OIDS.sha256, digest: d('sha256'), policy: '1.2.3.4' }),
    QUERY,
  ],
  ['DER SHA-1', derRequest({ oid: OIDS.sha1, digest: d('sha1') }), QUERY],
  ['DER MD5', derRequest({ oid: OIDS.md5, digest: d('md5') }), QUERY],
  ['DER unknown OID', derRequest({ oid: '1.2.3.4.5.6', digest: d('sha256') }), QUERY],
  [
    'DER digest too short',
    derRequest({ oid: OIDS.sha256, digest: d('sha256').subarray(1) }),
    QUERY,
  ],
  ['garbage', Buffer.from('garbage, not DER'), QUERY],
  ['wrong content type', derRequest({ oid: OIDS.sha256, digest: d('sha256') }), 'text/plain'],
  ['empty body', '', QUERY],
  [
    'JSON sha256, big nonce, certificates',
    `{"artifactHash":"${d('sha256').toString('base64')}","hashAlgorithm":"sha256","nonce":${2n ** 70n + 5n},"certificates":true}`,
    'application/json',
  ],
  [
    'JSON SHA512 upper case, no nonce',
    `{"artifactHash":"${d('sha512').toString('base64')}","hashAlgorithm":"SHA512"}`,
    'application/json',
  ],
  [
    'JSON sha1',
    `{"artifactHash":"${d('sha1').toString('base64')}","hashAlgorithm":"sha1"}`,
    'application/json',
  ],
  [
    'JSON md5',
    `{"artifactHash":"${d('md5').toString('base64')}","hashAlgorithm":"md5"}`,
    'application/json',
  ],
  ['JSON garbage', '{"artifactHash": nope}', 'application/json'],
  ['JSON bad base64', '{"artifactHash":"%%%","hashAlgorithm":"sha256"}', 'application/json'],
  [
    'JSON over 1 KiB',
    `{"artifactHash":"${d('sha256').toString('base64')}","hashAlgorithm":"sha256","nonce":${'7'.repeat(1100)}}`,
    'application/json',
  ],
];

describe('mayfly and the reference timestamp-server answer the same requests alike', () => {
  test.each(CASES)('%s', async (_name, body, type) => {
    const [ours, theirs] = [
      await send(mayfly.url, body, type),
      await send(reference.url, body, type),
    ];
    expect({ status: ours.status, type: ours.type }).toEqual({
      status: theirs.status,
      type: theirs.type,
    });
    if (theirs.status < 300) {
      expect(structure(ours.body)).toEqual(structure(theirs.body));
    } else {
      // The reference lists the media types it consumes from a Go map (go-openapi's route
      // consumers), so their order changes from one run of it to the next: compare the list
      // as a set.
      const asSet = (b: Buffer) =>
        b
          .toString()
          .replace(
            /only \[([^\]]*)\]/,
            (_m, list: string) => `only [${list.split(' ').sort().join(' ')}]`,
          );
      expect(JSON.parse(asSet(ours.body))).toEqual(JSON.parse(asSet(theirs.body)));
      expect(asSet(ours.body)).toBe(asSet(theirs.body));
    }
  });

  test('the certificate chain endpoint serves the same PEM', async () => {
    const [ours, theirs] = await Promise.all(
      [mayfly.url, reference.url].map((u) => fetch(`${u}/api/v1/timestamp/certchain`)),
    );
    expect(ours!.headers.get('content-type')).toBe(theirs!.headers.get('content-type'));
    expect(await ours!.text()).toBe(await theirs!.text());
  });

  test("the reference server's own token verifies with the same timestamp-cli (harness check)", async () => {
    writeFileSync(join(dir, 'ref-artifact.txt'), 'reference');
    const got = await runCli([
      `--timestamp_server=${reference.url}`,
      'timestamp',
      '--artifact=ref-artifact.txt',
      '--hash=sha256',
      '--out=ref.tsr',
    ]);
    expect(got.status).toBe(0);
    const ok = await runCli([
      'verify',
      '--timestamp=ref.tsr',
      '--artifact=ref-artifact.txt',
      '--certificate-chain=root.pem',
      '--certificate=leaf.pem',
    ]);
    expect(ok).toMatchObject({ status: 0 });
    expect(readFileSync(join(dir, 'ref.tsr')).length).toBeGreaterThan(0);
  });
});
