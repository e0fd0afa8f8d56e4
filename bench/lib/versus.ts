import { combineRounds, median, runLoad, type LoadResult, type RequestShape } from './load';
import { runPaced, type PacedResult } from './paced';
import { load1, peakRssMb, processTree, waitForQuiet } from './proc';

/**
 * mayfly against the real Fulcio (and whatever else is a contender), in one run: fresh
 * processes, warmed up, then closed-loop rounds at saturation and open-loop rounds at fixed
 * paces, each round visiting every contender in turn, the order reversed every other round,
 * so that the machine's load (shared, busy) falls on all of them alike. Figures are totals
 * (rates, CPU) and medians of the rounds (latencies); the report compares them as ratios.
 */

export interface VersusServer {
  readonly pid: number;
  readonly url: string;
  stop(): Promise<void>;
}

export interface Contender {
  readonly name: string;
  readonly what: string;
  readonly start: () => Promise<VersusServer>;
  readonly requests: readonly RequestShape[];
  readonly okStatus: number;
}

export interface PacedFigures {
  readonly rate: number;
  readonly achieved: number;
  readonly certificates: number;
  readonly failures: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuMsPerCertificate: number;
}

export interface ContenderResult {
  readonly name: string;
  readonly what: string;
  readonly saturation: LoadResult;
  readonly steady: PacedFigures;
  readonly at80: PacedFigures;
  /**
   * VmHWM of each process of the server's tree after the closed-loop rounds (MB): the peak
   * under the issue's load (saturation, the given connections), before the paced phases.
   */
  readonly saturationPeakRssMb: readonly number[];
  /**
   * VmHWM of each process at the end of the run (MB), the paced phases included: a server
   * overloaded at the 80 % pace queues requests and grows with its queue.
   */
  readonly peakRssMb: readonly number[];
}

export interface VersusResult {
  readonly contenders: ContenderResult[];
  /** Requests per second of the steady pace and of the 80 %-of-the-reference pace. */
  readonly steadyRate: number;
  readonly at80Rate: number;
  /** Whose peak the 80 % pace is taken from. */
  readonly referenceName: string;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  readonly pacedRounds: number;
  readonly pacedSeconds: number;
  readonly loadAverages: number[];
}

function combinePaced(rate: number, rounds: readonly PacedResult[]): PacedFigures {
  const certificates = rounds.reduce((a, r) => a + r.certificates, 0);
  const cpuSeconds = rounds.reduce((a, r) => a + (r.cpuSecondsPer1000 * r.certificates) / 1000, 0);
  return {
    rate,
    achieved: median(rounds.map((r) => r.achieved)),
    certificates,
    failures: rounds.reduce((a, r) => a + r.failures, 0),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    cpuMsPerCertificate: certificates ? (cpuSeconds / certificates) * 1000 : NaN,
  };
}

/** Round r visits the contenders forward when r is odd, backward when it is even. */
function order<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 1 ? [...items] : [...items].reverse();
}

