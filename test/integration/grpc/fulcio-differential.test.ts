import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pkijs from 'pkijs';
import { writeFileCa } from '../../helpers/ca-files';
import { buildGo } from '../../helpers/go-refs';
import { startTestGrpc, type TestGrpc } from '../../helpers/grpc';
import { makeCsr, makeKey, proofFor, toPem, weakKeys, type TestKey } from '../../helpers/keys';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { startFulcio, type RunningFulcio } from '../../helpers/fulcio';

/**
 * The differential run: Fulcio's own server (built from Debian's source package by
 * scripts/go-refs.sh) and mayfly, on loopback, with the same file CA and an identity config
 * trusting the same local OIDC issuer, get the same gRPC requests from the same client
 * (Fulcio's generated Go client, test/go/fulcio-grpc-client). The status codes and messages
 * must be equal, and so must the certificates apart from what is random or time-bound
 * (serial, validity instants, signature): issuer, subject, every extension in order with its
 * criticality and value, the chain. The known differences are asserted as differences.
 */

interface GoResult {
  code: string;
  message?: string;
  certificates?: string[];
  kind?: string;
  sct?: string;
  chains?: string[][];
  issuers?: Record<string, unknown>[];
  status?: string;
  services?: string[];
}

const EMAIL = 'diff@example.com';
let mayfly: TestCa;
let grpc: TestGrpc;
let fulcio: RunningFulcio;
let client: string;

function run(address: string, ops: object[]): Promise<GoResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(client, ['-addr', address], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as GoResult[])
        : reject(new Error(`fulcio-grpc-client exited ${code}: ${err}`)),
    );
    child.stdin.end(JSON.stringify(ops));
  });
}

