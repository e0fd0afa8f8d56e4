/**
 * Issue #17, the other direction: Fulcio itself (built from Debian's source packages by
 * scripts/go-refs.sh), run with --ct-log-url at mayfly's CT log and --ct-log-public-key-path
 * at its key, obtains SCTs through certificate-transparency-go's client (which verifies them
 * with that key) and embeds them; ct-go's verifier accepts them. mayfly's CA, on the same CA
 * files and the same log, produces a certificate of the same shape: the same extensions in
 * the same order, the SCT list last and non-critical.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import type { CtlogApp } from '../../../services/ctlog/app';
import { makeTestCa } from '../../helpers/ca-files';
import { buildGo, goTool } from '../../helpers/go-refs';
import { makeKey, proofFor } from '../../helpers/keys';
import { startTestCa, v2Body, type TestCa } from '../../helpers/mayfly';
import { freePort } from '../../helpers/redis';
import { until } from '../../helpers/wait';
import { startTestCtlog } from '../../helpers/ctlog';

jest.setTimeout(120_000);

const EMAIL = 'alice@example.com';
const SCT_LIST = '1.3.6.1.4.1.11129.2.4.2';
let work: string;
let log: CtlogApp;
let mayfly: TestCa;
let fulcio: ChildProcess;
let fulcioUrl: string;
let fulcioLog = '';

beforeAll(async () => {
  const fulcioBin = goTool('fulcio');
  work = mkdtempSync(join(tmpdir(), 'mayfly-fulcio-ct-'));
  const caFiles = await makeTestCa('fulcio-ct-password');
  writeFileSync(join(work, 'chain.pem'), caFiles.chainPem);
  writeFileSync(join(work, 'key.pem'), caFiles.keyPem);
  writeFileSync(join(work, 'key-password'), caFiles.password!);
  const started = await startTestCtlog({ roots: [{ der: Buffer.from(caFiles.root.raw) }], work });
  log = started.app;
  const logKeyFile = started.keyFile;
  mayfly = await startTestCa({
    env: {
      MAYFLY_CA: 'file',
      MAYFLY_CA_CERT: join(work, 'chain.pem'),
      MAYFLY_CA_KEY: join(work, 'key.pem'),
      MAYFLY_CA_KEY_PASSWORD_FILE: join(work, 'key-password'),
      MAYFLY_CA_RELOAD_INTERVAL_MS: '0',
      MAYFLY_CT_LOG_URL: log.url,
      MAYFLY_CT_LOG_PUBLIC_KEY_FILE: logKeyFile,
    },
  });
  const identity = join(work, 'config.json');
  writeFileSync(
    identity,
    JSON.stringify({
      OIDCIssuers: {
        [mayfly.issuer.url]: { IssuerURL: mayfly.issuer.url, ClientID: 'sigstore', Type: 'email' },
      },
    }),
  );
  const [httpPort, grpcPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  fulcioUrl = `http://127.0.0.1:${httpPort}`;
  fulcio = spawn(
    fulcioBin,
    [
      'serve',
      '--ca=fileca',
      `--fileca-cert=${join(work, 'chain.pem')}`,
      `--fileca-key=${join(work, 'key.pem')}`,
      `--fileca-key-passwd=${caFiles.password!}`,
      '--fileca-watch=false',
      `--config-path=${identity}`,
      `--ct-log-url=${log.url}`,
      `--ct-log-public-key-path=${logKeyFile}`,
      '--host=127.0.0.1',
      `--port=${httpPort}`,
      '--grpc-host=127.0.0.1',
      `--grpc-port=${grpcPort}`,
      `--metrics-port=${metricsPort}`,
      `--legacy-unix-domain-socket=@mayfly-fulcio-ct-${process.pid}-${grpcPort}`,
      '--log_type=prod',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: work },
  );
  fulcio.stdout!.on('data', (d: Buffer) => (fulcioLog += d.toString()));
  fulcio.stderr!.on('data', (d: Buffer) => (fulcioLog += d.toString()));
  await until(
    async () => {
      if (fulcio.exitCode !== null) throw new Error(`fulcio exited: ${fulcioLog}`);
      try {
        return (await fetch(`${fulcioUrl}/api/v2/trustBundle`)).status === 200;
      } catch {
        return false;
      }
    },
    'Fulcio to serve HTTP',
    60_000,
  );
}, 900_000);

afterAll(async () => {
  fulcio?.kill('SIGKILL');
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
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${text}\n${fulcioLog}`);
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
  const chain = await signWith(fulcioUrl);
  expect(ctGoCheck(chain)).toMatch(
    new RegExp(`^sct log=${log.key.logId.toString('hex')} timestamp=\\d+ verified$`, 'm'),
  );
});

test('mayfly’s certificate has the shape of Fulcio’s: same extensions, same order, SCT list last', async () => {
  const fromFulcio = await signWith(fulcioUrl);
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
