import { createSocket } from 'node:dgram';
import type { Clock } from '../common/clock';

/**
 * Clock discipline. A TSA's job is telling time, so when a time source is configured the TSA
 * asks it for the local clock's offset (SNTP, RFC 4330, over UDP), publishes the offset, and
 * refuses to timestamp while the offset is past the bound or unknown for too long. Without a
 * source (the default, for offline development) nothing is checked.
 */

export interface NtpSample {
  /** Server time minus local time, in milliseconds. */
  readonly offsetMs: number;
  readonly roundTripMs: number;
  readonly stratum: number;
}

/** Seconds between the NTP era (1900) and the Unix epoch. */
const NTP_UNIX_DELTA = 2_208_988_800;

function writeNtpTime(buf: Buffer, offset: number, ms: number): void {
  const seconds = Math.floor(ms / 1000) + NTP_UNIX_DELTA;
  const fraction = Math.floor(((ms % 1000) / 1000) * 2 ** 32);
  buf.writeUInt32BE(seconds >>> 0, offset);
  buf.writeUInt32BE(fraction >>> 0, offset + 4);
}

function readNtpTime(buf: Buffer, offset: number): number {
  const seconds = buf.readUInt32BE(offset) - NTP_UNIX_DELTA;
  const fraction = buf.readUInt32BE(offset + 4) / 2 ** 32;
  return seconds * 1000 + fraction * 1000;
}

/** Parses "host", "host:port" or "[v6]:port" (default port 123). */
export function parseNtpServer(text: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) return { host: v6[1]!, port: Number(v6[2] ?? 123) };
  const [host, port] = text.split(':');
  if (!host) throw new Error(`not an NTP server: ${text}`);
  return { host, port: Number(port ?? 123) };
}

/** One SNTP exchange: client mode, version 4, the origin timestamp checked on the way back. */
export function queryNtp(
  server: { host: string; port: number },
  timeoutMs: number,
  now: () => number = Date.now,
): Promise<NtpSample> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    const request = Buffer.alloc(48);
    request[0] = (0 << 6) | (4 << 3) | 3; // LI 0, VN 4, mode 3 (client)
    const t1 = now();
    writeNtpTime(request, 40, t1);
    const origin = request.subarray(40, 48);
    const timer = setTimeout(
      () => finish(new Error(`no NTP answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let done = false;
    function finish(err: Error | null, sample?: NtpSample) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(sample!);
    }
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg) => {
      const t4 = now();
      if (msg.length < 48) return finish(new Error('short NTP answer'));
      const mode = msg[0]! & 0x07;
      const leap = msg[0]! >> 6;
      const stratum = msg[1]!;
      if (mode !== 4) return finish(new Error(`NTP answer in mode ${mode}`));
      if (leap === 3 || stratum === 0 || stratum > 15) {
        return finish(new Error(`NTP server not synchronised (leap ${leap}, stratum ${stratum})`));
      }
      if (!msg.subarray(24, 32).equals(origin))
        return finish(new Error('NTP answer to another query'));
      const t2 = readNtpTime(msg, 32);
      const t3 = readNtpTime(msg, 40);
      finish(null, {
        offsetMs: (t2 - t1 + (t3 - t4)) / 2,
        roundTripMs: t4 - t1 - (t3 - t2),
        stratum,
      });
    });
    socket.send(request, server.port, server.host, (err) => {
      if (err) finish(err);
    });
  });
}

export interface ClockMonitorOptions {
  readonly server: { host: string; port: number };
  /** Past this absolute offset the TSA refuses to timestamp. */
  readonly maxOffsetMs: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Without a good sample for this long the offset counts as unknown (refuse). */
  readonly maxSampleAgeMs: number;
  readonly clock: Clock;
  readonly onSample?: (sample: NtpSample) => void;
  readonly onFailure?: (err: Error) => void;
}

export type ClockState = 'unchecked' | 'ok' | 'offset_too_large' | 'unknown';

export interface ClockCheck {
  state(): ClockState;
  close(): void;
}

/** No time source configured: always fine, never checked. */
export const uncheckedClock: ClockCheck = { state: () => 'unchecked', close: () => undefined };

export class ClockMonitor implements ClockCheck {
  private last: { sample: NtpSample; at: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: ClockMonitorOptions) {}

  /** Takes the first sample (so readiness is known at once) and keeps sampling. */
  async start(): Promise<void> {
    await this.sampleOnce();
    if (this.closed) return;
    this.timer = setInterval(() => void this.sampleOnce(), this.options.intervalMs);
    this.timer.unref();
  }

  async sampleOnce(): Promise<void> {
    const now = () => this.options.clock.now().getTime();
    try {
      const sample = await queryNtp(this.options.server, this.options.timeoutMs, now);
      this.last = { sample, at: now() };
      this.options.onSample?.(sample);
    } catch (err) {
      this.options.onFailure?.(err as Error);
    }
  }

  offsetMs(): number | undefined {
    return this.last?.sample.offsetMs;
  }

  state(): ClockState {
    const last = this.last;
    if (!last || this.options.clock.now().getTime() - last.at > this.options.maxSampleAgeMs) {
      return 'unknown';
    }
    return Math.abs(last.sample.offsetMs) > this.options.maxOffsetMs ? 'offset_too_large' : 'ok';
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }
}
