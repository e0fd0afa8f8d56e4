import autocannon from 'autocannon';
import { processTree, rssMb, treeCpuSeconds } from './proc';

/**
 * One load run with autocannon against a server on loopback: closed loop at full speed, or
 * at a fixed offered rate (autocannon then corrects latencies for coordinated omission).
 * The server's CPU is read from /proc before and after, for its whole process tree.
 */

export interface RequestShape {
  readonly path: string;
  readonly body: string;
  readonly headers: Record<string, string>;
}

export interface LoadOptions {
  readonly url: string;
  readonly requests: readonly RequestShape[];
  readonly connections: number;
  /** Seconds; ignored when `amount` is set. */
  readonly duration?: number;
  readonly amount?: number;
  /** Requests per second offered by all connections together. */
  readonly rate?: number;
  readonly serverPid: number;
  /** Which status counts as a certificate. */
  readonly okStatus: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly certificates: number;
  readonly failures: number;
  readonly seconds: number;
  readonly certificatesPerSecond: number;
  readonly offeredRate?: number | undefined;
  /** Milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly serverCpuSeconds: number;
  /** Server CPU-seconds per 1,000 certificates. */
  readonly cpuSecondsPer1000: number;
  readonly serverProcesses: number;
  readonly rssMbAfter: number[];
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const pids = processTree(options.serverPid);
  const cpuBefore = treeCpuSeconds(pids);
  let next = 0;
  const shapes = options.requests;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        ...(options.amount !== undefined
          ? { amount: options.amount }
          : { duration: options.duration ?? 10 }),
        ...(options.rate !== undefined ? { overallRate: options.rate } : {}),
        timeout: 30,
        requests: [
          {
            method: 'POST',
            setupRequest: (request) => {
              const shape = shapes[next++ % shapes.length]!;
              return {
                ...request,
                path: shape.path,
                body: shape.body,
                headers: { ...request.headers, ...shape.headers },
              };
            },
          },
        ],
      },
      (err, res) => (err ? reject(err as Error) : resolve(res)),
    );
    // No progress bar or table: results are written by the caller.
    instance.on('error', reject);
  });
  const serverCpuSeconds = treeCpuSeconds(pids) - cpuBefore;
  const certificates = result.statusCodeStats?.[`${options.okStatus}`]?.count ?? 0;
  const requests = result.requests.total;
  const seconds = result.duration;
  return {
    requests,
    certificates,
    failures: requests - certificates + result.errors,
    seconds,
    certificatesPerSecond: certificates / seconds,
    offeredRate: options.rate,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    serverCpuSeconds,
    cpuSecondsPer1000: certificates > 0 ? (serverCpuSeconds / certificates) * 1000 : NaN,
    serverProcesses: pids.length,
    rssMbAfter: rssMb(pids),
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** The median, with an even count the mean of the two middle values (few rounds). */
export function middleMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const m = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}

/** Rounds of one scenario as one result: totals for rates and CPU, medians for latency. */
export function combineRounds(rounds: readonly LoadResult[]): LoadResult {
  const sum = (f: (r: LoadResult) => number) => rounds.reduce((a, r) => a + f(r), 0);
  const certificates = sum((r) => r.certificates);
  const seconds = sum((r) => r.seconds);
  const cpu = sum((r) => r.serverCpuSeconds);
  return {
    requests: sum((r) => r.requests),
    certificates,
    failures: sum((r) => r.failures),
    seconds,
    certificatesPerSecond: certificates / seconds,
    p50: median(rounds.map((r) => r.p50)),
    p90: median(rounds.map((r) => r.p90)),
    p99: median(rounds.map((r) => r.p99)),
    max: Math.max(...rounds.map((r) => r.max)),
    serverCpuSeconds: cpu,
    cpuSecondsPer1000: certificates ? (cpu / certificates) * 1000 : NaN,
    serverProcesses: rounds[0]?.serverProcesses ?? 0,
    rssMbAfter: rounds[rounds.length - 1]?.rssMbAfter ?? [],
  };
}
