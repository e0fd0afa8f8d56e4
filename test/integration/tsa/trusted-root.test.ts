/**
 * `mayfly trusted-root` and `mayfly signing-config` against running services, read back with
 * the parsers Sigstore's clients use: @sigstore/protobuf-specs and @sigstore/verify's trust
 * material (sigstore-go's is exercised by cosign verify-blob in test/e2e/cosign.test.ts).
 */
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SigningConfig, TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial } from '@sigstore/verify';
import { run as signingConfig } from '../../../services/cli/signing-config';
import { run as trustedRoot } from '../../../services/cli/trusted-root';
import { main } from '../../../services/cli/main';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { startTestTsa, type TestTsa } from '../../helpers/mayfly-tsa';

let ca: TestCa;
let nextCa: TestCa;
let tsa: TestTsa;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mayfly-trusted-root-'));
  [ca, nextCa, tsa] = await Promise.all([startTestCa(), startTestCa(), startTestTsa()]);
  await ca.listen();
  await nextCa.listen();
});
afterAll(async () => {
  await Promise.all([ca?.close(), nextCa?.close(), tsa?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** protobuf-specs leaves empty repeated fields out of its JSON (protojson does the same). */
function withoutEmptyLists(json: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(json).filter(([, v]) => !(Array.isArray(v) && v.length === 0)),
  );
}

async function chainPems(url: string): Promise<string> {
  const bundle = (await (await fetch(`${url}/api/v2/trustBundle`)).json()) as {
    chains: { certificates: string[] }[];
  };
  return bundle.chains[0]!.certificates.join('');
}

test('trusted-root: CA chains with validity windows (a rotation: two), the TSA chain, a CT log', async () => {
  const nextChain = join(dir, 'next-ca.pem');
  writeFileSync(nextChain, await chainPems(nextCa.url));
  const logKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
  const logKeyFile = join(dir, 'log.pem');
  writeFileSync(logKeyFile, logKey.export({ type: 'spki', format: 'pem' }));
  const out = join(dir, 'trusted_root.json');
  const status = await trustedRoot([
    '--ca-url',
    ca.url,
    '--ca-chain',
    nextChain,
    '--tsa-url',
    tsa.url,
    '--ctlog',
    `http://127.0.0.1:6962/,${logKeyFile},2026-01-01T00:00:00Z`,
    '--out',
    out,
  ]);
  expect(status).toBe(0);
  const json = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  const root = TrustedRoot.fromJSON(json);
  // What the parser read is what was written (no field it dropped or misread).
  expect(TrustedRoot.toJSON(root)).toEqual(withoutEmptyLists(json));
  expect(root.mediaType).toBe('application/vnd.dev.sigstore.trustedroot+json;version=0.1');
  expect(() => toTrustMaterial(root)).not.toThrow();

  expect(root.certificateAuthorities).toHaveLength(2);
  const issuing = new X509Certificate(
    root.certificateAuthorities[0]!.certChain!.certificates[0]!.rawBytes,
  );
  expect(root.certificateAuthorities[0]!.validFor!.start!.getTime()).toBe(
    Date.parse(issuing.validFrom),
  );
  expect(root.certificateAuthorities[0]!.validFor!.end!.getTime()).toBe(
    Date.parse(issuing.validTo),
  );
  expect(
    root.certificateAuthorities[1]!.certChain!.certificates.map((c) =>
      new X509Certificate(c.rawBytes).toString(),
    ).join(''),
  ).toBe(readFileSync(nextChain, 'utf8'));

  expect(root.timestampAuthorities).toHaveLength(1);
  expect(
    root.timestampAuthorities[0]!.certChain!.certificates.map((c) => Buffer.from(c.rawBytes)),
  ).toEqual(tsa.certChainDer);
  expect(root.timestampAuthorities[0]!.uri).toBe(tsa.url);

  const spki = logKey.export({ type: 'spki', format: 'der' });
  expect(root.ctlogs).toHaveLength(1);
  expect(root.ctlogs[0]!.baseUrl).toBe('http://127.0.0.1:6962');
  expect(Buffer.from(root.ctlogs[0]!.logId!.keyId)).toEqual(
    createHash('sha256').update(spki).digest(),
  );
  expect(Buffer.from(root.ctlogs[0]!.publicKey!.rawBytes!)).toEqual(spki);
  expect(json.ctlogs).toEqual([
    expect.objectContaining({
      publicKey: expect.objectContaining({ keyDetails: 'PKIX_ECDSA_P256_SHA_256' }),
    }),
  ]);
  expect(root.ctlogs[0]!.publicKey!.validFor!.start!.toISOString()).toBe(
    '2026-01-01T00:00:00.000Z',
  );
});

test('trusted-root refuses a TSA chain without its root, and needs a CA', async () => {
  const lone = join(dir, 'lone.pem');
  writeFileSync(lone, tsa.certChainPem[0]!);
  await expect(trustedRoot(['--ca-url', ca.url, '--tsa-chain', lone])).rejects.toThrow(
    /TSA chain needs/,
  );
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    expect(await trustedRoot(['--tsa-url', tsa.url])).toBe(2);
  } finally {
    stderr.mockRestore();
  }
});

test('signing-config: v0.2 naming the CA and the TSA endpoint, read back by protobuf-specs', async () => {
  const out = join(dir, 'signing_config.json');
  expect(
    await signingConfig([
      '--ca-url',
      `${ca.url}/`,
      '--tsa-url',
      tsa.url,
      '--oidc-url',
      ca.issuer.url,
      '--out',
      out,
    ]),
  ).toBe(0);
  const json = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  const config = SigningConfig.fromJSON(json);
  expect(SigningConfig.toJSON(config)).toEqual(withoutEmptyLists(json));
  expect(config.mediaType).toBe('application/vnd.dev.sigstore.signingconfig.v0.2+json');
  expect(config.caUrls.map((s) => [s.url, s.majorApiVersion])).toEqual([[ca.url, 1]]);
  expect(config.tsaUrls.map((s) => s.url)).toEqual([`${tsa.url}/api/v1/timestamp`]);
  expect(config.oidcUrls.map((s) => s.url)).toEqual([ca.issuer.url]);
  // The URL a client would POST to answers with a timestamp.
  const res = await fetch(config.tsaUrls[0]!.url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      artifactHash: createHash('sha256').update('x').digest('base64'),
      hashAlgorithm: 'sha256',
    }),
  });
  expect(res.status).toBe(201);
});

test('the mayfly command table: unknown commands and no command exit 2', async () => {
  const out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    expect(await main([])).toBe(2);
    expect(await main(['nope'])).toBe(2);
    expect(await main(['--help'])).toBe(0);
    expect(await main(['trusted-root', '--help'])).toBe(0);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
});
