import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { RequestShape } from './load';
import { processTree, treeCpuSeconds } from './proc';

/**
 * An open-loop load at a fixed rate, for the latency-versus-load curve: request i is due at
 * start + i / rate whatever happened to the ones before, and its latency runs from when it
 * was due (not from when it went out), so a server that falls behind is charged for the
 * queue it builds. (autocannon's rate limit sends each connection's quota at the start of
 * every second, in bursts, which measures its bursts rather than the server.)
 */

export interface PacedResult {
  readonly offered: number;
  readonly achieved: number;
  readonly certificates: number;
  readonly failures: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly cpuSecondsPer1000: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runPaced(options: {
  readonly url: string;
  readonly requests: readonly RequestShape[];
  readonly rate: number;
  readonly seconds: number;
  readonly serverPid: number;
  readonly okStatus: number;
}): Promise<PacedResult> {
  const { rate, requests } = options;
  const target = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
  const total = Math.max(1, Math.round(rate * options.seconds));
  const latencies: number[] = [];
  let certificates = 0;
  let failures = 0;
  let done = 0;
  const pids = processTree(options.serverPid);
  const cpuBefore = treeCpuSeconds(pids);
  const start = performance.now() + 20;
  let lastEnd = start;

  await new Promise<void>((resolveAll) => {
    const finish = (due: number, ok: boolean) => {
      const end = performance.now();
      latencies.push(end - due);
      if (ok) certificates++;
      else failures++;
      lastEnd = Math.max(lastEnd, end);
      if (++done === total) resolveAll();
    };
    const fire = (i: number) => {
      const due = start + (i * 1000) / rate;
      const shape = requests[i % requests.length]!;
      const body = Buffer.from(shape.body);
      const req = request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          method: 'POST',
          path: shape.path,
          headers: { ...shape.headers, 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => finish(due, res.statusCode === options.okStatus));
          res.on('error', () => finish(due, false));
        },
      );
      req.on('error', () => finish(due, false));
      req.end(body);
    };
    let sent = 0;
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + (sent * 1000) / rate <= now) fire(sent++);
      if (sent < total) setTimeout(tick, 1);
    };
    setTimeout(tick, 0);
  });
  agent.destroy();
  const cpu = treeCpuSeconds(pids) - cpuBefore;
  const sorted = latencies.sort((a, b) => a - b);
  const round = (v: number) => Math.round(v * 10) / 10;
  return {
    offered: rate,
    achieved: certificates / ((lastEnd - start) / 1000),
    certificates,
    failures,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? NaN),
    cpuSecondsPer1000: certificates ? (cpu / certificates) * 1000 : NaN,
  };
}
