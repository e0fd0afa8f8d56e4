/**
 * End to end: the unmodified Sigstore JS client libraries against a listening mayfly.
 *
 * @sigstore/sign gets an ephemeral certificate from mayfly over the v2 API
 * (`POST /api/v2/signingCert`), signs, and has the signature timestamped by a local RFC 3161
 * TSA; @sigstore/verify then checks the bundle against a trusted root made of nothing but
 * mayfly's `GET /api/v2/trustBundle` and the TSA chain. No Rekor, no CT log, no network beyond
 * 127.0.0.1. See docs/sigstore-js-notes.md.
 */
import { X509Certificate } from 'node:crypto';

import type { SerializedBundle } from '@sigstore/bundle';

import { startTestCa, type TestCa } from '../helpers/mayfly';
import {
  signWithSigstoreJs,
  verifyWithSigstoreJs,
  type TrustBundleJSON,
} from '../helpers/sigstore-js';
import { startTestTsa, type TestTsa } from '../helpers/mayfly-tsa';

jest.setTimeout(60_000);

const EMAIL = 'alice@example.com';
const PAYLOAD = Buffer.from('hello mayfly\n');

let ca: TestCa;
/** A second, unrelated mayfly instance: its own ephemeral root and intermediate. */
let otherCa: TestCa;
let tsa: TestTsa;
let trustBundle: TrustBundleJSON;

beforeAll(async () => {
  tsa = await startTestTsa();
  ca = await startTestCa();
  otherCa = await startTestCa();
  await ca.listen();
  await otherCa.listen();
  trustBundle = await fetchTrustBundle(ca.url);
});

afterAll(async () => {
  await ca?.close();
  await otherCa?.close();
  await tsa?.close();
});

async function fetchTrustBundle(baseUrl: string): Promise<TrustBundleJSON> {
  const response = await fetch(`${baseUrl}/api/v2/trustBundle`);
  expect(response.status).toBe(200);
  return (await response.json()) as TrustBundleJSON;
}

/** Count of finished requests per route and status code, from mayfly's own latency histogram. */
async function requestCount(target: TestCa, route: string, code: string): Promise<number> {
  const text = await target.app.metrics.registry.getSingleMetricAsString(
    'mayfly_http_request_duration_seconds',
  );
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^mayfly_http_request_duration_seconds_count\{([^}]*)\} (\d+)$/.exec(line);
    if (!match) continue;
    const labels = new Map(
      [...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as const),
    );
    if (labels.get('route') === route && labels.get('code') === code) total += Number(match[2]);
  }
  return total;
}

/** The leaf certificate a bundle carries, whichever verification material it uses. */
function leafOf(bundle: SerializedBundle): X509Certificate {
  const material = bundle.verificationMaterial;
  const raw =
    'certificate' in material && material.certificate
      ? material.certificate.rawBytes
      : 'x509CertificateChain' in material
        ? material.x509CertificateChain?.certificates[0]?.rawBytes
        : undefined;
  if (!raw) throw new Error('bundle carries no certificate');
  return new X509Certificate(Buffer.from(raw, 'base64'));
}

