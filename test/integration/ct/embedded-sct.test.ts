import { execFileSync } from 'node:child_process';
import { X509Certificate, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import {
  FULCIO_OID,
  type CertificateIdentity,
} from '../../../services/ca/certificate-identity/certificate-identity';
import { CaError } from '../../../services/ca/common/errors';
import { createEphemeralChain } from '../../../services/ca/issuance/ephemeral-chain';
import {
  CertificateAuthority,
  type IssuanceRequest,
} from '../../../services/ca/issuance/certificate-authority';
import { CtLogs, type CtSettings } from '../../../services/ca/issuance/ct-logs';
import { randomSerial } from '../../../services/ca/issuance/serial';
import { systemClock } from '../../../services/common/clock';
import { parseSctList } from '../../../services/common/ct/sct';
import { generateEphemeralKey, type CaSigner } from '../../../services/common/signer/signer';
import type { CtlogApp } from '../../../services/ctlog/app';
import { buildGo } from '../../helpers/go-refs';
import { makeKey } from '../../helpers/keys';
import { startLogFront, startTestCtlog } from '../../helpers/ctlog';

/**
 * The precertificate flow of the CA (issue #17) against mayfly's CT log, a real process
 * part on a loopback port: every SCT embedded is checked by certificate-transparency-go
 * (test/go/embedded-sct-check: ctutil.VerifySCT with embedded=true rebuilds the precert
 * TBS from the final certificate itself), the precertificate and the final certificate are
 * compared field by field, and a log that fails, hangs or signs wrongly gets nothing issued.
 */

const POISON = '1.3.6.1.4.1.11129.2.4.3';
const SCT_LIST = '1.3.6.1.4.1.11129.2.4.2';

let work: string;
let signer: CaSigner;
let log: CtlogApp;
let logKeyFile: string;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-embedded-sct-'));
  signer = await createEphemeralChain(generateEphemeralKey(), generateEphemeralKey(), systemClock);
  ({ app: log, keyFile: logKeyFile } = await startTestCtlog({
    roots: [{ der: Buffer.from(signer.chain[signer.chain.length - 1]!) }],
    work,
  }));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
  await log.close();
  rmSync(work, { recursive: true, force: true });
});

function identity(): CertificateIdentity {
  return {
    san: { type: 'email', value: 'alice@example.com' },
    extensions: [
      { oid: FULCIO_OID.issuerV1, value: 'https://issuer.example.com', encoding: 'raw' },
      { oid: FULCIO_OID.issuerV2, value: 'https://issuer.example.com', encoding: 'utf8' },
    ],
  };
}

function request(): IssuanceRequest {
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  return {
    publicKey: new Uint8Array(makeKey('p256').publicKey.export({ type: 'spki', format: 'der' })),
    identity: identity(),
    serial: randomSerial(),
    notBefore,
    notAfter: new Date(notBefore.getTime() + 600_000),
  };
}

interface Recorded {
  readonly ca: CertificateAuthority;
  /** Every TBS the CA key signed, in order, and its signature. */
  readonly signed: Buffer[];
  readonly signatures: Uint8Array[];
}

function caWith(settings: Partial<CtSettings> & Pick<CtSettings, 'logs'>): Recorded {
  const signed: Buffer[] = [];
  const signatures: Uint8Array[] = [];
  const recording: CaSigner = {
    chain: signer.chain,
    publicKey: signer.publicKey,
    hash: signer.hash,
    sign: async (tbs) => {
      signed.push(Buffer.from(tbs));
      const signature = await signer.sign(tbs);
      signatures.push(signature);
      return signature;
    },
  };
  const ct = new CtLogs({ minScts: 1, timeoutMs: 2000, ...settings });
  return { ca: new CertificateAuthority(recording, { ct }), signed, signatures };
}

const goodLog = () => ({ url: log.url, publicKeyFile: logKeyFile });

function embeddedSctCheck(chain: readonly Uint8Array[], keys: readonly Uint8Array[]): string {
  return execFileSync(buildGo('test/go/embedded-sct-check'), {
    input: JSON.stringify({
      keys: keys.map((k) => Buffer.from(k).toString('base64')),
      chain: chain.map((c) => Buffer.from(c).toString('base64')),
    }),
    encoding: 'utf8',
  });
}

