import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';

/**
 * Generates mayfly's Prometheus rules from k8s/observability/slo.yaml, the one place the
 * objectives live: the plain rules files (for `promtool` and for a Prometheus without the
 * operator) and the PrometheusRule manifests that carry exactly the same groups.
 *
 *   npm run slo:rules            regenerate the files
 *   node dist/scripts/slo-rules.js --check   exit 1 when a file is out of date
 *
 * The alerts are the SRE workbook's multiwindow, multi-burn-rate alerts ("Alerting on
 * SLOs", recommended parameters for a 30-day budget), as sloth and kubernetes-mixin
 * generate them: each fires when both its long and its short window burn faster than its
 * factor, so it starts quickly and stops soon after the burn does.
 */

const configSchema = z
  .object({
    objectives: z
      .object({
        availability: z.number().gt(0).lt(1),
        latency: z.number().gt(0).lt(1),
        prober: z.number().gt(0).lt(1),
      })
      .strict(),
    latencyThresholdSeconds: z.number().positive(),
    aggregationLabels: z.array(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/)),
    caExpiry: z
      .object({ ticketDays: z.number().positive(), pageDays: z.number().positive() })
      .strict(),
    /** The CT dependency (issue #17): its alerts' thresholds. */
    ct: z
      .object({
        errorRatio: z.number().gt(0).lt(1),
        latencyBurnFactor: z.number().positive(),
        windowTicketDays: z.number().positive(),
        windowPageDays: z.number().positive(),
      })
      .strict(),
    /** Added to every alert as its runbook_url annotation when set. */
    runbookUrl: z.string().url().optional(),
  })
  .strict();

export type SloConfig = z.infer<typeof configSchema>;

export function loadSloConfig(path: string): SloConfig {
  return configSchema.parse(YAML.parse(readFileSync(path, 'utf8')));
}

/** The workbook's windows for a 30-day budget, and how long each must hold before firing. */
export const BURN_WINDOWS = [
  { severity: 'page', long: '1h', short: '5m', factor: 14.4, for: '2m' },
  { severity: 'page', long: '6h', short: '30m', factor: 6, for: '15m' },
  { severity: 'ticket', long: '1d', short: '2h', factor: 3, for: '1h' },
  { severity: 'ticket', long: '3d', short: '6h', factor: 1, for: '3h' },
] as const;

/** Every window an alert reads, shortest first. */
export const RATIO_WINDOWS = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'] as const;

// The signing requests of both transports: the HTTP routes, and Fulcio's gRPC method, which
// services/ca/grpc records in the same histogram (its path as the route, POST, and the
// HTTP status Fulcio's gateway gives its gRPC code).
const SIGNING =
  'route=~"/api/v[12]/signingCert|/dev.sigstore.fulcio.v2.CA/CreateSigningCertificate",method="POST"';
const REQUESTS = `mayfly_http_request_duration_seconds_count{${SIGNING}}`;

export interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export interface RuleGroup {
  readonly name: string;
  readonly interval?: string;
  readonly rules: Rule[];
}

/** A number as people write it: 0.001, not 0.0010000000000000009. */
function num(value: number): string {
  return String(Number(value.toPrecision(6)));
}

function percent(ratio: number): string {
  return `${num(ratio * 100)}%`;
}

function sumBy(config: SloConfig, extra: readonly string[] = []): string {
  const labels = [...config.aggregationLabels, ...extra];
  return labels.length > 0 ? `sum by (${labels.join(', ')})` : 'sum';
}

/** Days until a budget burning `factor` times too fast is gone (30-day budget). */
function daysToExhaust(factor: number): string {
  return String(Number((30 / factor).toFixed(1)));
}

interface BurnAlertSpec {
  readonly alert: string;
  /** The error-ratio series of a window. */
  readonly metric: (window: string) => string;
  readonly selector: string;
  readonly objective: number;
  readonly labels: Record<string, string>;
  /** The SLO's name in the summary. */
  readonly slo: string;
  /** "… of X <went wrong> over the last 1h": what the ratio counts. */
  readonly counts: string;
}

