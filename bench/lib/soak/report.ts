import type { MachineFacts } from '../proc';
import type { InclusionCheck } from './ctlog';
import type { LoadStats } from './client';
import type { AccessLogSummary, CutAttempt } from './nginx';
import type { SoakOptions } from './options';
import type { StepRecord } from './schedule';

/**
 * The soak's report: markdown for people (stdout and bench/results), with one hidden JSON
 * line of the headline figures for tests, and the verdict that sets the exit status.
 */

export interface ReplicaRow {
  readonly name: string;
  readonly port: number;
  readonly startPid: number | undefined;
  readonly startRssMb: number | undefined;
  /** The first process's RSS just before the schedule stopped it, and its age then (s). */
  readonly firstStopRssMb: number | undefined;
  readonly firstLifeSeconds: number | undefined;
  readonly endPid: number | undefined;
  readonly endRssMb: number | undefined;
  readonly endPeakRssMb: number | undefined;
  readonly starts: number;
}

export interface SoakReport {
  readonly started: Date;
  readonly command: string;
  readonly options: SoakOptions;
  readonly loadSeconds: number;
  readonly machine: MachineFacts;
  readonly loadAverage: {
    readonly before: readonly number[];
    readonly after: readonly number[];
    readonly duringMean: number;
    readonly duringMax: number;
  };
  readonly setup: readonly (readonly [string, string])[];
  readonly stats: LoadStats;
  readonly nginx: AccessLogSummary;
  readonly cuts: Cuts;
  /** nginx's error log lines about upstreams, by reason. */
  readonly nginxErrors: ReadonlyMap<string, number>;
  readonly replicas: readonly ReplicaRow[];
  readonly schedule: readonly StepRecord[];
  readonly windowLabel: (i: number) => string;
  readonly certificatesChecked: number;
  /** The replicas' warn/error/fatal log lines, by level and message. */
  readonly replicaLogs: ReadonlyMap<string, number>;
  readonly scratch: string;
  /** With `--ct`. */
  readonly ct?: CtOutcome;
}

/** The CT log's side of a `--ct` run. */
export interface CtOutcome {
  /** Certificates whose embedded SCT the soak verified as they came (services/common/ct). */
  readonly sctVerified: number;
  readonly maxLeafIndex: number;
  /** SCT timestamp minus notBefore, smallest and largest (ms). */
  readonly skewMs: readonly [number, number];
  /** Whether get-sth covered every leaf_index seen before the final check. */
  readonly published: boolean;
  /** The final check by certificate-transparency-go (test/go/soak-ct-check). */
  readonly inclusion: InclusionCheck;
  readonly logReplicas: readonly {
    readonly name: string;
    readonly port: number;
    readonly pids: readonly number[];
    /** Times its processes took the sequencer lock (log lines). */
    readonly leaderships: number;
  }[];
  /** The log's nginx (what the CA replicas sent to the log). */
  readonly access: AccessLogSummary;
  /** The log replicas' warn/error/fatal lines. */
  readonly logLines: ReadonlyMap<string, number>;
}

/**
 * Upstream attempts that reached a replica and got no answer (nginx then tried another
 * replica, so the client may not have seen it), by replica, and how many of them overlap
 * the drain of the replica they went to. A replica killed with SIGKILL cuts what it had in
 * flight; a draining one must cut nothing.
 */
export interface Cuts {
  readonly byReplica: Record<string, number>;
  readonly duringDrain: number;
}

export function countCuts(
  attempts: readonly CutAttempt[],
  steps: readonly StepRecord[],
  originWallMs: number,
  replicaOf: ReadonlyMap<string, string>,
): Cuts {
  const byReplica: Record<string, number> = {};
  let duringDrain = 0;
  for (const a of attempts) {
    const name = replicaOf.get(a.upstream) ?? a.upstream;
    byReplica[name] = (byReplica[name] ?? 0) + 1;
    const drained = steps.some(
      (s) =>
        s.drains === a.upstream &&
        a.fromMs <= originWallMs + s.endedMs &&
        a.toMs >= originWallMs + s.startedMs,
    );
    if (drained) duringDrain++;
  }
  return { byReplica, duringDrain };
}

export interface Verdict {
  readonly share: number;
  readonly pass: boolean;
  readonly reasons: readonly string[];
}

