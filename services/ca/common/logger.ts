import pino from 'pino';

export type Logger = pino.Logger;
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Paths that could hold a token, a proof or key material if somebody logs a request
 * object by mistake. Censoring them here is the second line of defence; the first is
 * never logging them at all.
 */
export const REDACT_PATHS: readonly string[] = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'credentials',
  '*.credentials',
  'proofOfPossession',
  '*.proofOfPossession',
  'signedEmailAddress',
  '*.signedEmailAddress',
  'privateKey',
  '*.privateKey',
  'password',
  '*.password',
];

export function createLogger(
  level: LogLevel = 'info',
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'mayfly' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

export const silentLogger: Logger = pino({ level: 'silent' });
