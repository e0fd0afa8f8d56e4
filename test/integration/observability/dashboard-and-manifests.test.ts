import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { kustomize } from '../../../scripts/kubectl';
import type { RuleGroup } from '../../../scripts/slo-rules';
import { loadProberConfig } from '../../../services/prober/config';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { allExportedNames, metricNames } from '../../helpers/promql';

/**
 * The Grafana dashboard (every query names metrics mayfly exports, or series our rules
 * record) and the observability and prober kustomizations (they render, every object is
 * valid against its schema, the dashboard ConfigMap is the dashboard file, and the prober
 * Deployment runs the prober with a configuration it accepts).
 */

const root = resolve(__dirname, '../../..');
const dashboardPath = join(root, 'k8s/base/observability/dashboards/mayfly.json');

interface Target {
  expr: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; query: unknown }[] };
}

const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as Dashboard;
const allPanels = (panels: Panel[]): Panel[] =>
  panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
const queryPanels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');

function recordedNames(): Set<string> {
  const names = new Set<string>();
  for (const file of ['mayfly.rules.yaml', 'mayfly-prober.rules.yaml']) {
    const { groups } = YAML.parse(
      readFileSync(join(root, 'k8s/observability/rules', file), 'utf8'),
    ) as { groups: RuleGroup[] };
    for (const rule of groups.flatMap((g) => g.rules)) if (rule.record) names.add(rule.record);
  }
  return names;
}

describe('metricNames (the PromQL reader the checks rely on)', () => {
  test('finds selectors, and skips functions, labels, keywords, numbers and variables', () => {
    expect([
      ...metricNames(
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{code=~"5..",x="y{z}"}[$__rate_interval]))) / on (slo) group_left () (1 - b:c:ratio) > bool 1e-3 and d offset 5m',
      ),
    ]).toEqual(['a_bucket', 'b:c:ratio', 'd']);
  });
});

