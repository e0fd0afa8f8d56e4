import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Keeps `npm run soak -- --ct` working: the same program for thirty seconds, with the whole
 * chaos schedule compressed into them (replicas killed and drained, two Redis failovers, the
 * JWKS endpoint down, the CT log's sequencer leader killed, PostgreSQL restarted), three
 * replicas behind nginx, Redis behind Sentinel, two CT log replicas on PostgreSQL behind
 * their own nginx. Asserted: the report exists, every chaos step ran, every certificate was
 * right and carried a verified SCT, certificate-transparency-go found every one's entry in
 * the log's tree, the share is computed from the counts, and the exit status agrees with the
 * verdict. (`--ct` only adds to the plain soak: the same steps run, and more.) The share target is 99 % here (a few
 * thousand requests on a shared CI machine); the ten-minute run holds 99.99 %.
 */

const repoRoot = resolve(__dirname, '../..');
const soakJs = join(repoRoot, 'dist/bench/soak.js');

jest.setTimeout(300_000);

beforeAll(() => {
  // `npm run soak` compiles the service and the bench folder the same way.
  execFileSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.bench.json'],
    { cwd: repoRoot, stdio: 'inherit' },
  );
});

interface Summary {
  readonly requests: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly share: number;
  readonly target: number;
  readonly wrongCertificates: number;
  readonly certificatesChecked: number;
  readonly retries: number;
  readonly cutAttempts: number;
  readonly drainCuts: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly stepsRun: number;
  readonly stepsFailed: number;
  readonly pass: boolean;
  readonly ct: {
    readonly sctVerified: number;
    readonly checked: number;
    readonly ctgoSctVerified: number;
    readonly included: number;
    readonly treeSize: number;
    readonly maxLeafIndex: number;
    readonly leaderships: number;
  };
}

test('the soak runs its chaos schedule through nginx, with the CT log, and checks every certificate', async () => {
  expect(existsSync(soakJs)).toBe(true);
  const out = mkdtempSync(join(tmpdir(), 'mayfly-soak-smoke-'));
  const rate = 40;
  const { code, stdout, stderr } = await new Promise<{
    code: number;
    stdout: string;
    stderr: string;
  }>((resolvePromise) => {
    execFile(
      process.execPath,
      [
        soakJs,
        '--ct',
        '--duration',
        '30s',
        '--rate',
        String(rate),
        '--target',
        '0.99',
        '--out',
        out,
      ],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024, timeout: 280_000 },
      (err, so, se) =>
        resolvePromise({
          code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
          stdout: so,
          stderr: se,
        }),
    );
  });
  const files = readdirSync(out);
  // A CT run has its own names and leaves soak-latest.md alone.
  expect(files).toContain('soak-ct-latest.md');
  expect(files).not.toContain('soak-latest.md');
  expect(files.filter((f) => /^soak-ct-\d{4}-\d\d-\d\dT[\d-]+Z\.md$/.test(f))).toHaveLength(1);
  const report = readFileSync(join(out, 'soak-ct-latest.md'), 'utf8');
  // The report is also what the command prints.
  expect(stdout).toBe(report);
  for (const section of [
    '## Setup',
    '## Outcome',
    '## Certificates',
    '## Replicas',
    '## Schedule',
    'kill -9 replica-a',
    'SIGTERM replica-b',
    'Redis: SENTINEL FAILOVER',
    'Redis: kill -9 the primary',
    'JWKS endpoint down',
    'CT log: kill -9 the sequencer leader',
    'CT log: restart the killed replica',
    'PostgreSQL: fast restart',
    '## Certificate Transparency',
  ])
    expect(report).toContain(section);

  const line = /<!-- soak-summary (\{.*\}) -->/.exec(report);
  expect(line).not.toBeNull();
  const summary = JSON.parse(line![1]!) as Summary;
  // Open loop: every request due in the 30 s was sent, and each got a final outcome.
  expect(summary.requests).toBe(30 * rate);
  expect(summary.succeeded + summary.failed).toBe(summary.requests);
  expect(summary.share).toBeCloseTo(summary.succeeded / summary.requests, 10);
  // Every answer with a certificate was checked, and none was wrong.
  expect(summary.wrongCertificates).toBe(0);
  expect(summary.certificatesChecked).toBe(summary.succeeded + summary.wrongCertificates);
  // Upstream attempts cut while a replica drained (SIGTERM to exit): none. (Those cut by the
  // kill -9 steps are counted too, and are expected.)
  expect(summary.drainCuts).toBe(0);
  expect(summary.cutAttempts).toBeGreaterThanOrEqual(summary.drainCuts);
  expect(summary.stepsRun).toBe(14);
  expect(summary.stepsFailed).toBe(0);
  expect(summary.p50).toBeGreaterThan(0);
  expect(summary.p50).toBeLessThanOrEqual(summary.p99);
  expect(summary.p99).toBeLessThanOrEqual(summary.max);
  expect(summary.share).toBeGreaterThanOrEqual(0.99);
  // Every certificate carried the log's SCT, verified, and ct-go found each one's entry in
  // the tree; the sequencer lock changed hands (the leader was killed).
  expect(summary.ct.sctVerified).toBe(summary.succeeded);
  expect(summary.ct).toMatchObject({
    checked: summary.succeeded,
    ctgoSctVerified: summary.succeeded,
    included: summary.succeeded,
  });
  expect(summary.ct.treeSize).toBeGreaterThanOrEqual(summary.succeeded);
  expect(summary.ct.maxLeafIndex).toBeLessThan(summary.ct.treeSize);
  expect(summary.ct.leaderships).toBeGreaterThanOrEqual(2);
  // The exit status is the verdict.
  expect({ code, pass: summary.pass, stderr: summary.pass ? '' : stderr }).toEqual({
    code: 0,
    pass: true,
    stderr: '',
  });
  rmSync(out, { recursive: true, force: true });
});
