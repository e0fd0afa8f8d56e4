/**
 * How the CA's process is started: the node flags and the environment that `npm start`, the
 * container image (Dockerfile), `mayfly serve` and bench/ all use, so that what is measured
 * is what runs. Measured in bench/results/memory.md (issue #18: peak RSS within 2 × Fulcio's):
 *
 * - `--optimize-for-size`: V8 keeps a 1 MB semi-space (instead of growing the young
 *   generation to 32 MB under load) and grows the old generation slowly; without it the
 *   peak under load is some 40 MB higher. It cannot be set from inside the process
 *   (v8.setFlagsFromString after start-up leaves the young generation as configured).
 * - `MALLOC_ARENA_MAX=2`: glibc's malloc keeps two arenas instead of eight per core for the
 *   V8 worker threads and libuv's pool; read by glibc when the process starts, so it must be
 *   in the environment. An operator's own value wins.
 */
export const CA_NODE_ARGS: readonly string[] = ['--optimize-for-size'];

export const CA_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** `env` with the CA's runtime variables added where `env` does not set them. */
export function caProcessEnv<T extends Record<string, string | undefined>>(env: T): T {
  return { ...CA_ENV, ...env };
}
