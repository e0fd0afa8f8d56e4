/**
 * Issue #17, the other direction: Fulcio itself (built from Debian's source packages by
 * scripts/go-refs.sh), run with --ct-log-url at mayfly's CT log and --ct-log-public-key-path
 * at its key, obtains SCTs through certificate-transparency-go's client (which verifies them
 * with that key) and embeds them; ct-go's verifier accepts them. mayfly's CA, on the same CA
 * files and the same log, produces a certificate of the same shape: the same extensions in
 * the same order, the SCT list last and non-critical.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import type { CtlogApp } from '../../../services/ctlog/app';
import { writeFileCa } from '../../helpers/ca-files';
import { buildGo } from '../../helpers/go-refs';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';
import { startTestCtlog } from '../../helpers/ctlog';
import { startFulcio, type RunningFulcio } from '../../helpers/fulcio';

jest.setTimeout(120_000);

const EMAIL = 'alice@example.com';
const SCT_LIST = '1.3.6.1.4.1.11129.2.4.2';
let work: string;
let log: CtlogApp;
let mayfly: TestCa;
let fulcio: RunningFulcio;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-fulcio-ct-'));
  const ca = await writeFileCa(work, 'fulcio-ct-password');
  const started = await startTestCtlog({ roots: [{ der: Buffer.from(ca.files.root.raw) }], work });
  log = started.app;
  const logKeyFile = started.keyFile;
  mayfly = await startTestCa({
    env: {
      ...ca.env,
      MAYFLY_CT_LOG_URL: log.url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
    },
  });
  fulcio = await startFulcio({
    work: work,
    chainFile: ca.chainFile,
    keyFile: ca.keyFile,
    keyPassword: ca.password,
    issuerUrl: mayfly.issuer.url,
    ctLog: { url: log.url, publicKeyFile: logKeyFile },
    tag: 'fulcio-ct',
  });
}, 900_000);

afterAll(async () => {
  fulcio?.stop();
  await mayfly?.close();
  await log?.close();
  rmSync(work, { recursive: true, force: true });
});

async function signWith(url: string): Promise<string[]> {
  const key = makeKey('p256');
  const token = await mayfly.issuer.mintEmail(EMAIL);
  const res = await fetch(`${url}/api/v2/signingCert`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(v2Body(token, key.pem, proofFor(key, EMAIL))),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${text}\n${fulcio.output()}`);
  const body = JSON.parse(text) as {
    signedCertificateEmbeddedSct?: { chain: { certificates: string[] } };
  };
  expect(Object.keys(body)).toEqual(['signedCertificateEmbeddedSct']);
  return body.signedCertificateEmbeddedSct!.chain.certificates;
}

function ctGoCheck(chain: readonly string[]): string {
  return execFileSync(buildGo('test/go/embedded-sct-check'), {
    input: JSON.stringify({
      keys: [log.key.spki.toString('base64')],
      chain: chain.map((p) => new X509Certificate(p).raw.toString('base64')),
    }),
    encoding: 'utf8',
  });
}

/** The leaf's extensions: OID and criticality, in order. */
function extensionsOf(certPem: string): { oid: string; critical: boolean }[] {
  const der = new X509Certificate(certPem).raw;
  const cert = asn1js.fromBER(Uint8Array.from(der)).result as asn1js.Sequence;
  const tbs = cert.valueBlock.value[0] as asn1js.Sequence;
  const wrapper = tbs.valueBlock.value[tbs.valueBlock.value.length - 1] as asn1js.Constructed;
  const list = wrapper.valueBlock.value[0] as asn1js.Sequence;
  return list.valueBlock.value.map((e) => {
    const [id, second] = (e as asn1js.Sequence).valueBlock.value;
    return {
      oid: (id as asn1js.ObjectIdentifier).valueBlock.toString(),
      critical: second instanceof asn1js.Boolean ? second.valueBlock.value : false,
    };
  });
}

test('Fulcio gets verifiable SCTs from mayfly’s log and embeds them', async () => {
  const chain = await signWith(fulcio.url);
  expect(ctGoCheck(chain)).toMatch(
    new RegExp(`^sct log=${log.key.logId.toString('hex')} timestamp=\\d+ verified$`, 'm'),
  );
});

test('mayfly’s certificate has the shape of Fulcio’s: same extensions, same order, SCT list last', async () => {
  const fromFulcio = await signWith(fulcio.url);
  const fromMayfly = await signWith(mayfly.url || (await mayfly.listen()));
  ctGoCheck(fromMayfly);
  const a = extensionsOf(fromFulcio[0]!);
  const b = extensionsOf(fromMayfly[0]!);
  expect(a[a.length - 1]).toEqual({ oid: SCT_LIST, critical: false });
  expect(b).toEqual(a);
  // Both answer with the same CA chain after the leaf.
  expect(fromMayfly.slice(1).map((p) => p.trim())).toEqual(
    fromFulcio.slice(1).map((p) => p.trim()),
  );
});
