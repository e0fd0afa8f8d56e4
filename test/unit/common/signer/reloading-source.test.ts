import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../../services/common/clock';
import { silentLogger } from '../../../../services/common/logger';
import { CertificateAuthority } from '../../../../services/ca/issuance/certificate-authority';
import { randomSerial } from '../../../../services/ca/issuance/serial';
import { CaLoadError } from '../../../../services/common/signer/file-signer';
import {
  ReloadingFileSource,
  type ReloadResult,
} from '../../../../services/common/signer/reloading-source';
import type {
  CaSigner,
  SignerSource,
  SigningState,
} from '../../../../services/common/signer/signer';
import { SecretVolume, makeTestCa, type TestCaFiles } from '../../../helpers/ca-files';
import { makeKey } from '../../../helpers/keys';

/**
 * The file CA re-read on change: a new valid set replaces the old one whole, a bad one is
 * refused and the old CA keeps signing, the next/previous chains are published, and a
 * request signs with the CA it started with.
 */

let caA: TestCaFiles;
let caB: TestCaFiles;
let caPlain: TestCaFiles;

beforeAll(async () => {
  [caA, caB, caPlain] = await Promise.all([makeTestCa('pw-a'), makeTestCa('pw-b'), makeTestCa()]);
});

function volume(): SecretVolume {
  return new SecretVolume(join(mkdtempSync(join(tmpdir(), 'mayfly-reload-')), 'ca'));
}

function open(
  vol: SecretVolume,
  options: { intervalMs?: number; watch?: boolean; results?: ReloadResult[] } = {},
) {
  return new ReloadingFileSource(
    {
      cert: vol.path('chain.pem'),
      key: vol.path('key.pem'),
      keyPasswordFile: vol.path('key-password'),
      nextCert: vol.path('next-chain.pem'),
      previousCert: vol.path('previous-chain.pem'),
    },
    {
      clock: systemClock,
      logger: silentLogger,
      intervalMs: options.intervalMs ?? 0,
      watch: options.watch ?? false,
      debounceMs: 20,
      onReload: (result) => options.results?.push(result),
    },
  );
}

const issuingOf = (state: SigningState) => new X509Certificate(state.signer.chain[0]!);

