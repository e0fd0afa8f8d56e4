/**
 * How the CA's process is started: the node flags and the environment that `npm start`, the
 * container image (Dockerfile), `mayfly serve` and bench/ all use, so that what is measured
 * is what runs. Measured in bench/results/memory.md (issue #18: peak RSS within 2 × Fulcio's,
 * CPU per certificate unchanged):
 *
 * - No `--max-semi-space-size`. A 4 MB semi-space (young generation 8 MB instead of 32 MB)
 *   took the peak from 133 to 95 MB, but on a quiet machine it cost 15.6 % more CPU per
 *   certificate (every round pair +7 to +25 %, 894 vs 1,058 certificates/s; results in
 *   bench/results/memory.md, addendum), and more with CT, where requests live ~100 ms and
 *   survive the frequent scavenges. An operator who prefers the 38 MB can add it.
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
