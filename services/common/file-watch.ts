import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from './logger';

/**
 * Tells a reloader when its files may have changed: the folders holding them are watched
 * (a Kubernetes ConfigMap update swaps the folder's `..data` symlink, an editor renames a
 * temporary file over the original: any event in the folder is worth a read), events are
 * debounced (a writer may touch several files), and a timer fires too, in case a watch
 * event is missed (network filesystems, some container runtimes). The reloader reads and
 * compares; this only says when.
 */

export type ChangeTrigger = 'timer' | 'file';

export interface FileWatchOptions {
  /** The files; their folders are watched. Undefined entries are skipped. */
  readonly paths: readonly (string | undefined)[];
  /** Timer period; 0 = no timer. */
  readonly intervalMs: number;
  /** Watch the folders (default); false: the timer alone. */
  readonly watch?: boolean;
  /** Quiet time after a folder event before `onChange` (default 200 ms). */
  readonly debounceMs?: number;
  /** What the log lines call the files ("CA", "identity config"). */
  readonly what: string;
  readonly logger: Logger;
  readonly onChange: (trigger: ChangeTrigger) => void;
}

export interface FileWatch {
  close(): void;
}

export function watchFiles(options: FileWatchOptions): FileWatch {
  const { logger, what, onChange } = options;
  const watchers: FSWatcher[] = [];
  let closed = false;
  let debounce: NodeJS.Timeout | undefined;
  let timer: NodeJS.Timeout | undefined;
  if (options.intervalMs > 0) {
    timer = setInterval(() => {
      if (!closed) onChange('timer');
    }, options.intervalMs);
    timer.unref();
  }
  const schedule = (): void => {
    if (closed) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (!closed) onChange('file');
    }, options.debounceMs ?? 200);
    debounce.unref();
  };
  if (options.watch !== false) {
    const dirs = new Set(options.paths.filter((p): p is string => !!p).map((p) => dirname(p)));
    for (const dir of dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, schedule);
        watcher.on('error', (err) => {
          logger.warn(
            { dir, err: err.message },
            `${what} folder watch failed; relying on the re-read timer`,
          );
          watcher.close();
        });
        watchers.push(watcher);
      } catch (err) {
        logger.warn(
          { dir, err: (err as Error).message },
          `cannot watch the ${what} folder; relying on the re-read timer`,
        );
      }
    }
  }
  return {
    close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(debounce);
      for (const watcher of watchers) watcher.close();
      watchers.length = 0;
    },
  };
}