function burnAlerts(spec: BurnAlertSpec): Rule[] {
  const { alert, metric, selector, objective, labels } = spec;
  const budget = 1 - objective;
  return BURN_WINDOWS.map((w) => ({
    alert,
    expr: [
      `${metric(w.long)}${selector} > (${num(w.factor)} * ${num(budget)})`,
      'and',
      `${metric(w.short)}${selector} > (${num(w.factor)} * ${num(budget)})`,
    ].join('\n'),
    for: w.for,
    labels: { severity: w.severity, ...labels, long_window: w.long, short_window: w.short },
    annotations: {
      summary: `${spec.slo}: error budget burning over ${num(w.factor)}x too fast (${w.long} and ${w.short} windows)`,
      description:
        `{{ $value | humanizePercentage }} of ${spec.counts} over the last ${w.long} ` +
        `(objective ${percent(objective)}, error budget ${percent(budget)}). At ${num(w.factor)}x ` +
        `the 30-day error budget lasts ${daysToExhaust(w.factor)} days.`,
    },
  }));
}

/** The runbook link, on every alert, when slo.yaml names one. */
function withRunbook(config: SloConfig, groups: RuleGroup[]): RuleGroup[] {
  const url = config.runbookUrl;
  if (!url) return groups;
  return groups.map((group) => ({
    ...group,
    rules: group.rules.map((rule) =>
      rule.alert ? { ...rule, annotations: { ...rule.annotations, runbook_url: url } } : rule,
    ),
  }));
}

/** The windows the CT rules record (the alerts read 1h and 5m, the dashboard 5m). */
export const CT_WINDOWS = ['5m', '1h'] as const;

/**
 * The CT dependency (issue #17): with a log configured, every certificate waits for its
 * SCTs, so the logs' errors and latency are the CA's. Recorded per log (its base URL, the
 * `log` label): submissions, the share that failed and the share slower than the signing
 * latency threshold (a request is never faster than its CT submission), p50/p99 latency;
 * and per deployment the SCTs embedded. Alerts: the CA asks but embeds nothing (page), a
 * log failing, its breaker tripped, CT latency alone burning the latency SLO, and the last
 * shard's window ending.
 */
