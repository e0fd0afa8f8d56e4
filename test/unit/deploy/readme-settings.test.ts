import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENV_BINDINGS } from '../../../services/ca/config/loader';

/** The README's settings table names every setting mayfly reads from the environment. */
test('every MAYFLY_* setting is in the README table, with a default column', () => {
  const readme = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
  const rows = readme.split('\n').filter((line) => /^\| `MAYFLY_/.test(line));
  const missing = ENV_BINDINGS.map((b) => b.env).filter(
    (env) => !rows.some((row) => row.split('|')[1]!.includes(`\`${env}\``)),
  );
  expect(missing).toEqual([]);
  for (const row of rows) expect(row.split('|').length).toBeGreaterThanOrEqual(5);
});
