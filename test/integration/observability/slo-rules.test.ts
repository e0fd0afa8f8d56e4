import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import YAML from 'yaml';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { createMetrics } from '../../../services/ca/metrics/metrics';
import {
  BURN_WINDOWS,
  caRuleGroups,
  generate,
  loadSloConfig,
  type RuleGroup,
} from '../../../scripts/slo-rules';
import { startTestCa, type TestCa } from '../../helpers/mayfly';
import { allExportedNames, metricNames } from '../../helpers/promql';

/**
 * The SLO rules: generated from k8s/observability/slo.yaml and in sync with it, the same
 * groups in the plain rules file and in the PrometheusRule, valid for promtool, and their
 * promtool unit tests pass (fast burns page, slow burns open tickets, healthy traffic is
 * silent). promtool comes from Debian's `prometheus` package; scripts/test.sh installs
 * it. Without it this test fails: rules nobody ran are not tested rules.
 */

const root = resolve(__dirname, '../../..');
const rulesDir = join(root, 'k8s/observability/rules');
const testsDir = join(root, 'k8s/observability/tests');

function promtool(args: string[], cwd = root): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd, encoding: 'utf8' });
  if (run.error && (run.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error(
      'promtool is not installed: apt-get install prometheus (npm test installs it when missing)',
    );
  }
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

const groupsOf = (path: string) =>
  (YAML.parse(readFileSync(path, 'utf8')) as { groups: RuleGroup[] }).groups;

describe('generated from k8s/observability/slo.yaml', () => {
  test('every generated file is up to date (npm run slo:rules)', () => {
    for (const [path, content] of generate(root)) {
      expect([path, readFileSync(join(root, path), 'utf8') === content]).toEqual([path, true]);
    }
  });

  test('the PrometheusRules carry exactly the plain rules files’ groups, and are valid', () => {
    for (const [plain, manifest] of [
      ['mayfly.rules.yaml', 'k8s/base/observability/prometheusrule.yaml'],
      ['mayfly-prober.rules.yaml', 'k8s/base/prober/prometheusrule.yaml'],
    ] as const) {
      const object = YAML.parse(readFileSync(join(root, manifest), 'utf8')) as {
        spec: { groups: unknown };
      };
      expect(object.spec.groups).toEqual(groupsOf(join(rulesDir, plain)));
      expect(() => new PrometheusRule(object as never).validate()).not.toThrow();
    }
  });

  test('the objective is set in one place: another objective changes every threshold and the recorded objective', () => {
    const config = loadSloConfig(join(root, 'k8s/observability/slo.yaml'));
    expect(config.objectives.availability).toBe(0.999);
    const groups = caRuleGroups({
      ...config,
      objectives: { ...config.objectives, availability: 0.995 },
    });
    const rules = groups.flatMap((g) => g.rules);
    const burns = rules.filter(
      (r) => r.alert === 'MayflyErrorBudgetBurn' && r.labels?.slo === 'availability',
    );
    expect(
      burns.map((r) => [r.labels?.severity, r.labels?.long_window, r.labels?.short_window]),
    ).toEqual(BURN_WINDOWS.map((w) => [w.severity, w.long, w.short]));
    for (const [rule, window] of burns.map((r, i) => [r, BURN_WINDOWS[i]!] as const)) {
      expect(rule.expr).toContain(
        `mayfly:slo_errors:ratio_rate${window.long}{slo="availability"} > (${window.factor} * 0.005)`,
      );
      expect(rule.expr).toContain(
        `mayfly:slo_errors:ratio_rate${window.short}{slo="availability"} > (${window.factor} * 0.005)`,
      );
    }
    expect(
      rules.find(
        (r) => r.record === 'mayfly:slo_objective:ratio' && r.labels?.slo === 'availability',
      )?.expr,
    ).toBe('vector(0.995)');
  });

  test('the latency threshold is a bucket boundary of the request histogram and of the CT submission histogram', async () => {
    const config = loadSloConfig(join(root, 'k8s/observability/slo.yaml'));
    const metrics = createMetrics(new Registry());
    metrics.httpRequestDuration.observe(
      { route: '/api/v2/signingCert', method: 'POST', code: '200' },
      0.1,
    );
    metrics.ctSubmissionDuration.observe({ log: 'http://ctlog.test', result: 'ok' }, 0.1);
    const le = `le="${config.latencyThresholdSeconds}"`;
    expect(
      await metrics.registry.getSingleMetricAsString('mayfly_http_request_duration_seconds'),
    ).toContain(le);
    expect(
      await metrics.registry.getSingleMetricAsString('mayfly_ct_submission_duration_seconds'),
    ).toContain(le);
    // The CT rules read that very bucket.
    const ct = caRuleGroups(config).find((g) => g.name === 'mayfly-ct')!;
    expect(
      ct.rules.find((r) => r.record === 'mayfly:ct_submission_slow:ratio_rate5m')?.expr,
    ).toContain(`mayfly_ct_submission_duration_seconds_bucket{${le}}`);
  });

  describe('every raw metric a rule reads is one mayfly or its prober exports', () => {
    let ca: TestCa;
    beforeAll(async () => {
      ca = await startTestCa();
    });
    afterAll(() => ca.close());

    test.each(['mayfly.rules.yaml', 'mayfly-prober.rules.yaml'])('%s', async (file) => {
      const exported = await allExportedNames(ca.app);
      const rules = groupsOf(join(rulesDir, file)).flatMap((g) => g.rules);
      const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
      const unknown = rules.flatMap((r) =>
        [...metricNames(r.expr)].filter((n) => !recorded.has(n) && !exported.has(n)),
      );
      expect(unknown).toEqual([]);
    });
  });
});

describe('promtool', () => {
  test('check rules: both rules files are valid', () => {
    const { status, output } = promtool([
      'check',
      'rules',
      join(rulesDir, 'mayfly.rules.yaml'),
      join(rulesDir, 'mayfly-prober.rules.yaml'),
    ]);
    expect([status, output]).toEqual([0, expect.stringContaining('SUCCESS')]);
  });

  test('test rules: fast burns page, slow burns open tickets, healthy traffic stays silent', () => {
    const files = readdirSync(testsDir)
      .filter((f) => f.endsWith('.test.yaml'))
      .sort();
    expect(files).toEqual([
      'mayfly-alerts.test.yaml',
      'mayfly-ct.test.yaml',
      'mayfly-prober.test.yaml',
      'mayfly-slo.test.yaml',
    ]);
    const { status, output } = promtool(['test', 'rules', ...files], testsDir);
    expect([status, output]).toEqual([0, expect.not.stringContaining('FAILED')]);
    expect(output.match(/SUCCESS/g)).toHaveLength(files.length);
    // promtool evaluates days of series at one-minute steps: seconds, more on a busy machine.
  }, 120_000);

  test('the generator’s --check mode agrees (what CI runs after a build)', () => {
    const built = join(root, 'dist/scripts/slo-rules.js');
    try {
      readFileSync(built);
    } catch {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    }
    const run = spawnSync(process.execPath, [built, '--check'], { cwd: root, encoding: 'utf8' });
    expect([run.status, run.stderr]).toEqual([0, '']);
  });
});