export function ctRuleGroups(config: SloConfig): RuleGroup[] {
  const byLog = sumBy(config, ['log']);
  const by = sumBy(config);
  const le = num(config.latencyThresholdSeconds);
  const latencyBudget = 1 - config.objectives.latency;
  const submissions = 'mayfly_ct_submission_duration_seconds';
  const rules: Rule[] = [];
  for (const w of CT_WINDOWS) {
    const total = `${byLog} (rate(${submissions}_count[${w}]))`;
    rules.push(
      { record: `mayfly:ct_submissions:rate${w}`, expr: total },
      {
        record: `mayfly:ct_submission_errors:ratio_rate${w}`,
        expr: `(\n  ${byLog} (rate(${submissions}_count{result="error"}[${w}]))\n  or\n  0 * ${total}\n)\n/\nmayfly:ct_submissions:rate${w}`,
      },
      {
        record: `mayfly:ct_submission_slow:ratio_rate${w}`,
        expr: `(\n  mayfly:ct_submissions:rate${w}\n  -\n  ${byLog} (rate(${submissions}_bucket{le="${le}"}[${w}]))\n)\n/\nmayfly:ct_submissions:rate${w}`,
      },
    );
  }
  for (const q of [0.5, 0.99])
    rules.push({
      record: `mayfly:ct_submission_duration_seconds:p${num(q * 100)}_rate5m`,
      expr: `histogram_quantile(${num(q)}, ${sumBy(config, ['log', 'le'])} (rate(${submissions}_bucket[5m])))`,
    });
  rules.push({
    record: 'mayfly:ct_scts_embedded:rate5m',
    expr: `${by} (rate(mayfly_ct_scts_embedded_total[5m]))`,
  });

  const errorRatio = num(config.ct.errorRatio);
  const slow = `${num(config.ct.latencyBurnFactor)} * ${num(latencyBudget)}`;
  const windowEnd = `max by (${config.aggregationLabels.join(', ')}) (mayfly_ct_log_window_end_seconds) - time()`;
  const alerts: Rule[] = [
    {
      alert: 'MayflyCtNoScts',
      expr: [
        '(',
        `  ${by} (mayfly:ct_submissions:rate5m) > 0`,
        '  or',
        `  ${by} (rate(mayfly_ct_no_eligible_log_total[5m])) > 0`,
        ')',
        'unless',
        'mayfly:ct_scts_embedded:rate5m > 0',
      ].join('\n'),
      for: '5m',
      labels: { severity: 'page' },
      annotations: {
        summary: 'mayfly asks its CT logs but has embedded no SCT for 5 minutes',
        description:
          'Every signing request fails with 500 "Error entering certificate in CTL": no configured ' +
          'CT log gives a verified SCT, or no log’s temporal window holds the certificates’ notAfter ' +
          '(mayfly_ct_no_eligible_log_total). mayfly_ct_errors_total and mayfly_ct_breaker_open say ' +
          'which log and why.',
      },
    },
    {
      alert: 'MayflyCtLogErrors',
      expr: `mayfly:ct_submission_errors:ratio_rate1h > ${errorRatio}\nand\nmayfly:ct_submission_errors:ratio_rate5m > ${errorRatio}`,
      for: '5m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: `Over ${percent(config.ct.errorRatio)} of submissions to CT log {{ $labels.log }} fail`,
        description:
          '{{ $value | humanizePercentage }} of add-pre-chain submissions to {{ $labels.log }} failed ' +
          `over the last hour, and over ${percent(config.ct.errorRatio)} over the last 5 minutes. mayfly_ct_errors_total says why ` +
          '(timeout, unavailable, refused, malformed, unverifiable, circuit_open); a request with ' +
          'fewer verified SCTs than MAYFLY_CT_MIN_SCTS fails.',
      },
    },
    {
      alert: 'MayflyCtLogCircuitOpen',
      expr: `max by (${[...config.aggregationLabels, 'log'].join(', ')}) (mayfly_ct_breaker_open) == 1`,
      for: '5m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'The circuit breaker of CT log {{ $labels.log }} has been open for 5 minutes',
        description:
          'Submissions to {{ $labels.log }} failed in a row and the CA stopped asking it but for ' +
          'a trial request every cool-off; it has not answered one since. Check the log ' +
          '(its /readyz, its sequencer, its database).',
      },
    },
    {
      alert: 'MayflyCtLatencyBurn',
      expr: `mayfly:ct_submission_slow:ratio_rate1h > (${slow})\nand\nmayfly:ct_submission_slow:ratio_rate5m > (${slow})`,
      for: '5m',
      labels: { severity: 'ticket', slo: 'latency' },
      annotations: {
        summary: `CT log {{ $labels.log }} alone burns the signing latency SLO over ${num(config.ct.latencyBurnFactor)}x too fast`,
        description:
          `{{ $value | humanizePercentage }} of submissions to {{ $labels.log }} took longer than ${le}s ` +
          `over the last hour and the last 5 minutes, and each makes its signing request miss the ` +
          `${le}s latency objective (budget ${percent(latencyBudget)}). Look at the log's sequencing ` +
          'interval and its database before the latency SLO pages.',
      },
    },
    {
      alert: 'MayflyCtLogWindowEnding',
      expr: `${windowEnd} < ${num(config.ct.windowTicketDays)} * 86400`,
      for: '10m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: `The last CT log shard's window ends within ${num(config.ct.windowTicketDays)} days`,
        description:
          'No configured CT log accepts certificates whose notAfter is more than {{ $value | humanizeDuration }} ' +
          'ahead; after that every signing request fails. Start the next shard and add it to ct.logs ' +
          'with its temporal window (README: "Rolling over to the next shard").',
      },
    },
    {
      alert: 'MayflyCtLogWindowEnding',
      expr: `${windowEnd} < ${num(config.ct.windowPageDays)} * 86400`,
      for: '10m',
      labels: { severity: 'page' },
      annotations: {
        summary: `The last CT log shard's window ends within ${num(config.ct.windowPageDays)} days`,
        description:
          'No configured CT log accepts certificates whose notAfter is more than {{ $value | humanizeDuration }} ' +
          'ahead; then every signing request fails with "Error entering certificate in CTL".',
      },
    },
  ];
  return [{ name: 'mayfly-ct', rules: [...rules, ...alerts] }];
}