describe('a message-signature bundle from sigstore-js', () => {
  let bundle: SerializedBundle;
  let signsBefore: number;
  let v2Before: number;
  let tsaBefore: number;

  beforeAll(async () => {
    signsBefore = ca.signCount();
    v2Before = await requestCount(ca, '/api/v2/signingCert', '200');
    tsaBefore = tsa.issued.json;
    bundle = await signWithSigstoreJs({
      fulcioURL: ca.url,
      tsaURL: tsa.url,
      identityToken: await ca.issuer.mintEmail(EMAIL),
      payload: PAYLOAD,
    });
  });

  test('was certified by mayfly over v2 and timestamped by the TSA', async () => {
    expect(ca.signCount()).toBe(signsBefore + 1);
    expect(await requestCount(ca, '/api/v2/signingCert', '200')).toBe(v2Before + 1);
    expect(tsa.issued.json).toBe(tsaBefore + 1);

    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle+json;version=0.2');
    expect(bundle.verificationMaterial.tlogEntries ?? []).toEqual([]);
    expect(bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps).toHaveLength(
      1,
    );

    // The leaf is mayfly's: issued by the intermediate at the head of the trust bundle.
    const leaf = leafOf(bundle);
    const intermediate = new X509Certificate(trustBundle.chains[0]!.certificates[0]!);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(`email:${EMAIL}`);
  });

  test('verifies against mayfly trust bundle + TSA chain with the identity policy', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: PAYLOAD,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).resolves.toEqual({ san: EMAIL, issuer: ca.issuer.url });
  });

  test('fails with a different expected SAN', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: PAYLOAD,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: 'bob@example.com', issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/certificate identity error/);
  });

  test('fails with a SAN that is only a prefix of the real one', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: PAYLOAD,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: 'alice@example.co', issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/certificate identity error/);
  });

  test('fails with a different expected issuer', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: PAYLOAD,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: otherCa.issuer.url },
      }),
    ).rejects.toThrow(/invalid certificate extension/);
  });

  test('fails for a tampered payload', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: Buffer.from('hello mayfly!\n'),
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/SIGNATURE_ERROR/);
  });

  test('fails against the trust bundle of another mayfly instance', async () => {
    const foreign = await fetchTrustBundle(otherCa.url);
    expect(foreign.chains[0]!.certificates).not.toEqual(trustBundle.chains[0]!.certificates);
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: PAYLOAD,
        trustBundle: foreign,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/CERTIFICATE_ERROR/);
  });
});

describe('a DSSE bundle from sigstore-js', () => {
  const statement = Buffer.from(
    JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType: 'x' }),
  );
  let bundle: SerializedBundle;

  beforeAll(async () => {
    bundle = await signWithSigstoreJs({
      fulcioURL: ca.url,
      tsaURL: tsa.url,
      identityToken: await ca.issuer.mintEmail(EMAIL),
      payload: statement,
      kind: 'dsseEnvelope',
    });
  });

  test('is a v0.3 bundle with a single certificate and a timestamp', () => {
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.dsseEnvelope?.payloadType).toBe('application/vnd.in-toto+json');
    expect(bundle.verificationMaterial.certificate?.rawBytes).toBeTruthy();
    expect(bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps).toHaveLength(
      1,
    );
    expect(leafOf(bundle).subjectAltName).toBe(`email:${EMAIL}`);
  });

  test('verifies against mayfly trust bundle + TSA chain with the identity policy', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: statement,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).resolves.toEqual({ san: EMAIL, issuer: ca.issuer.url });
  });

  test('fails when the envelope payload was swapped', async () => {
    // A real tampering: change the signed payload inside the envelope and expect the
    // signature check (not only the helper's payload comparison) to catch it.
    const swapped = Buffer.from(statement.toString().replace('"x"', '"y"'));
    const tampered = structuredClone(bundle);
    tampered.dsseEnvelope!.payload = swapped.toString('base64');
    await expect(
      verifyWithSigstoreJs({
        bundle: tampered,
        payload: swapped,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/SIGNATURE_ERROR/);
  });

  test('fails when the expected payload differs from the envelope', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: Buffer.from('something else'),
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: EMAIL, issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/DSSE envelope payload does not match/);
  });

  test('fails with a different expected SAN', async () => {
    await expect(
      verifyWithSigstoreJs({
        bundle,
        payload: statement,
        trustBundle,
        tsaChain: tsa.certChainPem,
        identity: { san: 'bob@example.com', issuer: ca.issuer.url },
      }),
    ).rejects.toThrow(/certificate identity error/);
  });
});

test('a token mayfly refuses makes sigstore-js signing fail with mayfly 400 message', async () => {
  const signsBefore = ca.signCount();
  const refusedBefore = await requestCount(ca, '/api/v2/signingCert', '400');
  const identityToken = await ca.issuer.mint(
    { sub: EMAIL, email: EMAIL, email_verified: true },
    { audience: 'other' },
  );
  await expect(
    signWithSigstoreJs({ fulcioURL: ca.url, tsaURL: tsa.url, identityToken, payload: PAYLOAD }),
  ).rejects.toThrow(
    'CA_CREATE_SIGNING_CERTIFICATE_ERROR: error creating signing certificate - (400) There was an error processing the identity token',
  );
  expect(ca.signCount()).toBe(signsBefore);
  expect(await requestCount(ca, '/api/v2/signingCert', '400')).toBe(refusedBefore + 1);
});