/** TBSCertificate fields as DER, the extensions as a list of DER extensions. */
function tbsParts(tbs: Buffer): { fields: Buffer[]; extensions: Buffer[] } {
  const parsed = asn1js.fromBER(Uint8Array.from(tbs));
  expect(parsed.offset).toBe(tbs.length);
  const items = (parsed.result as asn1js.Sequence).valueBlock.value;
  const der = (b: asn1js.AsnType) => Buffer.from(b.toBER(false));
  const last = items[items.length - 1] as asn1js.Constructed;
  expect(last.idBlock.tagClass).toBe(3); // [3] EXPLICIT extensions
  const list = last.valueBlock.value[0] as asn1js.Sequence;
  return { fields: items.slice(0, -1).map(der), extensions: list.valueBlock.value.map(der) };
}

function extensionOf(der: Buffer): { oid: string; critical: boolean; value: Buffer } {
  const seq = asn1js.fromBER(Uint8Array.from(der)).result as asn1js.Sequence;
  const [id, second, third] = seq.valueBlock.value;
  const critical = third !== undefined && (second as asn1js.Boolean).valueBlock.value;
  const octets = (third ?? second) as asn1js.OctetString;
  return {
    oid: (id as asn1js.ObjectIdentifier).valueBlock.toString(),
    critical,
    value: Buffer.from(octets.valueBlock.valueHexView),
  };
}

test('a certificate carries an SCT from the log that ct-go verifies, within a minute of notBefore', async () => {
  const { ca, signed } = caWith({ logs: [goodLog()] });
  const req = request();
  const issued = await ca.issue(req);
  expect(issued.embeddedScts).toBe(1);
  expect(signed).toHaveLength(2); // the precertificate, then the certificate
  const out = embeddedSctCheck([issued.der, ...issued.chain], [log.key.spki]);
  const m = /^sct log=([0-9a-f]{64}) timestamp=(\d+) verified$/m.exec(out);
  expect(m?.[1]).toBe(log.key.logId.toString('hex'));
  expect(Math.abs(Number(m![2]) - req.notBefore.getTime())).toBeLessThanOrEqual(60_000);
  // OpenSSL reads the SCT list too, and the certificate is signed by the issuing key.
  const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], {
    input: Buffer.from(issued.der),
    encoding: 'utf8',
  });
  expect(text).toContain('CT Precertificate SCTs:');
  expect(text).not.toContain('CT Precertificate Poison');
  const cert = new X509Certificate(issued.der);
  expect(cert.verify(new X509Certificate(issued.chain[0]!).publicKey)).toBe(true);
});

test('precertificate and certificate differ only where RFC 6962 allows: poison → SCT list, last', async () => {
  const { ca, signed, signatures } = caWith({ logs: [goodLog()] });
  const issued = await ca.issue(request());
  const [precertTbs, finalTbs] = signed as [Buffer, Buffer];
  const pre = tbsParts(precertTbs);
  const fin = tbsParts(finalTbs);
  // version, serial, signature algorithm, issuer, validity, subject, SPKI: byte for byte.
  expect(pre.fields).toHaveLength(7);
  expect(pre.fields).toEqual(fin.fields);
  // Every extension in the same order; only the last one differs.
  expect(pre.extensions.slice(0, -1)).toEqual(fin.extensions.slice(0, -1));
  const poison = extensionOf(pre.extensions[pre.extensions.length - 1]!);
  expect(poison).toEqual({ oid: POISON, critical: true, value: Buffer.from([0x05, 0x00]) });
  const list = extensionOf(fin.extensions[fin.extensions.length - 1]!);
  expect(list.oid).toBe(SCT_LIST);
  expect(list.critical).toBe(false);
  // The extnValue is an OCTET STRING holding the TLS SCT list; the SCT signs the precert.
  const inner = asn1js.fromBER(Uint8Array.from(list.value)).result as asn1js.OctetString;
  const scts = parseSctList(Buffer.from(inner.valueBlock.valueHexView));
  expect(scts).toHaveLength(1);
  expect(scts[0]!.logId).toEqual(log.key.logId);
  // The final certificate's own bytes are the recorded TBS, signed by the same key.
  const cert = new X509Certificate(issued.der);
  expect(Buffer.from(issued.der).includes(finalTbs)).toBe(true);
  // As numbers: X509Certificate keeps a leading zero nibble ("05…") that the hex may not.
  expect(BigInt(`0x${cert.serialNumber}`)).toBe(BigInt(`0x${issued.serial}`));
  // Both were signed by the issuing key (no precert-signing certificate).
  const issuingKey = new X509Certificate(issued.chain[0]!).publicKey;
  expect(verify('sha256', precertTbs, issuingKey, signatures[0]!)).toBe(true);
  expect(cert.verify(issuingKey)).toBe(true);
});

