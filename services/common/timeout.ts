/**
 * `promise`, or the error `onTimeout` makes once `ms` have passed without an answer. The
 * timer is cleared either way; an answer that comes later is dropped (whoever waited has
 * already failed). For calls to things that can hang: a rate-limit store, a CA signer.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
