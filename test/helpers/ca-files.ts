import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, renameSync, symlinkSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../services/common/clock';
import { createEphemeralChain } from '../../services/ca/issuance/ephemeral-chain';
import { generateEphemeralKey } from '../../services/common/signer/signer';
import { toPem } from './keys';

/**
 * File CAs for tests, made in-process (a root and an issuing intermediate, the profile of
 * mayfly's ephemeral CA), and a Kubernetes-style Secret volume to put them in: every file is
 * a symlink through `..data`, and an update swaps `..data` in one rename, as the kubelet does.
 */

export interface TestCaFiles {
  /** PEM chain, issuing certificate first. */
  readonly chainPem: string;
  /** PKCS#8 PEM, encrypted when a password was given. */
  readonly keyPem: string;
  readonly password?: string;
  /** DER of the issuing certificate and the root. */
  readonly issuing: X509Certificate;
  readonly root: X509Certificate;
}

export async function makeTestCa(password?: string): Promise<TestCaFiles> {
  const intermediate = generateEphemeralKey();
  const signer = await createEphemeralChain(generateEphemeralKey(), intermediate, systemClock);
  const transfer = intermediate.exportForWorkers(signer.chain);
  const key = createPrivateKey(transfer.key);
  const keyPem = key
    .export(
      password === undefined
        ? { type: 'pkcs8', format: 'pem' }
        : { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: password },
    )
    .toString();
  return {
    chainPem: signer.chain.map((der) => toPem('CERTIFICATE', der)).join(''),
    keyPem,
    ...(password === undefined ? {} : { password }),
    issuing: new X509Certificate(signer.chain[0]!),
    root: new X509Certificate(signer.chain[signer.chain.length - 1]!),
  };
}

/** A test CA written to files, for mayfly's file CA and Fulcio's `--ca=fileca` alike. */
export interface WrittenCa {
  readonly files: TestCaFiles;
  readonly chainFile: string;
  readonly keyFile: string;
  readonly password: string;
  /** mayfly's settings for it (file CA, password file, no reload). */
  readonly env: Record<string, string>;
}

/** Makes a test CA with an encrypted key and writes chain.pem, key.pem and key-password in `dir`. */
export async function writeFileCa(dir: string, password: string): Promise<WrittenCa> {
  const files = await makeTestCa(password);
  const chainFile = join(dir, 'chain.pem');
  const keyFile = join(dir, 'key.pem');
  const passwordFile = join(dir, 'key-password');
  writeFileSync(chainFile, files.chainPem);
  writeFileSync(keyFile, files.keyPem);
  writeFileSync(passwordFile, password);
  return {
    files,
    chainFile,
    keyFile,
    password,
    env: {
      MAYFLY_CA: 'file',
      MAYFLY_CA_CERT: chainFile,
      MAYFLY_CA_KEY: keyFile,
      MAYFLY_CA_KEY_PASSWORD_FILE: passwordFile,
      MAYFLY_CA_RELOAD_INTERVAL_MS: '0',
    },
  };
}

/** The file names a mounted CA Secret has (see k8s/overlays/production). */
export const SECRET_FILES = [
  'chain.pem',
  'key.pem',
  'key-password',
  'next-chain.pem',
  'previous-chain.pem',
] as const;
export type SecretFile = (typeof SECRET_FILES)[number];

/** A folder laid out like a Kubernetes Secret volume. */
export class SecretVolume {
  private generation = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  path(file: SecretFile): string {
    return join(this.dir, file);
  }

  /** Publishes a new set of files at once (absent entries are absent from the volume). */
  write(files: Partial<Record<SecretFile, string>>): void {
    const name = `..gen_${process.pid}_${++this.generation}`;
    const target = join(this.dir, name);
    mkdirSync(target);
    for (const [file, text] of Object.entries(files)) writeFileSync(join(target, file), text);
    const tmp = join(this.dir, '..data_tmp');
    rmSync(tmp, { force: true });
    symlinkSync(name, tmp);
    renameSync(tmp, join(this.dir, '..data'));
    for (const file of SECRET_FILES) {
      const link = join(this.dir, file);
      if (!existsSync(link)) {
        try {
          symlinkSync(join('..data', file), link);
        } catch {
          // already a (dangling) link
        }
      }
    }
  }

  /** The usual contents for a CA: the chain, its key and the password when there is one. */
  static filesFor(
    ca: TestCaFiles,
    extra: Partial<Record<SecretFile, string>> = {},
  ): Partial<Record<SecretFile, string>> {
    return {
      'chain.pem': ca.chainPem,
      'key.pem': ca.keyPem,
      ...(ca.password === undefined ? {} : { 'key-password': `${ca.password}\n` }),
      ...extra,
    };
  }
}