describe('the Grafana dashboard', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
  });
  afterAll(() => ca.close());

  test('every query names only metrics mayfly or the prober export, or series the rules record', async () => {
    const known = await allExportedNames(ca.app);
    for (const name of recordedNames()) known.add(name);
    const checked: string[] = [];
    const unknown: string[] = [];
    for (const panel of queryPanels) {
      expect([panel.title, (panel.targets?.length ?? 0) > 0]).toEqual([panel.title, true]);
      for (const target of panel.targets ?? []) {
        const names = [...metricNames(target.expr)];
        expect([panel.title, names.length > 0]).toEqual([panel.title, true]);
        for (const name of names) {
          checked.push(name);
          if (!known.has(name)) unknown.push(`${panel.title}: ${name}`);
        }
      }
    }
    const variable = dashboard.templating.list.find((v) => v.name === 'namespace')!;
    const query = (variable.query as { query: string }).query;
    const first = /label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(query)?.[1];
    if (!first || !known.has(first)) unknown.push(`variable namespace: ${first}`);
    expect(unknown).toEqual([]);
    expect(checked.length).toBeGreaterThan(40);
  });

  test('shows what an SRE needs: SLOs, routes, issuance, tokens, limiter, runtime, CA expiry, CT logs', () => {
    const queries = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    for (const needed of [
      'mayfly:slo_errors:ratio_rate30d',
      'mayfly:slo_error_budget_remaining:ratio30d',
      'mayfly:slo_errors:ratio_rate1h',
      'mayfly_http_request_duration_seconds_bucket',
      'mayfly_certificates_issued_total',
      'mayfly_token_verification_failures_total',
      'mayfly_oidc_fetch_duration_seconds',
      'mayfly_ratelimit_decisions_total',
      'mayfly_ratelimit_store_duration_seconds_count',
      'mayfly_signer_duration_seconds_bucket',
      'mayfly_nodejs_eventloop_lag_p99_seconds',
      'mayfly_nodejs_heap_size_used_bytes',
      'mayfly_process_cpu_seconds_total',
      'mayfly_ca_certificate_expiry_seconds',
      'mayfly_prober:probe_errors:ratio_rate1h',
      'mayfly_ct_scts_embedded_total',
      'mayfly_ct_no_eligible_log_total',
      'mayfly_ct_submission_duration_seconds_count{result="error"',
      'mayfly_ct_submission_duration_seconds_bucket',
      'mayfly_ct_errors_total',
      'mayfly:ct_submission_slow:ratio_rate5m',
      'mayfly_ct_breaker_open',
      'mayfly_ct_log_window_end_seconds',
    ])
      expect([needed, queries.includes(needed)]).toEqual([needed, true]);
  });

  test('uses the datasource variable everywhere, with unique panel ids', () => {
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace']);
    for (const panel of queryPanels) {
      expect([panel.title, panel.datasource?.uid]).toEqual([panel.title, '${datasource}']);
      for (const t of panel.targets ?? []) expect(t.datasource?.uid).toBe('${datasource}');
    }
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: unknown;
};

function render(folder: string): K8sObject[] {
  return YAML.parseAllDocuments(kustomize(join(root, folder), root)).map(
    (d) => d.toJS() as K8sObject,
  );
}

function validate(object: K8sObject): void {
  const [group, version] = object.apiVersion.includes('/')
    ? object.apiVersion.split('/')
    : ['', object.apiVersion];
  const path =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${object.kind}`
      : group === ''
        ? `kubernetes-models/${version}/${object.kind}`
        : `kubernetes-models/${group}/${version}/${object.kind}`;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Model = (require(path) as Record<string, new (o: unknown) => { validate(): void }>)[
    object.kind
  ]!;
  new Model(object).validate();
}

describe('k8s/base/observability', () => {
  const objects = render('k8s/base/observability');

  test('renders the PrometheusRule and the dashboard ConfigMap, valid and labelled', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/mayfly-dashboard',
      'PrometheusRule/mayfly',
    ]);
    for (const o of objects) {
      expect(() => validate(o)).not.toThrow();
      expect(o.metadata.labels?.['app.kubernetes.io/part-of']).toBe('mayfly');
    }
    const configMap = objects.find((o) => o.kind === 'ConfigMap')!;
    expect(configMap.metadata.labels?.grafana_dashboard).toBe('1');
    expect(configMap.data?.['mayfly.json']).toBe(readFileSync(dashboardPath, 'utf8'));
  });
});

describe('k8s/base/prober', () => {
  const objects = render('k8s/base/prober');
  const find = (kind: string) => objects.find((o) => o.kind === kind)!;

  test('renders valid objects, all labelled as part of mayfly', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'Deployment',
      'NetworkPolicy',
      'PrometheusRule',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    for (const o of objects) {
      expect(() => validate(o)).not.toThrow();
      expect(o.metadata.labels?.['app.kubernetes.io/part-of']).toBe('mayfly');
    }
  });

  test('runs the prober with a configuration it accepts and a projected token for audience sigstore', () => {
    const pod = (
      find('Deployment').spec as {
        template: {
          spec: {
            automountServiceAccountToken: boolean;
            containers: {
              command: string[];
              env: { name: string; value: string }[];
              volumeMounts: { name: string; mountPath: string }[];
              securityContext: { readOnlyRootFilesystem: boolean; runAsNonRoot: boolean };
            }[];
            volumes: {
              name: string;
              projected?: {
                sources: { serviceAccountToken?: { audience: string; path: string } }[];
              };
            }[];
          };
        };
      }
    ).template.spec;
    const container = pod.containers[0]!;
    expect(container.command).toEqual(['node', 'dist/services/prober/main.js']);
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));
    const config = loadProberConfig(env);
    expect(config.url).toBe('http://mayfly');
    expect(config.grpcAddress).toBe('mayfly:8081');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
    });
    const tokenVolume = pod.volumes.find((v) => v.projected)!;
    const source = tokenVolume.projected!.sources[0]!.serviceAccountToken!;
    expect(source.audience).toBe('sigstore');
    const mount = container.volumeMounts.find((m) => m.name === tokenVolume.name)!;
    expect(`${mount.mountPath}/${source.path}`).toBe(config.tokenFile);
    // The Service and the ServiceMonitor scrape the port the prober listens on.
    const service = find('Service').spec as { ports: { port: number }[] };
    expect(service.ports.map((p) => p.port)).toEqual([config.metricsPort]);
  });
});
