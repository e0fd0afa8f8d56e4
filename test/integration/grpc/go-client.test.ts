import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import request from 'supertest';
import { buildGo } from '../../helpers/go-refs';
import { startTestGrpc, type TestGrpc } from '../../helpers/grpc';
import { makeCsr, makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';

/**
 * mayfly's gRPC API as grpc-go and Fulcio's own generated Go client see it
 * (test/go/fulcio-grpc-client, built from Debian's Go sources by scripts/go-refs.sh): the
 * service mayfly describes over reflection is compared, field by field, with the descriptor
 * compiled into Fulcio's generated code; grpc-go's health client checks the health service;
 * and Fulcio's client signs, reads the trust bundle and the configuration.
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
  mismatches?: string[] | null;
  checked?: number;
}

let ca: TestCa;
let grpc: TestGrpc;
let client: string;
const EMAIL = 'go@example.com';
const key = makeKey('p256');

/** Runs the Go client (asynchronously: the server under test lives in this process). */
function run(ops: object[], address = grpc.address): Promise<GoResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(client, ['-addr', address], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`fulcio-grpc-client exited with ${code}: ${err}`));
      else resolve(JSON.parse(out) as GoResult[]);
    });
    child.stdin.end(JSON.stringify(ops));
  });
}

const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64');

beforeAll(async () => {
  client = buildGo('test/go/fulcio-grpc-client');
  ca = await startTestCa();
  grpc = await startTestGrpc(ca);
}, 600_000);
afterAll(async () => {
  grpc?.close();
  await ca?.close();
});

test('the served fulcio.proto matches Fulcio’s generated descriptor field by field', async () => {
  const [result] = await run([{ op: 'descriptor' }]);
  expect(result!.code).toBe('OK');
  expect(result!.mismatches ?? []).toEqual([]);
  // Every field, enum value and method of Fulcio's v2 API was compared.
  expect(result!.checked).toBeGreaterThanOrEqual(25);
});

test('reflection lists the services (Fulcio serves no reflection at all)', async () => {
  const [result] = await run([{ op: 'services' }]);
  // @grpc/reflection does not list itself.
  expect(result!.services).toEqual(['dev.sigstore.fulcio.v2.CA', 'grpc.health.v1.Health']);
});

test('grpc-go’s health client: SERVING for the server and the CA, NotFound for others', async () => {
  const results = await run([
    { op: 'health', service: '' },
    { op: 'health', service: 'dev.sigstore.fulcio.v2.CA' },
    { op: 'health', service: 'no.such.Service' },
  ]);
  expect(results.map((r) => [r.code, r.status ?? r.message])).toEqual([
    ['OK', 'SERVING'],
    ['OK', 'SERVING'],
    ['NotFound', 'unknown service'],
  ]);
});

test('Fulcio’s Go client gets certificates (body token, metadata token, CSR) like HTTP clients', async () => {
  const token = await ca.issuer.mintEmail(EMAIL);
  const proof = b64(proofFor(key, EMAIL));
  const results = await run([
    { op: 'sign', token, publicKeyPem: key.pem, proof },
    { op: 'sign', metadataToken: token, publicKeyPem: key.pem, proof },
    { op: 'sign', token, csr: b64(makeCsr(key)) },
    { op: 'sign', publicKeyPem: key.pem, proof },
    { op: 'sign', token, noKey: true },
  ]);
  for (const r of results.slice(0, 3)) {
    expect(r.code).toBe('OK');
    expect(r.kind).toBe('detached');
    expect(r.sct ?? '').toBe('');
    expect(r.certificates).toHaveLength(3);
    const leaf = new X509Certificate(r.certificates![0]!);
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
  }
  expect(results.slice(3).map((r) => [r.code, r.message])).toEqual([
    ['InvalidArgument', 'There was an error processing the identity token'],
    ['InvalidArgument', 'The public key supplied in the request could not be parsed'],
  ]);
  // The same leaf profile as the HTTP API's, apart from serial, key id and validity.
  const http = await request(ca.app.api)
    .post('/api/v2/signingCert')
    .send(v2Body(token, key.pem, proofFor(key, EMAIL)));
  const httpLeaf = new X509Certificate(
    (http.body as { signedCertificateDetachedSct: { chain: { certificates: string[] } } })
      .signedCertificateDetachedSct.chain.certificates[0]!,
  );
  const grpcLeaf = new X509Certificate(results[0]!.certificates![0]!);
  expect(grpcLeaf.issuer).toBe(httpLeaf.issuer);
  expect(grpcLeaf.subjectAltName).toBe(httpLeaf.subjectAltName);
  expect(grpcLeaf.keyUsage).toEqual(httpLeaf.keyUsage);
});

test('Fulcio’s Go client reads the trust bundle and the configuration the HTTP API serves', async () => {
  const [bundle, configuration] = await run([{ op: 'trustBundle' }, { op: 'configuration' }]);
  const httpBundle = (await request(ca.app.api).get('/api/v2/trustBundle')).body as {
    chains: { certificates: string[] }[];
  };
  expect(bundle!.chains).toEqual(httpBundle.chains.map((c) => c.certificates));
  const httpConfiguration = (await request(ca.app.api).get('/api/v2/configuration')).body as {
    issuers: Record<string, unknown>[];
  };
  // Go getters give "" for the unset member of the issuer oneof.
  expect(configuration!.issuers).toEqual(
    httpConfiguration.issuers.map((i) => ({ issuerUrl: '', wildcardIssuerUrl: '', ...i })),
  );
});