export async function runVersus(options: {
  readonly contenders: readonly Contender[];
  /** The contender whose peak sets the 80 % pace (Fulcio; the first one when absent). */
  readonly reference: string;
  readonly steadyRate: number;
  readonly rounds: number;
  readonly seconds: number;
  readonly connections: number;
  readonly warmupSeconds: number;
  readonly pacedRounds: number;
  readonly pacedSeconds: number;
  readonly log: (line: string) => void;
  readonly notes: string[];
}): Promise<VersusResult> {
  const { log, notes } = options;
  const running: { contender: Contender; server: VersusServer }[] = [];
  const loadAverages = [load1()];
  try {
    for (const contender of options.contenders) {
      log(`versus: start ${contender.name}`);
      try {
        const server = await contender.start();
        running.push({ contender, server });
        await runLoad({
          url: server.url,
          requests: contender.requests,
          connections: options.connections,
          duration: options.warmupSeconds,
          serverPid: server.pid,
          okStatus: contender.okStatus,
        });
      } catch (err) {
        notes.push(
          `versus: ${contender.name} not measured (${(err as Error).message.split('\n')[0]})`,
        );
        log(`  failed: ${(err as Error).message}`);
      }
    }
    // Every phase starts once the previous one's requests are done (all servers quiet).
    const allPids = () => running.flatMap(({ server }) => processTree(server.pid));
    const saturation = new Map<string, LoadResult[]>();
    for (let round = 1; round <= options.rounds; round++) {
      for (const { contender, server } of order(running, round)) {
        await waitForQuiet(allPids());
        const result = await runLoad({
          url: server.url,
          requests: contender.requests,
          connections: options.connections,
          duration: options.seconds,
          serverPid: server.pid,
          okStatus: contender.okStatus,
        });
        saturation.set(contender.name, [...(saturation.get(contender.name) ?? []), result]);
        log(
          `versus round ${round} ${contender.name}: ${Math.round(result.certificatesPerSecond)}/s, p99 ${result.p99} ms, ${result.cpuSecondsPer1000.toFixed(3)} CPU ms/cert, ${result.failures} failures (load ${load1()})`,
        );
      }
    }
    loadAverages.push(load1());
    const saturationPeaks = new Map(
      running.map(({ contender, server }) => [contender.name, peakRssMb(processTree(server.pid))]),
    );
    const combined = new Map(
      running.map(({ contender }) => [
        contender.name,
        combineRounds(saturation.get(contender.name) ?? []),
      ]),
    );
    const referenceName = combined.has(options.reference)
      ? options.reference
      : (running[0]?.contender.name ?? options.reference);
    const referencePeak = combined.get(referenceName)?.certificatesPerSecond ?? 0;
    const at80Rate = Math.max(1, Math.round(0.8 * referencePeak));

    const paced = async (rate: number, label: string) => {
      const results = new Map<string, PacedResult[]>();
      for (let round = 1; round <= options.pacedRounds; round++) {
        for (const { contender, server } of order(running, round)) {
          await waitForQuiet(allPids());
          const result = await runPaced({
            url: server.url,
            requests: contender.requests,
            rate,
            seconds: options.pacedSeconds,
            serverPid: server.pid,
            okStatus: contender.okStatus,
          });
          results.set(contender.name, [...(results.get(contender.name) ?? []), result]);
          log(
            `versus ${label} round ${round} ${contender.name}: ${Math.round(result.achieved)}/s, p50 ${result.p50} p99 ${result.p99} ms, ${result.cpuSecondsPer1000.toFixed(3)} CPU ms/cert, ${result.failures} failures`,
          );
        }
      }
      return new Map(
        [...results].map(([name, rounds]) => [name, combinePaced(rate, rounds)] as const),
      );
    };
    const steady = await paced(options.steadyRate, `${options.steadyRate}/s`);
    const at80 = await paced(at80Rate, `${at80Rate}/s (80 % of ${referenceName}'s peak)`);
    loadAverages.push(load1());

    const contenders: ContenderResult[] = running.map(({ contender, server }) => ({
      name: contender.name,
      what: contender.what,
      saturation: combined.get(contender.name)!,
      steady: steady.get(contender.name)!,
      at80: at80.get(contender.name)!,
      saturationPeakRssMb: saturationPeaks.get(contender.name)!,
      peakRssMb: peakRssMb(processTree(server.pid)),
    }));
    for (const c of contenders) {
      const failures = c.saturation.failures + c.steady.failures + c.at80.failures;
      if (failures > 0)
        notes.push(`versus: ${c.name} answered ${failures} requests with a failure`);
    }
    return {
      contenders,
      steadyRate: options.steadyRate,
      at80Rate,
      referenceName,
      rounds: options.rounds,
      seconds: options.seconds,
      connections: options.connections,
      pacedRounds: options.pacedRounds,
      pacedSeconds: options.pacedSeconds,
      loadAverages,
    };
  } finally {
    for (const { server } of running) await server.stop();
  }
}

// ---------------------------------------------------------------- report

