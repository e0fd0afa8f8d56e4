import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../services/common/clock';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { KeySigner, type CaSigner } from '../../services/common/signer/signer';
import { toPem } from './keys';
import { Pkcs11Pool } from '../../services/common/signer/pkcs11/pkcs11-signer';

/**
 * The test run's private SoftHSM2 (its own SOFTHSM2_CONF and token folder in a temp dir,
 * made by test/helpers/softhsm-setup.js before the workers start), driven with Debian's
 * softhsm2-util: a real PKCS#11 module, not a mock. Each test file uses token labels of its
 * own; `env` is what a child process needs to see the same tokens.
 */

const MODULE_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
];

export function softHsmModule(): string {
  const found = MODULE_PATHS.find((p) => existsSync(p));
  if (!found) throw new Error('libsofthsm2.so not found: apt-get install softhsm2');
  return found;
}

export class SoftHsm {
  readonly dir: string;
  readonly conf: string;
  readonly module = softHsmModule();

  constructor() {
    const conf = process.env.SOFTHSM2_CONF;
    const dir = process.env.MAYFLY_TEST_SOFTHSM_DIR;
    if (!conf || !dir) throw new Error('SOFTHSM2_CONF is not set: run the tests through jest');
    this.conf = conf;
    this.dir = mkdtempSync(join(dir, 'files-'));
  }

  get env(): Record<string, string> {
    return { SOFTHSM2_CONF: this.conf };
  }

  private util(args: string[]): string {
    return execFileSync('softhsm2-util', args, {
      env: { ...process.env, SOFTHSM2_CONF: this.conf },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /**
   * softhsm2-util looks the token up by listing every slot; while another test file (they
   * share one token folder per jest run) creates or deletes a token at that moment, the
   * listing fails with "Could not get info about the token". That is the harness racing
   * itself, not the module under test: such a failure is tried again, a few times.
   */
  private utilByToken(args: string[]): string {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.util(args);
      } catch (err) {
        const stderr = String((err as { stderr?: unknown }).stderr ?? '');
        if (attempt >= 5 || !stderr.includes('Could not get info about the token')) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100 * attempt);
      }
    }
  }

  initToken(label: string, pin: string, soPin = `${pin}-so`): void {
    this.util(['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin]);
  }

  deleteToken(label: string): void {
    this.utilByToken(['--delete-token', '--token', label]);
  }

  /** Imports a private key (as a ceremony on another machine would have left it). */
  importKey(token: string, pin: string, key: KeyObject, label: string, idHex: string): void {
    const file = join(this.dir, `import-${process.pid}-${Date.now()}.pem`);
    writeFileSync(file, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    try {
      this.utilByToken([
        '--import',
        file,
        '--token',
        token,
        '--label',
        label,
        '--id',
        idHex,
        '--pin',
        pin,
      ]);
    } finally {
      rmSync(file, { force: true });
    }
  }

  pinFile(pin: string): string {
    const file = join(this.dir, 'pin');
    writeFileSync(file, `${pin}\n`, { mode: 0o600 });
    return file;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export type CaKeyKind = 'p256' | 'p384' | 'rsa2048';

export function caKey(kind: CaKeyKind): KeyObject {
  if (kind === 'rsa2048') return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return generateKeyPairSync('ec', { namedCurve: kind === 'p256' ? 'prime256v1' : 'secp384r1' })
    .privateKey;
}

/** A root and an intermediate of the given key kind; the intermediate's key is returned. */
export async function makeChain(
  kind: CaKeyKind,
): Promise<{ chain: readonly Uint8Array[]; chainPem: string; key: KeyObject }> {
  const key = caKey(kind);
  const signer: CaSigner = await createEphemeralChain(
    new KeySigner(caKey(kind)),
    new KeySigner(key),
    systemClock,
  );
  return {
    chain: signer.chain,
    chainPem: signer.chain.map((der) => toPem('CERTIFICATE', der)).join(''),
    key: createPrivateKey(key.export({ type: 'pkcs8', format: 'pem' })),
  };
}

/**
 * A CA whose intermediate key sits in a fresh token of the run's SoftHSM2, signing through
 * the pkcs11 signer (for the end-to-end suites run once with the key in an HSM).
 */
export async function softHsmCaSigner(
  kind: CaKeyKind = 'p256',
): Promise<{ signer: CaSigner; close(): Promise<void> }> {
  // One token per test process, made before its module is first initialised (SoftHSM sees
  // tokens made later only after a re-initialisation); each CA imports a key of its own.
  const pin = '9753';
  if (!e2eToken) {
    const hsm = new SoftHsm();
    const label = `e2e-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    hsm.initToken(label, pin);
    e2eToken = { hsm, label, keys: 0 };
  }
  const { hsm, label } = e2eToken;
  const keyLabel = `issuing-${++e2eToken.keys}`;
  const ca = await makeChain(kind);
  hsm.importKey(label, pin, ca.key, keyLabel, e2eToken.keys.toString(16).padStart(2, '0'));
  const pool = new Pkcs11Pool({
    module: hsm.module,
    tokenLabel: label,
    pin,
    sessions: 2,
    maxQueue: 64,
  });
  return {
    signer: pool.signerFor(ca.chain, keyLabel),
    close: () => pool.close(),
  };
}

let e2eToken: { hsm: SoftHsm; label: string; keys: number } | undefined;
