import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Keeps `npm run bench` working: the same command in its smoke form (seconds per step),
 * against the compiled service. Nothing is asserted about the numbers — CI machines are
 * shared and noisy; `npm run bench` on a quiet machine is where numbers come from.
 */

const repoRoot = resolve(__dirname, '../..');
const runJs = join(repoRoot, 'dist/bench/run.js');

jest.setTimeout(300_000);

beforeAll(() => {
  // `npm run bench:smoke` compiles the service and the bench the same way.
  execFileSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.bench.json'],
    {
      cwd: repoRoot,
      stdio: 'inherit',
    },
  );
});

test('the benchmark command runs every scenario and writes its results and plot', async () => {
  expect(existsSync(runJs)).toBe(true);
  const out = mkdtempSync(join(tmpdir(), 'mayfly-bench-smoke-test-'));
  const stdout = await new Promise<string>((resolvePromise, reject) => {
    execFile(
      process.execPath,
      [runJs, '--smoke', '--out', out],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024, timeout: 280_000 },
      (err, so, se) => (err ? reject(new Error(`${err.message}\n${se}`)) : resolvePromise(so)),
    );
  });
  expect(stdout.trim()).toBe(join(out, 'smoke.md'));
  const report = readFileSync(join(out, 'smoke.md'), 'utf8');
  for (const section of [
    '## Machine',
    '## Targets',
    '## Scenarios',
    '## Latency versus load',
    '## Memory over a long run',
    '## Each step in-process',
    '## Where the time goes',
  ])
    expect(report).toContain(section);
  for (const scenario of [
    '| mayfly v2 |',
    '| mayfly v1 |',
    '| mayfly v2, in-memory limiter |',
    '| mayfly v2, 2 workers |',
    '| mayfly v2 through Express |',
    '| peer: @sigstore/mock |',
    '| transport floor: node:http only |',
    '### Where the CPU per certificate goes',
    'FLOOR',
  ])
    expect(report).toContain(scenario);
  // Every scenario issued certificates and none failed.
  // The scenario table only: the section ends at the next heading of any level.
  const scenarios = report.slice(report.indexOf('## Scenarios'));
  const rows = scenarios
    .slice(0, scenarios.indexOf('\n#', 5))
    .split('\n')
    .filter((l) => /^\| (mayfly|peer|transport)/.test(l));
  expect(rows.length).toBeGreaterThanOrEqual(8);
  for (const row of rows) {
    const cells = row.split('|').map((c) => c.trim());
    expect(Number(cells[2]!.replace(/,/g, ''))).toBeGreaterThan(0);
    expect(cells[9]).toBe('0');
  }
  // The real Fulcio is the peer (issue #18): measured beside mayfly, or skipped with a reason.
  expect(report).toMatch(/## mayfly versus Fulcio/);
  if (report.includes('Fulcio peer skipped:')) {
    expect(report).toMatch(/Fulcio peer skipped: it cannot be built on this machine \(.+\)/);
  } else {
    const versus = report.slice(report.indexOf('## mayfly versus Fulcio'));
    const fulcioRow = versus.split('\n').find((l) => /^\| Fulcio v\d/.test(l));
    expect(fulcioRow).toBeDefined();
    const cells = fulcioRow!.split('|').map((c) => c.trim());
    expect(Number(cells[2]!.replace(/,/g, ''))).toBeGreaterThan(0);
    expect(versus).toContain('| **mayfly (defaults) / Fulcio v');
    expect(report).not.toMatch(/versus: .* (not measured|answered \d+ requests with a failure)/);
  }
  const svg = readdirSync(out).find((f) => f.endsWith('.svg'));
  expect(svg).toBeDefined();
  expect(readFileSync(join(out, svg!), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>$/);
});