/** A CSR made by the openssl CLI for the key; `corrupt` flips the signature's last byte. */
function opensslCsr(key: TestKey, corrupt = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-csr-'));
  const keyFile = join(dir, 'key.pem');
  writeFileSync(keyFile, key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const der = execFileSync('openssl', [
    'req',
    '-new',
    '-key',
    keyFile,
    '-subj',
    '/CN=ignored',
    '-sha256',
    '-outform',
    'DER',
  ]);
  if (corrupt) der[der.length - 1] = der[der.length - 1]! ^ 0xff;
  return toPem('CERTIFICATE REQUEST', der);
}

/** Both servers' answers to the same operations. */
async function both(ops: object[]): Promise<{ fulcio: GoResult[]; mayfly: GoResult[] }> {
  const [f, m] = await Promise.all([run(fulcio.grpcAddress, ops), run(grpc.address, ops)]);
  return { fulcio: f, mayfly: m };
}

beforeAll(async () => {
  client = buildGo('test/go/fulcio-grpc-client');
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-fulcio-diff-'));
  const ca = await writeFileCa(dir, 'fulcio-diff-password');
  mayfly = await startTestCa({
    env: {
      ...ca.env,
    },
  });
  grpc = await startTestGrpc(mayfly);
  // Fulcio, trusting the same issuer (as email).
  fulcio = await startFulcio({
    work: dir,
    chainFile: ca.chainFile,
    keyFile: ca.keyFile,
    keyPassword: ca.password,
    issuerUrl: mayfly.issuer.url,
    tag: 'diff',
    ready: async (f) => (await run(f.grpcAddress, [{ op: 'trustBundle' }]))[0]?.code === 'OK',
  });
}, 900_000);

afterAll(async () => {
  fulcio?.stop();
  grpc?.close();
  await mayfly?.close();
});

describe('the same requests get the same status codes and messages', () => {
  const key = makeKey('p256');
  const other = makeKey('p256');
  const p384 = makeKey('p384');
  const b64 = (x: Buffer | string) => Buffer.from(x).toString('base64');

  test('every row of the error table, and the successes', async () => {
    const token = await mayfly.issuer.mintEmail(EMAIL);
    const proof = b64(proofFor(key, EMAIL));
    const rows: [string, object][] = [
      ['body token', { op: 'sign', token, publicKeyPem: key.pem, proof }],
      ['metadata token', { op: 'sign', metadataToken: token, publicKeyPem: key.pem, proof }],
      ['CSR', { op: 'sign', token, csr: b64(opensslCsr(key)) }],
      ['no token', { op: 'sign', publicKeyPem: key.pem, proof }],
      ['two-part token', { op: 'sign', token: 'a.b', publicKeyPem: key.pem, proof }],
      [
        'expired token',
        {
          op: 'sign',
          token: await mayfly.issuer.mintEmail(EMAIL, { expiresIn: -1 }),
          publicKeyPem: key.pem,
          proof,
        },
      ],
      [
        'wrong audience',
        {
          op: 'sign',
          token: await mayfly.issuer.mintEmail(EMAIL, { audience: 'other' }),
          publicKeyPem: key.pem,
          proof,
        },
      ],
      [
        'unconfigured issuer',
        {
          op: 'sign',
          token: await mayfly.issuer.mintEmail(EMAIL, { issuer: 'https://x.invalid' }),
          publicKeyPem: key.pem,
          proof,
        },
      ],
      [
        'unverified email',
        {
          op: 'sign',
          token: await mayfly.issuer.mint({ sub: EMAIL, email: EMAIL, email_verified: false }),
          publicKeyPem: key.pem,
          proof,
        },
      ],
      ['CSR not PEM', { op: 'sign', token, csr: b64('invalid') }],
      ['CSR of the wrong PEM type', { op: 'sign', token, csr: b64(key.pem) }],
      ['CSR for RSA-1024', { op: 'sign', token, csr: b64(opensslCsr(weakKeys.rsa1024())) }],
      ['CSR with a bad signature', { op: 'sign', token, csr: b64(opensslCsr(key, true)) }],
      ['empty CSR field', { op: 'sign', token, csr: '' }],
      [
        'CSR without its (mandatory, empty) attributes field',
        { op: 'sign', token, csr: b64(makeCsr(key, { withoutAttributes: true })) },
      ],
      [
        'SPKI with trailing bytes',
        {
          op: 'sign',
          token,
          publicKeyPem: toPem(
            'PUBLIC KEY',
            Buffer.concat([
              key.publicKey.export({ type: 'spki', format: 'der' }),
              Buffer.from([0]),
            ]),
          ),
          proof,
        },
      ],
      ['no key', { op: 'sign', token, noKey: true }],
      ['empty public key', { op: 'sign', token, publicKeyPem: '', proof }],
      [
        'unparsable key',
        {
          op: 'sign',
          token,
          publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
          proof,
        },
      ],
      ['RSA-1024 key', { op: 'sign', token, publicKeyPem: weakKeys.rsa1024().pem, proof }],
      ['P-224 key', { op: 'sign', token, publicKeyPem: weakKeys.p224().pem, proof }],
      [
        'proof by another key',
        { op: 'sign', token, publicKeyPem: key.pem, proof: b64(proofFor(other, EMAIL)) },
      ],
      [
        'proof over another name',
        { op: 'sign', token, publicKeyPem: key.pem, proof: b64(proofFor(key, 'm@example.com')) },
      ],
      [
        'P-384 key with a SHA-256 proof',
        {
          op: 'sign',
          token,
          publicKeyPem: p384.pem,
          proof: b64(proofFor(p384, EMAIL, 'sha256')),
        },
      ],
      [
        'P-384 key with its SHA-384 proof',
        { op: 'sign', token, publicKeyPem: p384.pem, proof: b64(proofFor(p384, EMAIL)) },
      ],
    ];
    const answers = await both(rows.map(([, op]) => op));
    const view = (r: GoResult) => [r.code, r.code === 'OK' ? r.kind : r.message];
    const fulcioView = rows.map(([name], i) => [name, ...view(answers.fulcio[i]!)]);
    const mayflyView = rows.map(([name], i) => [name, ...view(answers.mayfly[i]!)]);
    expect(mayflyView).toEqual(fulcioView);
    // The rows did reach both servers' checks (not a transport failure on both sides).
    expect(fulcioView.filter(([, code]) => code === 'OK')).toHaveLength(4);
    expect(fulcioView.filter(([, code]) => code === 'InvalidArgument')).toHaveLength(
      rows.length - 4,
    );
  });
});

/** Extensions in order: OID, criticality, DER value (hex). */
function extensions(pem: string): [string, boolean, string][] {
  const der = new X509Certificate(pem).raw;
  const cert = pkijs.Certificate.fromBER(der);
  return (cert.extensions ?? []).map((e) => [
    e.extnID,
    e.critical,
    Buffer.from(e.extnValue.getValue()).toString('hex'),
  ]);
}

describe('the certificates have the same profile', () => {
  test('issuer, subject, extensions (order, criticality, values), lifetime, chain', async () => {
    const key = makeKey('p256');
    const token = await mayfly.issuer.mintEmail(EMAIL);
    const op = {
      op: 'sign',
      token,
      publicKeyPem: key.pem,
      proof: proofFor(key, EMAIL).toString('base64'),
    };
    const answers = await both([op]);
    const f = answers.fulcio[0]!;
    const m = answers.mayfly[0]!;
    expect([f.code, m.code]).toEqual(['OK', 'OK']);
    expect([f.kind, m.kind]).toEqual(['detached', 'detached']);
    expect([f.sct ?? '', m.sct ?? '']).toEqual(['', '']);
    // The same CA files: the same chain, PEM for PEM (trimmed, no trailing newline).
    expect(m.certificates!.slice(1)).toEqual(f.certificates!.slice(1));
    expect(m.certificates!.length).toBe(f.certificates!.length);
    const [fl, ml] = [
      new X509Certificate(f.certificates![0]!),
      new X509Certificate(m.certificates![0]!),
    ];
    expect(ml.subject).toBe(fl.subject);
    expect(ml.issuer).toBe(fl.issuer);
    expect(ml.subjectAltName).toBe(fl.subjectAltName);
    expect(ml.publicKey.export({ type: 'spki', format: 'der' })).toEqual(
      fl.publicKey.export({ type: 'spki', format: 'der' }),
    );
    const lifetime = (c: X509Certificate) => Date.parse(c.validTo) - Date.parse(c.validFrom);
    expect(lifetime(ml)).toBe(lifetime(fl));
    expect(extensions(m.certificates![0]!)).toEqual(extensions(f.certificates![0]!));
    // Serials: random, positive, at most 20 octets, on both.
    for (const c of [fl, ml]) expect(c.serialNumber.length).toBeLessThanOrEqual(40);
    for (const c of [fl, ml])
      expect(c.verify(new X509Certificate(f.certificates![1]!).publicKey)).toBe(true);
  });

  test('GetTrustBundle and GetConfiguration answer the same', async () => {
    const answers = await both([{ op: 'trustBundle' }, { op: 'configuration' }]);
    expect(answers.mayfly[0]).toEqual(answers.fulcio[0]);
    expect(answers.mayfly[1]).toEqual(answers.fulcio[1]);
  });
});

describe('the known differences', () => {
  test('health: Fulcio answers SERVING for any name; mayfly knows its services', async () => {
    const ops = [
      { op: 'health', service: '' },
      { op: 'health', service: 'dev.sigstore.fulcio.v2.CA' },
      { op: 'health', service: 'no.such.Service' },
    ];
    const answers = await both(ops);
    expect(answers.fulcio.map((r) => r.status)).toEqual(['SERVING', 'SERVING', 'SERVING']);
    expect(answers.mayfly.map((r) => r.status ?? r.code)).toEqual([
      'SERVING',
      'SERVING',
      'NotFound',
    ]);
  });

  test('reflection: Fulcio has none; mayfly lists its services', async () => {
    const answers = await both([{ op: 'services' }]);
    expect(answers.fulcio[0]!.code).toBe('Unimplemented');
    expect(answers.mayfly[0]!.services).toEqual([
      'dev.sigstore.fulcio.v2.CA',
      'grpc.health.v1.Health',
    ]);
  });

  test('message size: Fulcio reads 4 MiB; mayfly refuses what its HTTP API would (64 KiB)', async () => {
    const token = await mayfly.issuer.mintEmail(EMAIL);
    const big = { op: 'sign', token, csr: Buffer.alloc(70 * 1024, 0x41).toString('base64') };
    const answers = await both([big]);
    expect(answers.fulcio[0]!.code).toBe('InvalidArgument');
    expect(answers.mayfly[0]!.code).toBe('ResourceExhausted');
  });
});