export function verdict(r: SoakReport): Verdict {
  const share = r.stats.requests > 0 ? r.stats.succeeded / r.stats.requests : 0;
  const reasons: string[] = [];
  if (r.stats.requests === 0) reasons.push('no request was sent');
  if (share < r.options.target)
    reasons.push(
      `${pct(share)} of requests got a certificate, below the ${pct(r.options.target)} target`,
    );
  if (r.stats.wrongCertificates > 0)
    reasons.push(`${r.stats.wrongCertificates} certificate(s) were wrong`);
  if (r.ct) {
    const c = r.ct;
    const i = c.inclusion;
    // Every certificate that counted as a success carried the log's verified SCT (a missing
    // or bad one makes it wrong); and every one of them is in the log's tree.
    if (c.sctVerified !== r.stats.succeeded)
      reasons.push(
        `${c.sctVerified} verified SCTs for ${r.stats.succeeded} certificates (every certificate needs one)`,
      );
    if (i.code !== 0 || i.checked !== c.sctVerified || i.included !== c.sctVerified)
      reasons.push(
        `ct-go found ${i.included} of ${c.sctVerified} certificates' entries in the log's tree (${i.sctVerified} SCTs verified${i.failures.length ? `; ${i.failures.slice(0, 3).join('; ')}` : ''})`,
      );
  }
  if (r.cuts.duringDrain > 0)
    reasons.push(`${r.cuts.duringDrain} request(s) cut by a draining replica`);
  const failedSteps = r.schedule.filter((s) => !s.ok);
  if (failedSteps.length > 0)
    reasons.push(`chaos step(s) failed: ${failedSteps.map((s) => s.label).join('; ')}`);
  return { share, pass: reasons.length === 0, reasons };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

function pct(share: number): string {
  return `${(share * 100).toFixed(share >= 0.999 && share < 1 ? 3 : 2)} %`;
}

function num(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function table(
  head: readonly string[],
  align: string,
  rows: readonly (readonly string[])[],
): string[] {
  return [`| ${head.join(' | ')} |`, align, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function countRows(map: ReadonlyMap<string, number> | Record<string, number>): string[][] {
  const entries = map instanceof Map ? [...map] : Object.entries(map);
  return entries.sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, num(v)]);
}

export function renderReport(r: SoakReport): string {
  const v = verdict(r);
  const s = r.stats;
  const sorted = [...s.latenciesMs].sort((x, y) => x - y);
  const lat = (p: number) => num(percentile(sorted, p), 1);
  const c = r.ct;
  const summary = {
    requests: s.requests,
    succeeded: s.succeeded,
    failed: s.failed,
    share: v.share,
    target: r.options.target,
    wrongCertificates: s.wrongCertificates,
    certificatesChecked: r.certificatesChecked,
    retries: s.retries,
    cutAttempts: r.nginx.cutAttempts.length,
    drainCuts: r.cuts.duringDrain,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    stepsRun: r.schedule.length,
    stepsFailed: r.schedule.filter((x) => !x.ok).length,
    pass: v.pass,
    ...(c
      ? {
          ct: {
            sctVerified: c.sctVerified,
            checked: c.inclusion.checked,
            ctgoSctVerified: c.inclusion.sctVerified,
            included: c.inclusion.included,
            treeSize: c.inclusion.treeSize,
            maxLeafIndex: c.maxLeafIndex,
            leaderships: c.logReplicas.reduce((n, x) => n + x.leaderships, 0),
          },
        }
      : {}),
  };
  const out: string[] = [
    `# mayfly chaos soak — ${r.started.toISOString()}`,
    '',
    `Command: \`${r.command}\` (from the repository root; it builds first).`,
    '',
    `**${v.pass ? 'PASS' : 'FAIL'}**: ${num(s.succeeded)} of ${num(s.requests)} requests got a certificate (**${pct(v.share)}**, target ≥ ${pct(r.options.target)}); ${num(s.wrongCertificates)} wrong certificates among ${num(r.certificatesChecked)} checked.${c ? ` With the CT log: **${num(c.sctVerified)}** of ${num(s.succeeded)} certificates carry the log's SCT, verified (${pct(s.succeeded ? c.sctVerified / s.succeeded : 0)}); certificate-transparency-go found **${num(c.inclusion.included)}** of them in the log's tree with a valid inclusion proof.` : ''}${v.reasons.length ? ` ${v.reasons.join('; ')}.` : ''}`,
    '',
    '## Setup',
    '',
    ...table(['', ''], '|---|---|', [
      [
        'machine',
        `${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGb} GiB, kernel ${r.machine.kernel}, node ${r.machine.node}`,
      ],
      [
        'load average (1, 5, 15 min)',
        `before ${r.loadAverage.before.join(', ')}; after ${r.loadAverage.after.join(', ')}; 1-min during the run: mean ${num(r.loadAverage.duringMean, 2)}, max ${num(r.loadAverage.duringMax, 2)}`,
      ],
      ...(r.loadAverage.duringMean > r.machine.cores
        ? [
            [
              'shared machine',
              `yes: the 1-min load average stayed above the ${r.machine.cores} cores (mean ${num(r.loadAverage.duringMean, 2)}); other work ran on this machine during the soak, so its latencies are those of a crowded machine, and only figures within this run compare`,
            ],
          ]
        : []),
      [
        'load',
        `${num(r.options.rate)} requests/s offered, open loop, for ${sec(r.options.durationMs)} (ran ${num(r.loadSeconds, 1)} s); 70 % v2, 30 % v1`,
      ],
      [
        'client retries',
        `after a network error, a timeout or a 5xx: up to ${r.options.retries} more attempt(s), backoff 100 ms × 2ⁿ + up to 100 ms jitter; 4xx is final`,
      ],
      ...r.setup.map(([k, val]) => [k, val]),
    ]),
    '',
    '## Outcome',
    '',
    ...table(['', 'requests', 'with a certificate', 'share'], '|---|---:|---:|---:|', [
      ['all', num(s.requests), num(s.succeeded), pct(v.share)],
      ...(['v2', 'v1'] as const).map((ver) => {
        const b = s.byVersion[ver];
        return [
          ver,
          num(b.requests),
          num(b.succeeded),
          pct(b.requests ? b.succeeded / b.requests : 0),
        ];
      }),
    ]),
    '',
    `Latency, from when each request was due to its final answer (retries and backoff included), ms: p50 **${lat(50)}**, p90 **${lat(90)}**, p99 **${lat(99)}**, p99.9 ${lat(99.9)}, max **${num(sorted[sorted.length - 1], 1)}**. At most ${num(s.maxInFlight)} requests were in flight at once.`,
    '',
    `Retries used: **${num(s.retries)}** in all; requests by attempts taken: ${s.attempts
      .map((n, i) => (n ? `${i}: ${num(n)}` : ''))
      .filter(Boolean)
      .join(', ')}.`,
    '',
    '### Requests that failed in the end, by kind',
    '',
    ...(s.finalFailures.size
      ? table(['kind', 'count'], '|---|---:|', countRows(s.finalFailures))
      : ['none']),
    '',
    '### Every failed attempt the client saw, by kind (including the ones a retry made good)',
    '',
    ...(s.attemptFailures.size
      ? table(['kind', 'count'], '|---|---:|', countRows(s.attemptFailures))
      : ['none']),
    '',
    '### What nginx saw (its access log)',
    '',
    `${num(r.nginx.requests)} requests; answers by status: ${
      countRows(r.nginx.byStatus)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ') || 'none'
    }. nginx sent **${num(r.nginx.retriedUpstream)}** request(s) on to another replica after a failed upstream attempt (proxy_next_upstream); the attempts it moved on from (nginx logs a refused or reset upstream connection as 502): ${
      countRows(r.nginx.abandonedAttempts)
        .map(([k, n]) => `${k === '-' ? 'connection error' : k}: ${n}`)
        .join(', ') || 'none'
    }.`,
    '',
    `Upstream attempts that reached a replica and got no answer (connected, request sent, no response header; nginx then went on to another replica): ${
      countRows(r.cuts.byReplica)
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ') || 'none'
    }. Of these, during the drain of the replica they went to (SIGTERM until exit): **${num(r.cuts.duringDrain)}** (a replica killed with SIGKILL cuts what it had in flight; a draining one must cut nothing).`,
    '',
    ...(r.nginxErrors.size
      ? [...table(['nginx error log: reason', 'lines'], '|---|---:|', countRows(r.nginxErrors)), '']
      : []),
    '### What the replicas logged (warn and above, all processes)',
    '',
    ...(r.replicaLogs.size
      ? table(['level: message (error)', 'lines'], '|---|---:|', countRows(r.replicaLogs))
      : ['nothing']),
    '',
    '## Certificates',
    '',
    `Every certificate received was checked (${num(r.certificatesChecked)}): the SAN is the email of the token that asked for it, the public key is the one sent, the chain is the soak CA's chain and the leaf's signature verifies with its issuing certificate (whose signature by the self-signed root was verified once), the validity covers the time of receipt, and no serial number came back twice. Wrong: **${num(s.wrongCertificates)}**.`,
    ...(s.wrongExamples.length ? ['', ...s.wrongExamples.map((e) => `- ${e}`)] : []),
    '',
    ...(c ? [...ctSection(c, s.succeeded), ''] : []),
    '## Replicas (resident memory, VmRSS from /proc)',
    '',
    ...table(
      [
        'replica',
        'port',
        'pid at start',
        'RSS at start, MB',
        'RSS of that process when stopped, MB (its age)',
        'pid at end',
        'RSS at end, MB',
        'peak RSS of the last process, MB',
        'processes started',
      ],
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
      r.replicas.map((x) => [
        x.name,
        String(x.port),
        String(x.startPid ?? '–'),
        num(x.startRssMb, 1),
        x.firstStopRssMb === undefined
          ? '–'
          : `${num(x.firstStopRssMb, 1)} (${num(x.firstLifeSeconds)} s)`,
        String(x.endPid ?? '–'),
        num(x.endRssMb, 1),
        num(x.endPeakRssMb, 1),
        String(x.starts),
      ]),
    ),
    '',
    'RSS at start: each replica just after it served its first requests (warm-up), before the load; when stopped: that same process just before the schedule killed or drained it (its growth over its life under load); at end: after the load, the process then running (a restarted replica ends younger than it started).',
    '',
    '## Schedule (seconds since the load started)',
    '',
    ...table(
      ['planned', 'started', 'took', 'step', 'what happened'],
      '|---:|---:|---:|---|---|',
      r.schedule.map((x) => [
        sec(x.plannedMs),
        sec(x.startedMs),
        sec(x.endedMs - x.startedMs),
        x.label,
        x.ok ? x.detail : `**${x.detail}**`,
      ]),
    ),
    '',
    '### Requests by the step in force when they were due',
    '',
    ...table(
      ['window', 'requests', 'failed in the end', 'retries', 'max latency, ms'],
      '|---|---:|---:|---:|---:|',
      [...s.windows.entries()]
        .sort((x, y) => x[0] - y[0])
        .map(([i, w]) => [
          r.windowLabel(i),
          num(w.requests),
          num(w.failures),
          num(w.retries),
          num(w.maxLatencyMs, 1),
        ]),
    ),
    '',
    `Logs and generated configs of this run: \`${r.scratch}\` (removed after a passing run unless \`--keep\`).`,
    '',
    `<!-- soak-summary ${JSON.stringify(summary)} -->`,
    '',
  ];
  return out.join('\n');
}

function ctSection(c: CtOutcome, succeeded: number): string[] {
  const i = c.inclusion;
  const statuses = countRows(c.access.byStatus)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return [
    '## Certificate Transparency',
    '',
    ...table(['', ''], '|---|---|', [
      [
        'certificates with the log’s SCT, verified as they came',
        `**${num(c.sctVerified)}** of ${num(succeeded)} (${pct(succeeded ? c.sctVerified / succeeded : 0)}): the SCT list taken out of the final certificate's TBS by the soak's own DER walk (bench/lib/soak/sct.ts), which gives the precertificate TBS without the poison; the SCT of the log's ID verified with services/common/ct over the precert entry (issuer key hash of the issuing CA); the SCT carries a leaf_index; its timestamp is within a minute of notBefore (observed: ${num(c.skewMs[0])} to ${num(c.skewMs[1])} ms after notBefore, which has whole seconds)`,
      ],
      [
        'final check, certificate-transparency-go (test/go/soak-ct-check)',
        `${num(i.checked)} certificates: SCT verified by ctutil.VerifySCT(embedded) **${num(i.sctVerified)}**; entry at the SCT's leaf_index with a valid inclusion proof (get-proof-by-hash, transparency-dev/merkle) against an STH of size ${num(i.treeSize)} whose signature ct-go verified: **${num(i.included)}**; ${i.failures.length ? `failures: ${i.failures.join('; ')}` : 'no failure'} (took ${num(i.ms / 1000, 1)} s)`,
      ],
      [
        'tree',
        `largest leaf_index seen ${num(c.maxLeafIndex)}; the STH covered it ${c.published ? 'before the final check' : '**not within 30 s**'}; tree size ${num(i.treeSize)} (warm-up certificates included, and precertificates of requests whose answer was lost: a precert logged is not a certificate issued)`,
      ],
      [
        'log replicas',
        c.logReplicas
          .map(
            (x) =>
              `${x.name} :${x.port}: ${x.pids.length} process(es) (pids ${x.pids.join(', ')}), took the sequencer lock ${x.leaderships} time(s)`,
          )
          .join('; '),
      ],
      [
        'the log’s nginx (CA → log)',
        `${num(c.access.requests)} requests (the CA replicas' add-pre-chain and the final check's reads); answers by status: ${statuses || 'none'}; sent on to the other replica after a failed attempt: ${num(c.access.retriedUpstream)}`,
      ],
    ]),
    '',
    '### What the log replicas logged (warn and above)',
    '',
    ...(c.logLines.size
      ? table(['level: message (error)', 'lines'], '|---|---:|', countRows(c.logLines))
      : ['nothing']),
  ];
}