describe('ReloadingFileSource', () => {
  it('loads the CA at start and refuses a bad one as loadFileSigner does', () => {
    const good = volume();
    good.write(SecretVolume.filesFor(caA));
    expect(issuingOf(open(good).current()).fingerprint256).toBe(caA.issuing.fingerprint256);

    const bad = volume();
    bad.write({ ...SecretVolume.filesFor(caA), 'key.pem': caB.keyPem });
    expect(() => open(bad)).toThrow(CaLoadError);
  });

  it('swaps to a new valid set, and reports unchanged files as unchanged', () => {
    const vol = volume();
    vol.write(SecretVolume.filesFor(caA));
    const results: ReloadResult[] = [];
    const source = open(vol, { results });
    expect(source.reload()).toBe('unchanged');
    const before = source.current();
    vol.write(SecretVolume.filesFor(caB));
    expect(source.reload()).toBe('reloaded');
    expect(issuingOf(source.current()).fingerprint256).toBe(caB.issuing.fingerprint256);
    expect(before.signer).not.toBe(source.current().signer);
    expect(results).toEqual(['reloaded', 'reloaded']);
  });

  it.each([
    [
      'a key that does not match the chain',
      () => ({ ...SecretVolume.filesFor(caA), 'key.pem': caPlain.keyPem }),
    ],
    ['a wrong password', () => ({ ...SecretVolume.filesFor(caB), 'key-password': 'nope\n' })],
    ['a chain that is not PEM', () => ({ ...SecretVolume.filesFor(caB), 'chain.pem': 'garbage' })],
    ['a missing key file', () => ({ 'chain.pem': caB.chainPem, 'key-password': 'pw-b' })],
    [
      'a next chain that is not a CA chain',
      () => ({
        ...SecretVolume.filesFor(caB),
        'next-chain.pem':
          caPlain.chainPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----\n',
      }),
    ],
  ])('refuses %s and keeps signing with the old CA (logged once)', (_what, files) => {
    const vol = volume();
    vol.write(SecretVolume.filesFor(caA));
    const results: ReloadResult[] = [];
    const source = open(vol, { results });
    const before = source.current();
    vol.write(files());
    expect(source.reload()).toBe('refused');
    expect(source.reload()).toBe('refused');
    expect(source.current()).toBe(before);
    // One report for one bad set of files, however often it is re-read.
    expect(results).toEqual(['reloaded', 'refused']);
    // Fixed files are picked up again.
    vol.write(SecretVolume.filesFor(caB));
    expect(source.reload()).toBe('reloaded');
  });

  it('publishes the next and previous chains, after the signing one', () => {
    const vol = volume();
    vol.write(SecretVolume.filesFor(caA, { 'next-chain.pem': caB.chainPem }));
    const source = open(vol);
    const ca = new CertificateAuthority(source);
    const bundle = ca.trustBundle().map((chain) => new X509Certificate(chain[0]!).fingerprint256);
    expect(bundle).toEqual([caA.issuing.fingerprint256, caB.issuing.fingerprint256]);
    // After the swap the old chain is the previous one; an empty next file is no chain.
    vol.write(
      SecretVolume.filesFor(caB, { 'next-chain.pem': '', 'previous-chain.pem': caA.chainPem }),
    );
    expect(source.reload()).toBe('reloaded');
    expect(ca.trustBundle().map((chain) => new X509Certificate(chain[0]!).fingerprint256)).toEqual([
      caB.issuing.fingerprint256,
      caA.issuing.fingerprint256,
    ]);
    // A chain listed twice is published once.
    vol.write(SecretVolume.filesFor(caB, { 'next-chain.pem': caB.chainPem }));
    expect(source.reload()).toBe('reloaded');
    expect(ca.trustBundle()).toHaveLength(1);
  });

  it('notices a Secret-style update by itself (folder watch), and by the timer without it', async () => {
    for (const mode of [{ watch: true }, { watch: false, intervalMs: 50 }]) {
      const vol = volume();
      vol.write(SecretVolume.filesFor(caA));
      const source = open(vol, mode).start();
      try {
        vol.write(SecretVolume.filesFor(caB));
        const until = Date.now() + 10_000;
        while (
          issuingOf(source.current()).fingerprint256 !== caB.issuing.fingerprint256 &&
          Date.now() < until
        )
          await new Promise((r) => setTimeout(r, 20));
        expect(issuingOf(source.current()).fingerprint256).toBe(caB.issuing.fingerprint256);
      } finally {
        source.close();
      }
    }
  });

  it('reads a plain file CA too (no symlinks, no password)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mayfly-plain-'));
    writeFileSync(join(dir, 'chain.pem'), caPlain.chainPem);
    writeFileSync(join(dir, 'key.pem'), caPlain.keyPem);
    const source = new ReloadingFileSource(
      { cert: join(dir, 'chain.pem'), key: join(dir, 'key.pem') },
      { clock: systemClock, logger: silentLogger, intervalMs: 0 },
    );
    expect(issuingOf(source.current()).fingerprint256).toBe(caPlain.issuing.fingerprint256);
    expect(source.current().publishedChains).toEqual([]);
  });
});

describe('CertificateAuthority over a changing source', () => {
  it('finishes a request with the CA it started with, even when the CA changes meanwhile', async () => {
    const volA = volume();
    volA.write(SecretVolume.filesFor(caA));
    const volB = volume();
    volB.write(SecretVolume.filesFor(caB));
    const stateA = open(volA).current();
    const stateB = open(volB).current();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A's signer waits at the gate, so the swap happens while the request is signing.
    const slowA: CaSigner = {
      chain: stateA.signer.chain,
      publicKey: stateA.signer.publicKey,
      hash: stateA.signer.hash,
      sign: async (tbs) => {
        await gate;
        return stateA.signer.sign(tbs);
      },
    };
    let state: SigningState = { signer: slowA, publishedChains: [] };
    const source: SignerSource = { current: () => state };
    const ca = new CertificateAuthority(source);
    const now = Math.floor(Date.now() / 1000) * 1000;
    const request = () => ({
      publicKey: new Uint8Array(makeKey('p256').publicKey.export({ type: 'spki', format: 'der' })),
      identity: {
        san: { type: 'email' as const, value: 'someone@example.com' },
        extensions: [
          {
            oid: '1.3.6.1.4.1.57264.1.8',
            value: 'https://issuer.example',
            encoding: 'utf8' as const,
          },
        ],
      },
      serial: randomSerial(),
      notBefore: new Date(now),
      notAfter: new Date(now + 600_000),
    });
    const inFlight = ca.issue(request());
    state = stateB;
    const after = await ca.issue(request());
    release();
    const before = await inFlight;

    const leafBefore = new X509Certificate(before.der);
    expect(leafBefore.verify(caA.issuing.publicKey)).toBe(true);
    expect(leafBefore.issuer).toBe(caA.issuing.subject);
    expect(Buffer.from(before.chain[0]!).equals(caA.issuing.raw)).toBe(true);
    const leafAfter = new X509Certificate(after.der);
    expect(leafAfter.verify(caB.issuing.publicKey)).toBe(true);
    expect(Buffer.from(after.chain[0]!).equals(caB.issuing.raw)).toBe(true);
  });
});
