import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseKeySpec, Pkcs11ConfigError } from '../common/signer/pkcs11/token';
import { buildCaCertificate, type CertificateSigner } from '../common/x509/ca-certificate';
import { CeremonyError, FileKeys, TokenKeys, type CeremonyKeys } from './ca-keys';

/**
 * `mayfly ca create | rotate | promote`: the key ceremony and the intermediate rotation.
 *
 *   create   root key and self-signed root (pathLen 1), intermediate key and certificate
 *            (pathLen 0, EKU codeSigning, no name constraints), signed by the root key;
 *            writes chain.pem, root.pem and a trusted-root fragment; prints what to keep
 *            offline. Run twice with the same flags it does nothing; it never overwrites a
 *            key label or a file.
 *   rotate   a new intermediate key and certificate under the same root, written as
 *            next-chain.pem: published in the trust bundle (MAYFLY_CA_NEXT_CERT) before it
 *            signs.
 *   promote  the next chain signs: previous-chain.pem <- chain.pem, chain.pem <-
 *            next-chain.pem, next-chain.pem emptied; each file replaced by one rename, in an
 *            order where every state in between publishes both chains.
 *
 * Keys live in a PKCS#11 token (--module, --token-label, --pin-file, or the server's
 * MAYFLY_CA_PKCS11_* variables), or, for development, in files (--file-keys).
 */

const HELP = `usage: mayfly ca <create|rotate|promote> --out DIR [options]

keys (a PKCS#11 token, or files for development):
  --module PATH            PKCS#11 library (default: $MAYFLY_CA_PKCS11_MODULE)
  --token-label LABEL      token (default: $MAYFLY_CA_PKCS11_TOKEN_LABEL)
  --pin-file FILE          user PIN (default: $MAYFLY_CA_PKCS11_PIN_FILE)
  --file-keys              development: keys as PKCS#8 files in --out instead of a token

create:
  --root-key-label L       default mayfly-root
  --key-label L            intermediate key, default mayfly-intermediate-1
  --root-key-type T        ecdsa-p256 | ecdsa-p384 | rsa-2048 | rsa-3072 | rsa-4096 (default ecdsa-p384)
  --key-type T             intermediate key type (default ecdsa-p256)
  --organization O         default mayfly
  --root-cn CN             default "mayfly root"
  --cn CN                  intermediate common name, default "mayfly intermediate"
  --root-validity-days N   default 3650
  --validity-days N        intermediate, default 730
  --url URL                the CA's URL in the trusted-root fragment (default http://localhost:8080)

rotate: --key-label L (required, new), --key-type, --cn, --validity-days, --root-key-label, --url
promote: no options besides --out
`;