/** A log in front of the real one that rewrites its answers. */
async function rewritingLog(rewrite: (body: Record<string, unknown>) => void): Promise<string> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const upstream = await fetch(`${log.url}${req.url}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: Buffer.concat(chunks),
        });
        const text = await upstream.text();
        res.writeHead(upstream.status, { 'content-type': 'application/json' });
        if (upstream.status !== 200) {
          res.end(text);
          return;
        }
        const json = JSON.parse(text) as Record<string, unknown>;
        rewrite(json);
        res.end(JSON.stringify(json));
      })();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

async function expectCtFailure(recorded: Recorded): Promise<CaError> {
  const err = await recorded.ca.issue(request()).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CaError);
  expect((err as CaError).code).toBe('ct_log');
  expect((err as CaError).mapping).toEqual({
    httpStatus: 500,
    grpcCode: 13,
    message: 'Error entering certificate in CTL',
  });
  // Only the precertificate was signed: no certificate exists.
  expect(recorded.signed).toHaveLength(1);
  return err as CaError;
}

test('an SCT whose signature does not verify is never embedded', async () => {
  const url = await rewritingLog((body) => {
    const sig = Buffer.from(body.signature as string, 'base64');
    sig[sig.length - 1]! ^= 0x01;
    body.signature = sig.toString('base64');
  });
  const err = await expectCtFailure(caWith({ logs: [{ url, publicKeyFile: logKeyFile }] }));
  expect(err.message).toContain('unverifiable SCT');
});

test('an SCT with another timestamp than the one signed is refused', async () => {
  const url = await rewritingLog((body) => {
    body.timestamp = (body.timestamp as number) + 1;
  });
  await expectCtFailure(caWith({ logs: [{ url, publicKeyFile: logKeyFile }] }));
});

test('an SCT from a log with another key than the configured one is refused', async () => {
  const other = join(work, 'other.pub');
  writeFileSync(other, makeKey('p256').publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const err = await expectCtFailure(caWith({ logs: [{ url: log.url, publicKeyFile: other }] }));
  expect(err.message).toContain('names another log');
});

test('a log that refuses the chain, or is down, fails the request', async () => {
  const refusing = await rewritingLog(() => undefined);
  // The rewriting log forwards to the real log, which refuses a chain of another root.
  const stranger = await createEphemeralChain(
    generateEphemeralKey(),
    generateEphemeralKey(),
    systemClock,
  );
  const signed: Buffer[] = [];
  const signatures: Uint8Array[] = [];
  const ca = new CertificateAuthority(
    {
      chain: stranger.chain,
      publicKey: stranger.publicKey,
      hash: stranger.hash,
      sign: (tbs) => {
        signed.push(Buffer.from(tbs));
        return stranger.sign(tbs);
      },
    },
    {
      ct: new CtLogs({
        logs: [{ url: refusing, publicKeyFile: logKeyFile }],
        minScts: 1,
        timeoutMs: 2000,
      }),
    },
  );
  const err = await expectCtFailure({ ca, signed, signatures });
  expect(err.message).toContain('answered 400');

  // Nothing listens on this port: retried until the budget is spent, then refused.
  const closed = createTcpServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  await expectCtFailure(
    caWith({
      logs: [{ url: `http://127.0.0.1:${port}`, publicKeyFile: logKeyFile }],
      timeoutMs: 500,
    }),
  );
});