function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const x = (a: number, b: number) =>
  b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)} ×` : '–';

export interface VersusTarget {
  readonly what: string;
  readonly measured: string;
  readonly met: boolean | undefined;
}

/** The issue's targets (#18), ratios of `subject` to `reference`, same run. */
export function versusTargets(v: VersusResult, subject: string, reference: string): VersusTarget[] {
  const s = v.contenders.find((c) => c.name === subject);
  const r = v.contenders.find((c) => c.name === reference);
  if (!s || !r) return [];
  const satCpu = s.saturation.cpuSecondsPer1000 / r.saturation.cpuSecondsPer1000;
  const steadyCpu = s.steady.cpuMsPerCertificate / r.steady.cpuMsPerCertificate;
  const rate = s.saturation.certificatesPerSecond / r.saturation.certificatesPerSecond;
  const rss = Math.max(...s.saturationPeakRssMb) / Math.max(...r.saturationPeakRssMb);
  return [
    {
      what: `CPU per certificate ≤ 0.5 × ${reference}’s at saturation`,
      measured: `${fmt(s.saturation.cpuSecondsPer1000, 3)} vs ${fmt(r.saturation.cpuSecondsPer1000, 3)} ms = **${satCpu.toFixed(2)} ×**`,
      met: satCpu <= 0.5,
    },
    {
      what: `CPU per certificate ≤ 0.5 × ${reference}’s at ${v.steadyRate} requests/s`,
      measured: `${fmt(s.steady.cpuMsPerCertificate, 3)} vs ${fmt(r.steady.cpuMsPerCertificate, 3)} ms = **${steadyCpu.toFixed(2)} ×**`,
      met: steadyCpu <= 0.5,
    },
    {
      what: `certificates/s with default settings ≥ 1.5 × ${reference}’s`,
      measured: `${fmt(s.saturation.certificatesPerSecond)} vs ${fmt(r.saturation.certificatesPerSecond)} = **${rate.toFixed(2)} ×**`,
      met: rate >= 1.5,
    },
    {
      what: `p99 at ${v.steadyRate} requests/s ≤ ${reference}’s`,
      measured: `${fmt(s.steady.p99, 1)} vs ${fmt(r.steady.p99, 1)} ms = **${x(s.steady.p99, r.steady.p99)}**`,
      met: s.steady.p99 <= r.steady.p99,
    },
    {
      what: `p99 at ${fmt(v.at80Rate)} requests/s (80 % of ${v.referenceName}’s peak) ≤ ${reference}’s`,
      measured: `${fmt(s.at80.p99, 1)} vs ${fmt(r.at80.p99, 1)} ms = **${x(s.at80.p99, r.at80.p99)}**`,
      met: s.at80.p99 <= r.at80.p99,
    },
    {
      what: `peak RSS per process ≤ 2 × ${reference}’s (after the saturation rounds)`,
      measured: `${fmt(Math.max(...s.saturationPeakRssMb), 1)} vs ${fmt(Math.max(...r.saturationPeakRssMb), 1)} MB = **${rss.toFixed(2)} ×**`,
      met: rss <= 2,
    },
  ];
}

export function renderVersus(v: VersusResult, reference: string): string[] {
  const ref = v.contenders.find((c) => c.name === reference);
  const lines: string[] = [
    `## mayfly versus ${reference}`,
    '',
    `Fresh processes, warmed up, every phase starting once all of them are quiet, then ${v.rounds} closed-loop rounds of ${v.seconds} s (${v.connections} keep-alive connections, the same v2 requests: ES256 tokens from the bench’s issuer, fresh P-256 keys with proofs) visiting every contender in turn, the order reversed every other round; then ${v.pacedRounds} open-loop rounds of ${v.pacedSeconds} s each at ${v.steadyRate} requests/s and at ${fmt(v.at80Rate)} requests/s (80 % of ${v.referenceName}’s peak in this run), alternating likewise. Rates and CPU are totals over the rounds, latencies medians of the rounds. **The machine is shared with other engineers’ work (load average ${v.loadAverages.join(' → ')}): absolute figures mean little; compare the ratios, all from this one run.**`,
    '',
    '### At saturation',
    '',
    '| | certificates/s | p50 ms | p99 ms | CPU ms per certificate | peak RSS MB after these rounds (largest process) | processes |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of v.contenders) {
    lines.push(
      `| ${c.name} | ${fmt(c.saturation.certificatesPerSecond)} | ${c.saturation.p50} | ${c.saturation.p99} | ${fmt(c.saturation.cpuSecondsPer1000, 3)} | ${fmt(Math.max(...c.saturationPeakRssMb), 1)} | ${c.saturationPeakRssMb.length} (${fmt(
        c.saturationPeakRssMb.reduce((a, b) => a + b, 0),
        1,
      )} MB in all) |`,
    );
  }
  if (ref) {
    for (const c of v.contenders) {
      if (c === ref) continue;
      lines.push(
        `| **${c.name} / ${ref.name}** | **${x(c.saturation.certificatesPerSecond, ref.saturation.certificatesPerSecond)}** | ${x(c.saturation.p50, ref.saturation.p50)} | ${x(c.saturation.p99, ref.saturation.p99)} | **${x(c.saturation.cpuSecondsPer1000, ref.saturation.cpuSecondsPer1000)}** | **${x(Math.max(...c.saturationPeakRssMb), Math.max(...ref.saturationPeakRssMb))}** | |`,
      );
    }
  }
  const pacedTable = (title: string, pick: (c: ContenderResult) => PacedFigures) => {
    lines.push(
      '',
      `### ${title}`,
      '',
      '| | achieved /s | p50 ms | p99 ms | CPU ms per certificate | failed |',
      '|---|---:|---:|---:|---:|---:|',
    );
    for (const c of v.contenders) {
      const p = pick(c);
      lines.push(
        `| ${c.name} | ${fmt(p.achieved)} | ${fmt(p.p50, 1)} | ${fmt(p.p99, 1)} | ${fmt(p.cpuMsPerCertificate, 3)} | ${p.failures} |`,
      );
    }
    if (ref) {
      for (const c of v.contenders) {
        if (c === ref) continue;
        const p = pick(c);
        const r = pick(ref);
        lines.push(
          `| **${c.name} / ${ref.name}** | ${x(p.achieved, r.achieved)} | ${x(p.p50, r.p50)} | **${x(p.p99, r.p99)}** | **${x(p.cpuMsPerCertificate, r.cpuMsPerCertificate)}** | |`,
        );
      }
    }
  };
  pacedTable(`At a steady ${v.steadyRate} requests/s (open loop)`, (c) => c.steady);
  pacedTable(
    `At ${fmt(v.at80Rate)} requests/s, 80 % of ${v.referenceName}’s peak (open loop)`,
    (c) => c.at80,
  );
  lines.push(
    '',
    `Peak RSS over the whole run, the paced phases included (a server overloaded at the 80 % pace holds its queue): ${v.contenders
      .map((c) => `${c.name} ${fmt(Math.max(...c.peakRssMb), 1)} MB`)
      .join(', ')}. The RSS target is read after the saturation rounds.`,
  );
  lines.push('', ...v.contenders.map((c) => `- **${c.name}**: ${c.what}`), '');
  return lines;
}
