import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../clock';
import { watchFiles, type FileWatch } from '../file-watch';
import type { Logger } from '../logger';
import {
  CaLoadError,
  parsePublishedChain,
  signerFromContents,
  type FileCaPaths,
} from './file-signer';
import type { CaSigner, SignerSource, SigningState } from './signer';

/**
 * The `file` CA, re-read when its files change: a Kubernetes Secret update (which swaps
 * the volume's `..data` symlink, so every file changes at once), or files replaced by hand.
 *
 * The folders holding the files are watched, and the files are also re-read on a timer in
 * case a watch event is missed (network filesystems, some container runtimes). A new set is
 * checked exactly as at start (chain, key, key policy, dates); only when it passes does it
 * replace the current state, in one assignment. A bad set is refused and logged, and the
 * previous CA keeps signing. A request holds the state it started with until it is done.
 */

export interface ReloadingCaPaths extends Omit<FileCaPaths, 'key'> {
  /** The file CA's key; absent when the key lives elsewhere (`signerFrom`, e.g. an HSM). */
  readonly key?: string | undefined;
  /** The next CA's chain: published in the trust bundle, never signing. */
  readonly nextCert?: string | undefined;
  /** A retired CA's chain: still published after a rotation. */
  readonly previousCert?: string | undefined;
}

export type ReloadResult = 'reloaded' | 'unchanged' | 'refused';

export interface ReloadingSourceOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Re-read period besides the watch; 0 = no timer. */
  readonly intervalMs: number;
  /** Quiet time after a watch event before reading (a writer may touch several files). */
  readonly debounceMs?: number;
  /** Watch the folders (default true). */
  readonly watch?: boolean;
  /**
   * Makes the signer from the files read (default: the file CA, chain and key). The
   * PKCS#11 CA binds the chain to its key in the token here, and proves the pair matches.
   */
  readonly signerFrom?: (contents: ReadContents) => CaSigner;
  /** Called after every attempt that found changed files, and at the first load. */
  readonly onReload?: (result: ReloadResult, state: SigningState) => void;
}

/** The files as read: the chain always, the key and its password when configured. */
export interface ReadContents {
  readonly certPem: string;
  readonly keyPem?: string | undefined;
  readonly password?: string | undefined;
}

interface Snapshot {
  readonly fingerprint: string;
  readonly texts: ReadonlyMap<string, string | undefined>;
}

/** Reads every file once; a missing optional file reads as undefined. */
function snapshot(paths: ReloadingCaPaths): Snapshot {
  const hash = createHash('sha256');
  const texts = new Map<string, string | undefined>();
  const entries: [string, string | undefined, boolean][] = [
    ['cert', paths.cert, true],
    ['key', paths.key, true],
    ['password', paths.keyPasswordFile, true],
    ['next', paths.nextCert, false],
    ['previous', paths.previousCert, false],
  ];
  for (const [name, path, required] of entries) {
    let text: string | undefined;
    if (path) {
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        if (required || code !== 'ENOENT')
          throw new CaLoadError(`cannot read ${name} file ${path}: ${code}`);
      }
    }
    texts.set(name, text);
    hash.update(`${name}\0${text === undefined ? '-' : `+${text}`}\0`);
  }
  return { fingerprint: hash.digest('hex'), texts };
}

function stateFrom(
  snap: Snapshot,
  clock: Clock,
  signerFrom: ((contents: ReadContents) => CaSigner) | undefined,
): SigningState {
  const contents = {
    certPem: snap.texts.get('cert')!,
    keyPem: snap.texts.get('key'),
    password: snap.texts.get('password')?.replace(/\r?\n$/, ''),
  };
  let signer: CaSigner;
  if (signerFrom) signer = signerFrom(contents);
  else {
    if (contents.keyPem === undefined) throw new CaLoadError('the file CA has no key file');
    signer = signerFromContents({ ...contents, keyPem: contents.keyPem }, clock);
  }
  const published: Uint8Array[][] = [];
  for (const [name, what] of [
    ['next', 'next CA chain'],
    ['previous', 'previous CA chain'],
  ] as const) {
    const text = snap.texts.get(name);
    const chain = text === undefined ? undefined : parsePublishedChain(text, what);
    if (chain) published.push(chain);
  }
  return { signer, publishedChains: published };
}

export class ReloadingFileSource implements SignerSource {
  private state: SigningState;
  private fingerprint: string;
  private refusedFingerprint: string | undefined;
  private watching: FileWatch | undefined;
  private closed = false;

  /** Loads the files (throws CaLoadError when they are not a valid CA, as at start). */
  constructor(
    private readonly paths: ReloadingCaPaths,
    private readonly options: ReloadingSourceOptions,
  ) {
    const snap = snapshot(paths);
    this.state = stateFrom(snap, options.clock, options.signerFrom);
    this.fingerprint = snap.fingerprint;
    options.onReload?.('reloaded', this.state);
  }

  current(): SigningState {
    return this.state;
  }

  /** Starts watching and the re-read timer. */
  start(): this {
    if (this.closed || this.watching) return this;
    this.watching = watchFiles({
      paths: [
        this.paths.cert,
        this.paths.key,
        this.paths.keyPasswordFile,
        this.paths.nextCert,
        this.paths.previousCert,
      ],
      intervalMs: this.options.intervalMs,
      watch: this.options.watch !== false,
      ...(this.options.debounceMs === undefined ? {} : { debounceMs: this.options.debounceMs }),
      what: 'CA',
      logger: this.options.logger,
      onChange: () => this.reload(),
    });
    return this;
  }

  /** Re-reads the files now; public so operators' tooling and tests need not wait. */
  reload(): ReloadResult {
    if (this.closed) return 'unchanged';
    let snap: Snapshot;
    try {
      snap = snapshot(this.paths);
    } catch (err) {
      return this.refuse(`read-error:${(err as Error).message}`, err);
    }
    if (snap.fingerprint === this.fingerprint) return 'unchanged';
    if (snap.fingerprint === this.refusedFingerprint) return 'refused';
    let next: SigningState;
    try {
      next = stateFrom(snap, this.options.clock, this.options.signerFrom);
    } catch (err) {
      return this.refuse(snap.fingerprint, err);
    }
    const before = this.state;
    this.state = next;
    this.fingerprint = snap.fingerprint;
    this.refusedFingerprint = undefined;
    this.options.logger.info(
      {
        issuer: subjectOf(next),
        previousIssuer: subjectOf(before),
        publishedChains: next.publishedChains.length,
      },
      'CA files changed: now signing with the reloaded CA',
    );
    this.options.onReload?.('reloaded', next);
    return 'reloaded';
  }

  private refuse(fingerprint: string, err: unknown): ReloadResult {
    if (fingerprint !== this.refusedFingerprint) {
      // Logged once per distinct bad set of files, not on every timer tick.
      this.refusedFingerprint = fingerprint;
      this.options.logger.error(
        { reason: err instanceof Error ? err.message : String(err) },
        'CA files changed but were refused; still signing with the previous CA',
      );
      this.options.onReload?.('refused', this.state);
    }
    return 'refused';
  }

  close(): void {
    this.closed = true;
    this.watching?.close();
  }
}

function subjectOf(state: SigningState): string {
  const first = state.signer.chain[0];
  return first ? new X509Certificate(first).subject.replace(/\n/g, ', ') : '';
}