const OPTIONS = {
  out: { type: 'string' },
  module: { type: 'string' },
  'token-label': { type: 'string' },
  'pin-file': { type: 'string' },
  'file-keys': { type: 'boolean', default: false },
  'root-key-label': { type: 'string', default: 'mayfly-root' },
  'key-label': { type: 'string' },
  'root-key-type': { type: 'string', default: 'ecdsa-p384' },
  'key-type': { type: 'string', default: 'ecdsa-p256' },
  organization: { type: 'string', default: 'mayfly' },
  'root-cn': { type: 'string', default: 'mayfly root' },
  cn: { type: 'string', default: 'mayfly intermediate' },
  'root-validity-days': { type: 'string', default: '3650' },
  'validity-days': { type: 'string', default: '730' },
  url: { type: 'string', default: 'http://localhost:8080' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

const DAY_MS = 24 * 3600 * 1000;

const FILES = {
  root: 'root.pem',
  chain: 'chain.pem',
  next: 'next-chain.pem',
  previous: 'previous-chain.pem',
  fragment: 'trusted-root-fragment.json',
} as const;

class UsageError extends Error {}

function days(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 36500)
    throw new UsageError(`--${flag} must be a whole number of days (1 to 36500)`);
  return n;
}

function pem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

function readChain(path: string): X509Certificate[] {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/** Replaces a file in one rename, so a watcher never reads half of it. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function openKeys(values: Values, out: string): CeremonyKeys {
  if (values['file-keys']) return new FileKeys(out);
  const module = values.module ?? process.env.MAYFLY_CA_PKCS11_MODULE;
  const tokenLabel = values['token-label'] ?? process.env.MAYFLY_CA_PKCS11_TOKEN_LABEL;
  const pinFile = values['pin-file'] ?? process.env.MAYFLY_CA_PKCS11_PIN_FILE;
  if (!module || !tokenLabel || !pinFile)
    throw new UsageError(
      'name the token (--module, --token-label, --pin-file) or pass --file-keys',
    );
  let pin: string;
  try {
    pin = readFileSync(pinFile, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw new UsageError(`cannot read the PIN file ${pinFile}`);
  }
  return new TokenKeys({ module, tokenLabel, pin });
}

const samePublicKey = (cert: X509Certificate, signer: CertificateSigner): boolean =>
  cert.publicKey
    .export({ type: 'spki', format: 'der' })
    .equals(signer.publicKey.export({ type: 'spki', format: 'der' }));

async function intermediate(
  values: Values,
  keys: CeremonyKeys,
  root: X509Certificate,
  rootSigner: CertificateSigner,
  label: string,
): Promise<X509Certificate> {
  const key = keys.generate(label, parseKeySpec(values['key-type']!));
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(
    Math.min(
      notBefore.getTime() + days(values['validity-days']!, 'validity-days') * DAY_MS,
      Date.parse(root.validTo),
    ),
  );
  const der = await buildCaCertificate({
    subject: { organization: values.organization, commonName: values.cn! },
    issuer: subjectOf(root),
    subjectKey: key.publicKey,
    issuerSigner: rootSigner,
    pathLen: 0,
    codeSigningEku: true,
    notBefore,
    notAfter,
  });
  const cert = new X509Certificate(der);
  if (!cert.checkIssued(root) || !cert.verify(root.publicKey))
    throw new CeremonyError('the new intermediate does not verify under the root');
  return cert;
}

function subjectOf(cert: X509Certificate): { organization?: string; commonName: string } {
  const o = /(?:^|\n)O=([^\n]*)/.exec(cert.subject)?.[1];
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? '';
  return { ...(o ? { organization: o } : {}), commonName: cn };
}

/** A Sigstore TrustedRoot fragment: one certificateAuthorities entry per chain. */
function fragment(chains: readonly X509Certificate[][], url: string): string {
  return `${JSON.stringify(
    {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      certificateAuthorities: chains.map((chain) => {
        const subject = subjectOf(chain[0]!);
        return {
          subject: { organization: subject.organization ?? '', commonName: subject.commonName },
          uri: url,
          certChain: { certificates: chain.map((c) => ({ rawBytes: c.raw.toString('base64') })) },
          validFor: {
            start: new Date(chain[0]!.validFrom).toISOString(),
            end: new Date(chain[0]!.validTo).toISOString(),
          },
        };
      }),
    },
    null,
    2,
  )}\n`;
}

async function create(values: Values, out: string, keys: CeremonyKeys): Promise<number> {
  const rootLabel = values['root-key-label']!;
  const label = values['key-label'] ?? 'mayfly-intermediate-1';
  const chainPath = join(out, FILES.chain);
  const rootTaken = keys.exists(rootLabel);
  const labelTaken = keys.exists(label);
  if (rootTaken || labelTaken || existsSync(chainPath) || existsSync(join(out, FILES.root))) {
    // Idempotent: the same ceremony again finds its own results and stops.
    const chain = readChain(chainPath);
    if (
      rootTaken &&
      labelTaken &&
      chain.length === 2 &&
      samePublicKey(chain[0]!, keys.load(label)) &&
      samePublicKey(chain[1]!, keys.load(rootLabel))
    ) {
      process.stdout.write(
        `already created: ${chainPath} matches keys ${rootLabel} and ${label} in ${keys.where}; nothing to do\n`,
      );
      return 0;
    }
    const taken = [rootTaken && rootLabel, labelTaken && label].filter(Boolean);
    throw new CeremonyError(
      taken.length > 0
        ? `key label ${taken.map((t) => JSON.stringify(t)).join(' and ')} already exists in ${keys.where} without a matching ${chainPath}; refusing to overwrite it`
        : `${out} already holds a CA (${FILES.chain} or ${FILES.root}); refusing to overwrite it`,
    );
  }
  const generated: string[] = [];
  let root: X509Certificate;
  let inter: X509Certificate;
  try {
    const rootKey = keys.generate(rootLabel, parseKeySpec(values['root-key-type']!));
    generated.push(rootLabel);
    const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
    const rootName = { organization: values.organization, commonName: values['root-cn']! };
    const rootDer = await buildCaCertificate({
      subject: rootName,
      issuer: rootName,
      subjectKey: rootKey.publicKey,
      issuerSigner: rootKey,
      pathLen: 1,
      codeSigningEku: false,
      notBefore,
      notAfter: new Date(
        notBefore.getTime() + days(values['root-validity-days']!, 'root-validity-days') * DAY_MS,
      ),
    });
    root = new X509Certificate(rootDer);
    if (!root.checkIssued(root) || !root.verify(root.publicKey))
      throw new CeremonyError('the root does not verify under its own key');
    generated.push(label);
    inter = await intermediate(values, keys, root, rootKey, label);
    writeFileSync(join(out, FILES.root), pem(root.raw), { flag: 'wx' });
    writeFileSync(chainPath, pem(inter.raw) + pem(root.raw), { flag: 'wx' });
    replaceFile(join(out, FILES.fragment), fragment([[inter, root]], values.url!));
  } catch (err) {
    // A ceremony that fails half-way leaves no key and no file behind.
    for (const l of generated) keys.destroy(l);
    throw err;
  }
  const fileKeys = keys instanceof FileKeys ? keys : undefined;
  process.stdout.write(
    [
      `created in ${out}:`,
      `  ${FILES.chain}  intermediate + root: the server's MAYFLY_CA_CERT`,
      `  ${FILES.root}  the root alone: give it to verifiers`,
      `  ${FILES.fragment}  certificateAuthorities for a Sigstore trusted root`,
      `root:         ${root.subject.replace(/\n/g, ', ')}  fingerprint SHA256 ${root.fingerprint256}`,
      `intermediate: ${inter.subject.replace(/\n/g, ', ')}  valid until ${inter.validTo}`,
      '',
      'store offline (two people, two places):',
      `  - ${FILES.root} and its SHA-256 fingerprint above`,
      fileKeys
        ? `  - the root key ${fileKeys.keyFile(rootLabel)}: move it off this machine now; the server needs only ${fileKeys.keyFile(label)}`
        : `  - the token's backup or its HSM key-backup material holding key "${rootLabel}", with the SO PIN and the user PIN`,
      `  - the labels: root "${rootLabel}", intermediate "${label}" (CKA_ID = subject key identifier)`,
      `  - this output, signed and dated by the ceremony's witnesses`,
      '',
      fileKeys
        ? `server: MAYFLY_CA=file MAYFLY_CA_CERT=${chainPath} MAYFLY_CA_KEY=${fileKeys.keyFile(label)}`
        : `server: MAYFLY_CA=pkcs11 MAYFLY_CA_CERT=${chainPath} MAYFLY_CA_PKCS11_MODULE MAYFLY_CA_PKCS11_TOKEN_LABEL MAYFLY_CA_PKCS11_PIN_FILE (MAYFLY_CA_PKCS11_KEY_LABEL unset: the key is found by the certificate)`,
      '',
    ].join('\n'),
  );
  return 0;
}

async function rotate(values: Values, out: string, keys: CeremonyKeys): Promise<number> {
  const label = values['key-label'];
  if (!label) throw new UsageError('rotate needs --key-label for the new intermediate key');
  const [root] = readChain(join(out, FILES.root));
  const current = readChain(join(out, FILES.chain));
  if (!root || current.length === 0)
    throw new CeremonyError(`no CA in ${out}: run mayfly ca create first`);
  const rootKey = keys.load(values['root-key-label']!);
  if (!samePublicKey(root, rootKey))
    throw new CeremonyError(
      `the key "${values['root-key-label']}" is not the key of ${join(out, FILES.root)}`,
    );
  const nextPath = join(out, FILES.next);
  const staged = readChain(nextPath);
  if (keys.exists(label)) {
    if (staged.length === 2 && samePublicKey(staged[0]!, keys.load(label))) {
      process.stdout.write(
        `already staged: ${nextPath} holds the intermediate of key ${label}; nothing to do\n`,
      );
      return 0;
    }
    throw new CeremonyError(
      `a key labelled ${JSON.stringify(label)} already exists in ${keys.where}; refusing to overwrite it`,
    );
  }
  if (staged.length > 0)
    throw new CeremonyError(`${nextPath} already holds a staged chain: promote it first`);
  let inter: X509Certificate;
  try {
    inter = await intermediate(values, keys, root, rootKey, label);
  } catch (err) {
    keys.destroy(label);
    throw err;
  }
  replaceFile(nextPath, pem(inter.raw) + pem(root.raw));
  replaceFile(join(out, FILES.fragment), fragment([current, [inter, root]], values.url!));
  process.stdout.write(
    [
      `staged ${nextPath}: ${inter.subject.replace(/\n/g, ', ')} (key "${label}"), valid until ${inter.validTo}`,
      `1. publish it (MAYFLY_CA_NEXT_CERT=${nextPath}); verifiers fetch the trust bundle with both chains`,
      `2. when they have it: mayfly ca promote --out ${out} (the new chain signs, the old one stays published as ${FILES.previous})`,
      '',
    ].join('\n'),
  );
  return 0;
}

function promote(out: string): number {
  const nextPath = join(out, FILES.next);
  const chainPath = join(out, FILES.chain);
  const next = readChain(nextPath);
  const current = readChain(chainPath);
  if (next.length === 0)
    throw new CeremonyError(`nothing staged in ${nextPath}: run mayfly ca rotate first`);
  // Every state in between publishes both chains: previous first, then the swap, then next
  // emptied.
  replaceFile(join(out, FILES.previous), readFileSync(chainPath, 'utf8'));
  replaceFile(chainPath, readFileSync(nextPath, 'utf8'));
  replaceFile(nextPath, '');
  process.stdout.write(
    `promoted: ${chainPath} now signs (${next[0]!.subject.replace(/\n/g, ', ')}); ${FILES.previous} keeps ${current[0]?.subject.replace(/\n/g, ', ') ?? 'the old chain'} published (MAYFLY_CA_PREVIOUS_CERT)\n`,
  );
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  let values: Values;
  try {
    values = parseArgs({
      args: rest,
      options: OPTIONS,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`mayfly ca: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help || sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (!['create', 'rotate', 'promote'].includes(sub)) {
    process.stderr.write(`mayfly ca: unknown subcommand "${sub}"\n${HELP}`);
    return 2;
  }
  if (!values.out) {
    process.stderr.write(`mayfly ca ${sub}: --out DIR is required\n`);
    return 2;
  }
  const out = resolve(values.out);
  let keys: CeremonyKeys | undefined;
  try {
    if (sub === 'promote') return promote(out);
    mkdirSync(out, { recursive: true, mode: 0o700 });
    keys = openKeys(values, out);
    return sub === 'create' ? await create(values, out, keys) : await rotate(values, out, keys);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`mayfly ca ${sub}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CeremonyError || err instanceof Pkcs11ConfigError) {
      process.stderr.write(`mayfly ca ${sub}: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    keys?.close();
  }
}
