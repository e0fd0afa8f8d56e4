import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { watchFiles, type FileWatch } from '../../common/file-watch';
import { IdentityConfigError, type IdentityConfig } from '../config/identity-config';
import { parseIdentityConfig } from './identity-config';
import { IssuerPool, type IdentityOptions, type IssuerDescription } from './issuer-pool';
import type { Principal } from './principal';

/**
 * The identity config in service: the current IssuerPool, swapped atomically when the
 * config file changes (a Kubernetes ConfigMap update swaps a `..data` symlink in the
 * file's folder) or on SIGHUP. A new file is parsed and validated with Fulcio's rules and
 * a new pool is built off to the side; only then does it replace the old one, which keeps
 * serving requests already under way. A file that fails is refused with a log line and
 * the old config keeps serving. Verifiers of issuers that did not change are carried
 * over, so a reload costs no discovery for them.
 */

export type ReloadResult = 'reloaded' | 'unchanged' | 'refused';

export interface IdentityServiceOptions extends IdentityOptions {
  /** The Fulcio-format file to (re)load; without it the service never reloads. */
  readonly path?: string;
  /** Applied to every config read from the file (e.g. to add the development issuer). */
  readonly transform?: (config: IdentityConfig) => IdentityConfig;
  /** Re-read period besides watching the folder; 0 = no timer. */
  readonly reloadIntervalMs?: number;
  /** Quiet time after a watch event before reading. */
  readonly debounceMs?: number;
  /** Told about every reload attempt (for metrics and tests). */
  readonly onReload?: (result: ReloadResult, trigger: string) => void;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class IdentityService {
  private pool: IssuerPool;
  private fileDigest: string | undefined;
  private refusedDigest: string | undefined;
  private watching: FileWatch | undefined;
  private closed = false;

  /**
   * @param initial the config to start with; when absent it is read from `options.path`
   *   (and a bad file throws IdentityConfigError: the service does not start)
   */
  constructor(
    initial: IdentityConfig | undefined,
    private readonly options: IdentityServiceOptions,
  ) {
    let config = initial;
    if (!config) {
      if (!options.path) throw new Error('IdentityService needs a config or a path');
      const text = this.read(options.path);
      config = this.parse(text);
      this.fileDigest = digest(text);
    }
    this.pool = new IssuerPool(config, options);
  }

  /** The pool serving now. */
  get current(): IssuerPool {
    return this.pool;
  }

  get config(): IdentityConfig {
    return this.pool.config;
  }

  authenticate(token: string): Promise<Principal> {
    return this.pool.authenticate(token);
  }

  claimedIssuer(token: string): string | undefined {
    return this.pool.claimedIssuer(token);
  }

  issuerLabel(iss: string): string | undefined {
    return this.pool.issuerLabel(iss);
  }

  describe(): IssuerDescription[] {
    return this.pool.describe();
  }

  warmUp(): Promise<void> {
    return this.pool.warmUp();
  }

  private read(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new IdentityConfigError([
        `cannot read identity config ${path}: ${(err as Error).message}`,
      ]);
    }
  }

  private parse(text: string): IdentityConfig {
    const config = parseIdentityConfig(text, this.options.path);
    return this.options.transform ? this.options.transform(config) : config;
  }

  /**
   * Reads the file again and, when it changed and is valid, swaps in a new pool. Never
   * throws: a bad file is logged and refused.
   */
  reload(trigger = 'manual'): ReloadResult {
    const { path, logger } = this.options;
    if (!path || this.closed) return 'unchanged';
    let result: ReloadResult;
    try {
      const text = this.read(path);
      const next = digest(text);
      // The same file again (or the same bad file, already refused and logged) is left
      // alone unless an operator asks with SIGHUP.
      if ((next === this.fileDigest || next === this.refusedDigest) && trigger !== 'sighup') {
        result = 'unchanged';
      } else {
        this.refusedDigest = next;
        const config = this.parse(text);
        const pool = new IssuerPool(config, this.options, this.pool);
        this.pool = pool;
        this.fileDigest = next;
        this.refusedDigest = undefined;
        result = 'reloaded';
        logger.info(
          {
            trigger,
            issuers: config.oidcIssuers.size,
            metaIssuers: config.metaIssuers.size,
            ciProviders: config.ciIssuerMetadata.size,
          },
          'identity config reloaded',
        );
        void pool.warmUp();
      }
    } catch (err) {
      result = 'refused';
      const problems = err instanceof IdentityConfigError ? err.problems : [(err as Error).message];
      logger.error(
        { trigger, path, problems },
        'identity config refused; the previous config keeps serving',
      );
    }
    this.options.onReload?.(result, trigger);
    return result;
  }

  /** Watches the file's folder and starts the re-read timer. */
  start(): void {
    const { path, logger } = this.options;
    if (!path || this.closed || this.watching) return;
    this.watching = watchFiles({
      paths: [path],
      intervalMs: this.options.reloadIntervalMs ?? 0,
      ...(this.options.debounceMs === undefined ? {} : { debounceMs: this.options.debounceMs }),
      what: 'identity config',
      logger,
      onChange: (trigger) => this.reload(trigger),
    });
  }

  close(): void {
    this.closed = true;
    this.watching?.close();
  }
}
