import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { experimental, ServerCredentials, type experimental as Experimental } from '@grpc/grpc-js';
import type { Logger } from '../../common/logger';

/**
 * TLS for the gRPC port, from a certificate (PEM chain) and a key file, reloaded without a
 * restart: the files' folder is watched and the files are re-read on an interval too. A
 * new pair is used only when the key matches the certificate; a bad pair (half-written,
 * mismatched) is refused with a log line and the old pair keeps serving. New connections
 * get the new pair; open ones keep theirs.
 */

export interface GrpcTlsFiles {
  readonly cert: string;
  readonly key: string;
  /** Re-read period besides watching; 0: only when the folder watcher fires. */
  readonly reloadIntervalMs: number;
}

export class TlsLoadError extends Error {}

interface Pair {
  readonly certificate: Buffer;
  readonly privateKey: Buffer;
}

/** Reads and checks a pair: parsable certificate, parsable key, and they belong together. */
export function readPair(files: Pick<GrpcTlsFiles, 'cert' | 'key'>): Pair {
  let certificate: Buffer;
  let privateKey: Buffer;
  try {
    certificate = readFileSync(files.cert);
    privateKey = readFileSync(files.key);
  } catch (err) {
    throw new TlsLoadError(`cannot read the gRPC TLS files: ${(err as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certificate);
  } catch (err) {
    throw new TlsLoadError(`the gRPC TLS certificate does not parse: ${(err as Error).message}`);
  }
  let key;
  try {
    key = createPrivateKey(privateKey);
  } catch (err) {
    throw new TlsLoadError(`the gRPC TLS key does not parse: ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key))
    throw new TlsLoadError('the gRPC TLS key does not match its certificate');
  return { certificate, privateKey };
}

export class ReloadingTlsProvider implements Experimental.CertificateProvider {
  private current: Pair;
  private readonly listeners = new Set<Experimental.IdentityCertificateUpdateListener>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly files: GrpcTlsFiles,
    private readonly logger: Logger,
    private readonly onReload?: (result: 'reloaded' | 'refused') => void,
  ) {
    this.current = readPair(files);
  }

  start(): void {
    try {
      this.watcher = watch(dirname(this.files.cert), () => this.reload());
      this.watcher.unref();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'gRPC TLS files cannot be watched');
    }
    if (this.files.reloadIntervalMs > 0) {
      this.timer = setInterval(() => this.reload(), this.files.reloadIntervalMs);
      this.timer.unref();
    }
  }

  /** Re-reads the files; a changed, valid pair replaces the one in use. */
  reload(): void {
    let next: Pair;
    try {
      next = readPair(this.files);
    } catch (err) {
      this.logger.warn({ reason: (err as Error).message }, 'gRPC TLS reload refused');
      this.onReload?.('refused');
      return;
    }
    if (
      next.certificate.equals(this.current.certificate) &&
      next.privateKey.equals(this.current.privateKey)
    )
      return;
    this.current = next;
    this.logger.info('gRPC TLS certificate reloaded');
    this.onReload?.('reloaded');
    for (const listener of this.listeners) listener({ ...next });
  }

  close(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
  }

  addCaCertificateListener(): void {}
  removeCaCertificateListener(): void {}
  addIdentityCertificateListener(listener: Experimental.IdentityCertificateUpdateListener): void {
    this.listeners.add(listener);
    // Later, not now: grpc-js registers its own watcher only after this returns, and a
    // pair delivered before that would never reach the listening socket.
    const pair = this.current;
    setImmediate(() => {
      if (this.listeners.has(listener)) listener({ ...pair });
    });
  }
  removeIdentityCertificateListener(
    listener: Experimental.IdentityCertificateUpdateListener,
  ): void {
    this.listeners.delete(listener);
  }

  /** Server credentials that follow this provider (no client certificates asked). */
  credentials(): ServerCredentials {
    // grpc-js names the parameters (ca, identity) but builds (identity, ca): the provider
    // goes first and the CA provider is none. The TLS test proves the handshake works.
    return experimental.createCertificateProviderServerCredentials(
      this,
      null as unknown as Experimental.CertificateProvider,
      false,
    );
  }
}
