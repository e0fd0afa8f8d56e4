import type { Clock } from '../common/clock';
import type { Logger } from '../common/logger';
import type { CaSigner } from '../common/signer/signer';
import { withTimeout } from '../common/timeout';
import { randomSerialBytes } from './certificates';
import type { ClockCheck } from './clock-monitor';
import { TsaError } from './errors';
import type { TsaMetrics } from './metrics';
import { parseDerRequest, parseJsonRequest, type TimestampRequest } from './request';
import { TokenBuilder } from './token';

/**
 * The timestamp flow, free of HTTP: pick the decoder by media type, check the request, check
 * the clock, make a serial, build and sign the token, write the audit line. Every refusal is
 * a TsaError; anything else is a bug or a signer failure (500).
 */

export type RequestEncoding = 'der' | 'json';

/** Media type (without parameters, lower case) -> encoding, as the reference routes them. */
export function encodingOf(contentType: string | undefined): RequestEncoding | undefined {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (media === 'application/timestamp-query') return 'der';
  if (media === 'application/json') return 'json';
  return undefined;
}

export interface TimestampAuditRecord {
  readonly hashAlgorithm: string;
  /** Hex of the imprint. */
  readonly digest: string;
  /** Hex of the token's serial number. */
  readonly serial: string;
  readonly genTime: string;
}

export interface TimestampServiceDeps {
  readonly signer: CaSigner;
  readonly policy: string;
  readonly includeChain: boolean;
  readonly clock: Clock;
  readonly clockCheck: ClockCheck;
  readonly metrics: TsaMetrics;
  readonly audit: Logger;
  readonly signTimeoutMs?: number;
}

export class TimestampService {
  private readonly tokens: TokenBuilder;
  private readonly accepted: readonly string[];

  constructor(private readonly deps: TimestampServiceDeps) {
    this.tokens = new TokenBuilder(deps.signer, {
      policy: deps.policy,
      accuracySeconds: 1,
      includeChain: deps.includeChain,
    });
    this.accepted = [deps.policy];
  }

  get chain(): readonly Uint8Array[] {
    return this.deps.signer.chain;
  }

  parse(body: Uint8Array, encoding: RequestEncoding): TimestampRequest {
    if (body.length === 0) throw new TsaError('empty_body');
    return encoding === 'der'
      ? parseDerRequest(body, this.accepted)
      : parseJsonRequest(body, this.accepted);
  }

  async timestamp(body: Uint8Array, encoding: RequestEncoding): Promise<Uint8Array> {
    const req = this.parse(body, encoding);
    const clockState = this.deps.clockCheck.state();
    if (clockState === 'offset_too_large' || clockState === 'unknown') {
      throw new TsaError('clock_unsynchronised', clockState);
    }
    const serial = randomSerialBytes();
    const started = process.hrtime.bigint();
    let token;
    try {
      const pending = this.tokens.respond(req, this.deps.clock.now(), serial);
      token = await (this.deps.signTimeoutMs
        ? withTimeout(pending, this.deps.signTimeoutMs, () => new Error('TSA signer timed out'))
        : pending);
      this.deps.metrics.signerDuration.observe(
        { result: 'ok' },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    } catch (err) {
      this.deps.metrics.signerDuration.observe(
        { result: 'error' },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      throw err;
    }
    const record: TimestampAuditRecord = {
      hashAlgorithm: req.hash,
      digest: Buffer.from(req.digest).toString('hex'),
      serial: Buffer.from(serial).toString('hex'),
      genTime: token.genTime.toISOString(),
    };
    this.deps.audit.info(record, 'timestamp issued');
    this.deps.metrics.timestamps.inc({ hash: req.hash, encoding });
    return token.der;
  }
}