test('a log that accepts and never answers fails the request at the CT timeout, not later', async () => {
  const hanging = createTcpServer((s) => sockets.push(s));
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
  // jest's 5 s test timeout is the guard: the CA must give up on its own at 300 ms.
  const err = await expectCtFailure(
    caWith({ logs: [{ url, publicKeyFile: logKeyFile }], timeoutMs: 300 }),
  );
  expect(err.message).toContain('no SCT within 300 ms');
  hanging.close();
});

test('several logs: the SCTs of those that answered, if at least the minimum did', async () => {
  const hanging = createTcpServer((s) => sockets.push(s));
  await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
  const dead = {
    url: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`,
    publicKeyFile: logKeyFile,
  };
  const one = caWith({ logs: [dead, goodLog()], minScts: 1, timeoutMs: 500 });
  const issued = await one.ca.issue(request());
  expect(issued.embeddedScts).toBe(1);
  embeddedSctCheck([issued.der, ...issued.chain], [log.key.spki]);
  await expectCtFailure(caWith({ logs: [dead, goodLog()], minScts: 2, timeoutMs: 500 }));
  // Two configured logs that both answer (the same log twice, through a pass-through):
  // two SCTs, each verified by ct-go.
  const passThrough = await rewritingLog(() => undefined);
  const two = caWith({
    logs: [goodLog(), { url: passThrough, publicKeyFile: logKeyFile }],
    minScts: 2,
  });
  const both = await two.ca.issue(request());
  expect(both.embeddedScts).toBe(2);
  const out = embeddedSctCheck([both.der, ...both.chain], [log.key.spki]);
  expect(out.match(/verified/g)).toHaveLength(2);
  hanging.close();
});

test('a configuration error is found at start: unreadable key, minimum above the logs', () => {
  expect(
    () =>
      new CtLogs({
        logs: [{ url: log.url, publicKeyFile: join(work, 'nope.pub') }],
        minScts: 1,
        timeoutMs: 1000,
      }),
  ).toThrow(/cannot read the CT log key/);
  expect(() => new CtLogs({ logs: [goodLog()], minScts: 2, timeoutMs: 1000 })).toThrow(
    /MAYFLY_CT_MIN_SCTS/,
  );
  // An Ed25519 key is no CT log key.
  const ed = join(work, 'ed.pub');
  writeFileSync(ed, makeKey('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string);
  expect(
    () => new CtLogs({ logs: [{ url: log.url, publicKeyFile: ed }], minScts: 1, timeoutMs: 1000 }),
  ).toThrow(/ECDSA or RSA/);
});

test('circuit breaker: after failures in a row the log is not asked; after the cool-off it is, and issuance resumes', async () => {
  const front = await startLogFront(log.url);
  servers.push(front.server);
  const url = front.url;
  const signed: Buffer[] = [];
  const ca = new CertificateAuthority(
    {
      chain: signer.chain,
      publicKey: signer.publicKey,
      hash: signer.hash,
      sign: (tbs) => {
        signed.push(Buffer.from(tbs));
        return signer.sign(tbs);
      },
    },
    {
      ct: new CtLogs({
        logs: [{ url, publicKeyFile: logKeyFile }],
        minScts: 1,
        timeoutMs: 2000,
        breaker: { failures: 2, coolOffMs: 300 },
      }),
    },
  );
  const fails = async (why: RegExp) => {
    const err = await ca.issue(request()).catch((e: unknown) => e);
    expect((err as CaError).code).toBe('ct_log');
    expect((err as CaError).message).toMatch(why);
  };
  await fails(/answered 500/);
  await fails(/answered 500/);
  expect(front.hits).toBe(2);
  // Open: refused without asking the log.
  await fails(/circuit open/);
  expect(front.hits).toBe(2);
  // The log is back; once the cool-off has passed, it is asked again and issuance resumes.
  front.failing = false;
  let issued;
  while (!issued) {
    issued = await ca.issue(request()).catch(() => undefined);
    if (!issued) await new Promise((r) => setTimeout(r, 50));
  }
  expect(issued.embeddedScts).toBe(1);
  expect(front.hits).toBe(3);
});