/** The CA's rules: SLIs, budgets, burn-rate alerts, and the alerts the SLOs cannot see. */
export function caRuleGroups(config: SloConfig): RuleGroup[] {
  const by = sumBy(config);
  const le = num(config.latencyThresholdSeconds);
  const sli: Rule[] = [];
  for (const w of RATIO_WINDOWS) {
    const total = `${by} (rate(${REQUESTS}[${w}]))`;
    sli.push(
      { record: `mayfly:slo_requests:rate${w}`, expr: total, labels: { slo: 'availability' } },
      {
        record: `mayfly:slo_errors:rate${w}`,
        // `or 0 * total`: a service that never failed has no 5xx series, yet a 0 ratio.
        expr: `${by} (rate(mayfly_http_request_duration_seconds_count{${SIGNING},code=~"5.."}[${w}]))\nor\n0 * ${total}`,
        labels: { slo: 'availability' },
      },
      { record: `mayfly:slo_requests:rate${w}`, expr: total, labels: { slo: 'latency' } },
      {
        record: `mayfly:slo_errors:rate${w}`,
        expr: `${total}\n-\n${by} (rate(mayfly_http_request_duration_seconds_bucket{${SIGNING},le="${le}"}[${w}]))`,
        labels: { slo: 'latency' },
      },
      {
        record: `mayfly:slo_errors:ratio_rate${w}`,
        expr: `mayfly:slo_errors:rate${w}\n/\nmayfly:slo_requests:rate${w}`,
      },
    );
  }
  sli.push(
    {
      record: 'mayfly:slo_objective:ratio',
      expr: `vector(${num(config.objectives.availability)})`,
      labels: { slo: 'availability' },
    },
    {
      record: 'mayfly:slo_objective:ratio',
      expr: `vector(${num(config.objectives.latency)})`,
      labels: { slo: 'latency' },
    },
    {
      record: 'mayfly:slo_latency_threshold:seconds',
      expr: `vector(${le})`,
    },
  );

  const alerts: Rule[] = [
    ...burnAlerts({
      alert: 'MayflyErrorBudgetBurn',
      metric: (w) => `mayfly:slo_errors:ratio_rate${w}`,
      selector: '{slo="availability"}',
      objective: config.objectives.availability,
      labels: { slo: 'availability' },
      slo: 'mayfly signingCert availability',
      counts: 'POST signingCert requests were answered with a 5xx',
    }),
    ...burnAlerts({
      alert: 'MayflyErrorBudgetBurn',
      metric: (w) => `mayfly:slo_errors:ratio_rate${w}`,
      selector: '{slo="latency"}',
      objective: config.objectives.latency,
      labels: { slo: 'latency' },
      slo: 'mayfly signingCert latency',
      counts: `POST signingCert requests took longer than ${le}s`,
    }),
  ];

  const expiry = `min by (${[...config.aggregationLabels, 'subject'].join(', ')}) (mayfly_ca_certificate_expiry_seconds{role="signing"})`;
  const other: Rule[] = [
    {
      alert: 'MayflyCaCertificateExpiry',
      expr: `${expiry} < ${config.caExpiry.ticketDays} * 86400`,
      for: '10m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: `The signing CA certificate expires within ${config.caExpiry.ticketDays} days`,
        description:
          'The signing CA certificate {{ $labels.subject }} expires in {{ $value | humanizeDuration }}; ' +
          'leaves are cut short to its notAfter and stop altogether when it expires. Stage the next CA ' +
          '(MAYFLY_CA_NEXT_CERT) so clients trust it before it signs.',
      },
    },
    {
      alert: 'MayflyCaCertificateExpiry',
      expr: `${expiry} < ${config.caExpiry.pageDays} * 86400`,
      for: '10m',
      labels: { severity: 'page' },
      annotations: {
        summary: `The signing CA certificate expires within ${config.caExpiry.pageDays} days`,
        description:
          'The signing CA certificate {{ $labels.subject }} expires in {{ $value | humanizeDuration }}. ' +
          'When it does, every signing request fails.',
      },
    },
    {
      alert: 'MayflyRateLimiterOnInsurance',
      expr: `${by} (rate(mayfly_ratelimit_insurance_total[5m])) > 0`,
      for: '10m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'The rate limiter is running on its per-replica insurance limits',
        description:
          'The rate-limit store (Redis) has not answered for 10 minutes; each replica enforces ' +
          'only its share of every limit, so limits are looser or tighter than configured. ' +
          'Check mayfly_ratelimit_store_errors_total and Redis.',
      },
    },
    {
      alert: 'MayflyCaReloadRefused',
      expr: `${by} (increase(mayfly_ca_reloads_total{result="refused"}[15m])) > 0`,
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'A changed CA file was refused; mayfly still signs with the previous CA',
        description:
          'The CA files changed but were refused (the error log line says why); the previous CA still signs. ' +
          'Fix the files before the previous CA is removed or expires.',
      },
    },
  ];

  return withRunbook(config, [
    // The burn-rate alerts share the SLI group: rules of one group run in order, so each
    // alert reads ratios recorded in the same evaluation, never a round late.
    { name: 'mayfly-slo', rules: [...sli, ...alerts] },
    {
      name: 'mayfly-slo-30d',
      interval: '5m',
      rules: [
        {
          record: 'mayfly:slo_errors:ratio_rate30d',
          expr: 'sum_over_time(mayfly:slo_errors:rate5m[30d])\n/\nsum_over_time(mayfly:slo_requests:rate5m[30d])',
        },
        {
          record: 'mayfly:slo_error_budget_remaining:ratio30d',
          expr: '1 - mayfly:slo_errors:ratio_rate30d / on (slo) group_left () (1 - mayfly:slo_objective:ratio)',
        },
      ],
    },
    { name: 'mayfly-alerts', rules: other },
    ...ctRuleGroups(config),
  ]);
}

