import pino from 'pino';

export type Logger = pino.Logger;
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Keys that could hold a token, a proof or key material if somebody logs a request object
 * by mistake. They are censored at the top level of a log line, one level down, and in
 * `req.headers`. Censoring them is the second line of defence; the first is never logging
 * them at all.
 */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'token',
  'authorization',
  'credentials',
  'proofOfPossession',
  'signedEmailAddress',
  'privateKey',
  'password',
]);

export const CENSOR = '[redacted]';

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A copy of `record` with its secret keys censored, or `record` itself when it has none. */
function censorKeys(
  record: Record<string, unknown>,
  nested: (key: string, value: unknown) => unknown,
): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const value = record[key];
    const replaced = SECRET_KEYS.has(key) ? CENSOR : nested(key, value);
    if (replaced !== value) {
      copy ??= { ...record };
      copy[key] = replaced;
    }
  }
  return copy ?? record;
}

/**
 * The object of a log line (or a child logger's bindings) with secrets censored. It never
 * changes the caller's object. This replaces pino's path-based `redact`, which walked every
 * wildcard path on every line and cost about as much as the rest of the line.
 */
export function redactSecrets(object: Record<string, unknown>): Record<string, unknown> {
  return censorKeys(object, (key, value) => {
    if (!isPlainRecord(value)) return value;
    return censorKeys(value, (innerKey, inner) =>
      key === 'req' && innerKey === 'headers' && isPlainRecord(inner)
        ? censorKeys(inner, (_k, v) => v)
        : inner,
    );
  });
}

/** pino options shared by every mayfly logger (operational and audit). */
export function baseLoggerOptions(
  level: LogLevel,
  base: Record<string, string>,
): pino.LoggerOptions {
  return {
    level,
    base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { log: redactSecrets },
    // pino applies no formatter to a child logger's bindings, but it does apply serializers.
    serializers: Object.fromEntries([...SECRET_KEYS].map((key) => [key, () => CENSOR])),
  };
}

/**
 * The operational logger. By default it writes to stdout asynchronously: lines that arrive
 * while a write is in flight go out together in the next one (at most 4,096 bytes, a pipe's
 * atomic write size, so worker processes sharing stdout never split each other's lines),
 * and pino flushes what is left when the process exits. A synchronous write per line cost
 * a system call per request. The audit log stays synchronous (audit-log.ts).
 */
export function createLogger(
  level: LogLevel = 'info',
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    baseLoggerOptions(level, { service: 'mayfly' }),
    destination ?? pino.destination({ dest: 1, sync: false, maxWrite: 4096 }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
