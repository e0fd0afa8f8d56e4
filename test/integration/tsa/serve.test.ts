/**
 * `mayfly serve` (what `npm run serve` runs after building): the CA and the TSA as two
 * processes on their own ports, reachable, and both drained and gone after one SIGTERM to
 * the supervisor. A trusted root written from the two verifies the TSA's own chain.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { run as trustedRoot } from '../../../services/cli/trusted-root';
import { ensureBuilt, repoRoot } from '../../helpers/mayfly-process';
import { freePort } from '../../helpers/redis';
import { until } from '../../helpers/wait';

jest.setTimeout(120_000);

beforeAll(() => ensureBuilt());

test('serve starts the CA and the TSA, prints where they listen, and stops both on SIGTERM', async () => {
  const [ca, caMetrics, tsa, tsaMetrics] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const child = spawn(process.execPath, [join(repoRoot, 'dist/services/cli/main.js'), 'serve'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      MAYFLY_HOST: '127.0.0.1',
      MAYFLY_PORT: String(ca),
      MAYFLY_METRICS_HOST: '127.0.0.1',
      MAYFLY_METRICS_PORT: String(caMetrics),
      MAYFLY_TSA_HOST: '127.0.0.1',
      MAYFLY_TSA_PORT: String(tsa),
      MAYFLY_TSA_METRICS_HOST: '127.0.0.1',
      MAYFLY_TSA_METRICS_PORT: String(tsaMetrics),
      MAYFLY_LOG_LEVEL: 'silent',
      MAYFLY_TSA_LOG_LEVEL: 'silent',
    },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  try {
    await until(
      () => output.includes('mayfly serve: CA on'),
      `the serve banner (${output})`,
      60_000,
    );
    expect(output).toContain(`CA on http://127.0.0.1:${ca}, TSA on http://127.0.0.1:${tsa}`);
    expect((await fetch(`http://127.0.0.1:${ca}/api/v2/trustBundle`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${tsa}/api/v1/timestamp/certchain`)).status).toBe(200);
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(
        await trustedRoot([
          '--ca-url',
          `http://127.0.0.1:${ca}`,
          '--tsa-url',
          `http://127.0.0.1:${tsa}`,
        ]),
      ).toBe(0);
    } finally {
      stdout.mockRestore();
    }
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  // Both listeners are gone with their processes.
  await expect(fetch(`http://127.0.0.1:${ca}/healthz`)).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${tsa}/healthz`)).rejects.toThrow();
});