/** The prober's rules: its own SLI per endpoint, burn-rate alerts, and "it is failing". */
export function proberRuleGroups(config: SloConfig): RuleGroup[] {
  const by = sumBy(config, ['endpoint', 'method']);
  const probes = 'mayfly_prober_probe_duration_seconds_count';
  const sli: Rule[] = [];
  for (const w of RATIO_WINDOWS) {
    const total = `${by} (rate(${probes}[${w}]))`;
    sli.push(
      { record: `mayfly_prober:probes:rate${w}`, expr: total },
      {
        record: `mayfly_prober:probe_failures:rate${w}`,
        expr: `${by} (rate(${probes}{result="failure"}[${w}]))\nor\n0 * ${total}`,
      },
      {
        record: `mayfly_prober:probe_errors:ratio_rate${w}`,
        expr: `mayfly_prober:probe_failures:rate${w}\n/\nmayfly_prober:probes:rate${w}`,
      },
    );
  }
  sli.push({
    record: 'mayfly_prober:slo_objective:ratio',
    expr: `vector(${num(config.objectives.prober)})`,
  });
  const burn = burnAlerts({
    alert: 'MayflyProberErrorBudgetBurn',
    metric: (w) => `mayfly_prober:probe_errors:ratio_rate${w}`,
    selector: '',
    objective: config.objectives.prober,
    labels: { slo: 'prober' },
    slo: 'mayfly prober {{ $labels.method }} {{ $labels.endpoint }}',
    counts: 'probes of {{ $labels.method }} {{ $labels.endpoint }} failed',
  });
  const other: Rule[] = [
    {
      alert: 'MayflyProberFailing',
      expr: 'mayfly_prober_probe_success == 0',
      for: '10m',
      labels: { severity: 'page' },
      annotations: {
        summary: 'Every probe of {{ $labels.method }} {{ $labels.endpoint }} failed for 10 minutes',
        description:
          'Seen from outside, mayfly has not answered {{ $labels.method }} {{ $labels.endpoint }} ' +
          'correctly for 10 minutes. mayfly_prober_failures_total says why (connection, timeout, ' +
          'status, response, chain, token).',
      },
    },
    {
      alert: 'MayflyProberAbsent',
      expr: 'absent(mayfly_prober_last_probe_timestamp_seconds)',
      for: '10m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: 'No prober metrics for 10 minutes',
        description:
          'The prober is not running or not scraped, so the black-box SLI is blind. ' +
          'Check the mayfly-prober Deployment and its ServiceMonitor.',
      },
    },
    {
      alert: 'MayflyProberStalled',
      expr: `time() - max by (${[...config.aggregationLabels, 'endpoint', 'method'].join(', ')}) (mayfly_prober_last_probe_timestamp_seconds) > 600`,
      for: '5m',
      labels: { severity: 'ticket' },
      annotations: {
        summary:
          'The prober has not probed {{ $labels.method }} {{ $labels.endpoint }} for 10 minutes',
        description: 'The prober runs but its rounds do not complete; its logs say why.',
      },
    },
    {
      alert: 'MayflyProberSlow',
      expr: `histogram_quantile(0.95, ${sumBy(config, ['endpoint', 'method', 'le'])} (rate(mayfly_prober_probe_duration_seconds_bucket[10m]))) > ${num(config.latencyThresholdSeconds)}`,
      for: '10m',
      labels: { severity: 'ticket' },
      annotations: {
        summary: `Prober p95 latency of {{ $labels.method }} {{ $labels.endpoint }} over ${num(config.latencyThresholdSeconds * 1000)} ms`,
        description:
          'The 95th percentile of probe latency is {{ $value | humanizeDuration }} (Sigstore alerts ' +
          `on Fulcio at ${num(config.latencyThresholdSeconds * 1000)} ms).`,
      },
    },
  ];
  return withRunbook(config, [
    { name: 'mayfly-prober-slo', rules: [...sli, ...burn] },
    {
      name: 'mayfly-prober-30d',
      interval: '5m',
      rules: [
        {
          record: 'mayfly_prober:probe_errors:ratio_rate30d',
          expr: 'sum_over_time(mayfly_prober:probe_failures:rate5m[30d])\n/\nsum_over_time(mayfly_prober:probes:rate5m[30d])',
        },
      ],
    },
    { name: 'mayfly-prober-alerts', rules: other },
  ]);
}

