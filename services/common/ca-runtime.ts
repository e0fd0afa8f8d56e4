/**
 * How the CA's process is started: the node flags and the environment that `npm start`, the
 * container image (Dockerfile), `mayfly serve` and bench/ all use, so that what is measured
 * is what runs. Measured in bench/results/memory.md (issue #18: peak RSS within 2 × Fulcio's,
 * CPU per certificate unchanged):
 *
 * - No `--max-semi-space-size`: a 4 MB semi-space (young generation 8 MB instead of 32 MB)
 *   took the peak from 123 to 94 MB at no CPU cost while requests take milliseconds, but with
 *   CT a request waits for the log's next batch (about 100 ms), everything it holds survives
 *   the frequent scavenges and is promoted, and the CA's CPU per certificate went from 1.3–1.6
 *   to 2.6–2.8 ms (bench/results/ct-service-postgres.md). An operator without CT who wants the
 *   30 MB can add it (NODE_OPTIONS or the command line).
 * - `--heap-growing-percent=30`: so the old generation's next limit is 1.3 × what survived
 *   the last full collection (V8 picks 1.1 to 4 ×, up to 4 × on a fast machine).
 *   `--optimize-for-size` gets about the same memory but cost 39 % more CPU per certificate;
 *   a 2 MB semi-space with the same growing factor cost 30 to 45 % (full collections too
 *   often). Heap flags cannot be set from inside the process (v8.setFlagsFromString after
 *   start-up leaves the heap as configured), hence the command line.
 * - `MALLOC_ARENA_MAX=2`: glibc's malloc keeps two arenas instead of eight per core for the
 *   V8 worker threads and libuv's pool; read by glibc when the process starts, so it must be
 *   in the environment. An operator's own value wins.
 */
export const CA_NODE_ARGS: readonly string[] = ['--heap-growing-percent=30'];

export const CA_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** `env` with the CA's runtime variables added where `env` does not set them. */
export function caProcessEnv<T extends Record<string, string | undefined>>(env: T): T {
  return { ...CA_ENV, ...env };
}
