import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import YAML from 'yaml';
import { parseObjects, type K8sObject } from '../../../scripts/k8s-checksum';
import { kustomize } from '../../../scripts/kubectl';
import { loadCtlogConfig } from '../../../services/ctlog/config';
import { createCtlogMetrics } from '../../../services/ctlog/metrics';
import { metricNames } from '../../helpers/promql';

/**
 * The CT log's deployment pieces: the kustomize base and dev overlay render and every object
 * is valid for its Kubernetes schema; the pods run restricted; the Deployment's settings are
 * ones the log accepts; the alert rules are valid for promtool, pass their promtool unit
 * tests, name only metrics the log exports, and the PrometheusRule carries them unchanged.
 */

const root = resolve(__dirname, '../../..');
const dir = join(root, 'k8s/ctlog');

function modelFor(apiVersion: string, kind: string) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const path =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
      : group === ''
        ? `kubernetes-models/${version}/${kind}`
        : `kubernetes-models/${group}/${version}/${kind}`;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(path) as Record<string, new (data: unknown) => { validate(): void }>)[kind]!;
}

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8' });
  if (run.error) throw new Error('promtool is not installed (npm test installs it)');
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe.each(['base', 'overlays/dev'])('k8s/ctlog/%s', (name) => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = parseObjects(kustomize(join('k8s/ctlog', name), root));
  }, 120_000);

  it('renders objects that are valid against their schemas', () => {
    expect(objects.length).toBeGreaterThan(5);
    for (const o of objects) {
      const Model = modelFor(o.apiVersion, o.kind);
      expect(() => new Model(o).validate()).not.toThrow();
    }
  });

  it('runs every container non-root, read-only, without privileges, with probes and resources', () => {
    const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
    expect(workloads.length).toBeGreaterThan(0);
    for (const w of workloads) {
      const spec = (w as unknown as { spec: { template: { spec: Record<string, unknown> } } }).spec
        .template.spec;
      expect(spec.automountServiceAccountToken).toBe(false);
      for (const c of spec.containers as Record<string, Record<string, unknown>>[]) {
        const sc = c.securityContext!;
        expect([
          w.metadata.name,
          sc.runAsNonRoot,
          sc.readOnlyRootFilesystem,
          sc.allowPrivilegeEscalation,
        ]).toEqual([w.metadata.name, true, true, false]);
        expect(c.readinessProbe).toBeDefined();
        expect(c.livenessProbe).toBeDefined();
        expect((c.resources as { requests?: unknown }).requests).toBeDefined();
      }
    }
  });

  it('gives the log settings it accepts', () => {
    const deployment = objects.find(
      (o) => o.kind === 'Deployment' && o.metadata.name === 'mayfly-ctlog',
    )!;
    const container = (
      deployment as unknown as {
        spec: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } };
      }
    ).spec.template.spec.containers[0]!;
    const env = Object.fromEntries(
      container.env.map((e) => [e.name, e.value ?? 'postgres://from-a-secret@db/ctlog']),
    );
    expect(() => loadCtlogConfig(env)).not.toThrow();
    expect(loadCtlogConfig(env).port).toBe(6962);
  });
});

describe('k8s/ctlog alert rules', () => {
  const plain = YAML.parse(readFileSync(join(dir, 'ctlog.rules.yaml'), 'utf8')) as {
    groups: { rules: { expr: string }[] }[];
  };

  it('the PrometheusRule carries exactly the rules file’s groups', () => {
    const object = YAML.parse(readFileSync(join(dir, 'base/prometheusrule.yaml'), 'utf8')) as {
      spec: { groups: unknown };
    };
    expect(object.spec.groups).toEqual(plain.groups);
  });

  it('are valid, and their promtool unit tests pass (stale checkpoint and no leader page; healthy is silent)', () => {
    const check = promtool(['check', 'rules', 'ctlog.rules.yaml']);
    expect([check.status, check.output]).toEqual([0, expect.stringContaining('SUCCESS')]);
    const test = promtool(['test', 'rules', 'tests/ctlog-alerts.test.yaml']);
    expect([test.status, test.output]).toEqual([0, expect.stringContaining('SUCCESS')]);
  });

  it('name only metrics the log exports', async () => {
    const registry = new Registry();
    createCtlogMetrics(registry, () => Date.now());
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const recorded = new Set(
      plain.groups.flatMap((g) => g.rules.map((r) => (r as { record?: string }).record)),
    );
    for (const rule of plain.groups.flatMap((g) => g.rules))
      for (const name of metricNames(rule.expr))
        expect([name, exported.has(name) || recorded.has(name)]).toEqual([name, true]);
  });
});