const GENERATED =
  '# Generated by `npm run slo:rules` from k8s/observability/slo.yaml. Do not edit by hand.\n';

function yaml(value: unknown): string {
  return YAML.stringify(value, { lineWidth: 0 });
}

export function rulesFile(groups: readonly RuleGroup[]): string {
  return GENERATED + yaml({ groups });
}

export function prometheusRule(
  name: string,
  component: string,
  groups: readonly RuleGroup[],
): string {
  return (
    GENERATED +
    yaml({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: {
        name,
        labels: {
          'app.kubernetes.io/name': name,
          'app.kubernetes.io/component': component,
          'app.kubernetes.io/part-of': 'mayfly',
        },
      },
      spec: { groups },
    })
  );
}

/** Every generated file, by path relative to the repository root. */
export function generate(root: string): Map<string, string> {
  const config = loadSloConfig(join(root, 'k8s/observability/slo.yaml'));
  const ca = caRuleGroups(config);
  const prober = proberRuleGroups(config);
  return new Map([
    ['k8s/observability/rules/mayfly.rules.yaml', rulesFile(ca)],
    ['k8s/observability/rules/mayfly-prober.rules.yaml', rulesFile(prober)],
    ['k8s/base/observability/prometheusrule.yaml', prometheusRule('mayfly', 'slo', ca)],
    ['k8s/base/prober/prometheusrule.yaml', prometheusRule('mayfly-prober', 'prober', prober)],
  ]);
}

function main(argv: readonly string[]): void {
  const root = process.cwd();
  const check = argv.includes('--check');
  let stale = 0;
  for (const [path, content] of generate(root)) {
    const full = join(root, path);
    let current: string | undefined;
    try {
      current = readFileSync(full, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === content) continue;
    if (check) {
      process.stderr.write(`${path} is out of date: run npm run slo:rules\n`);
      stale++;
    } else {
      writeFileSync(full, content);
      process.stdout.write(`wrote ${path}\n`);
    }
  }
  if (stale > 0) process.exit(1);
}

if (require.main === module) main(process.argv.slice(2));
