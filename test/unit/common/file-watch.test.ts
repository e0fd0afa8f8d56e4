import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchFiles, type ChangeTrigger } from '../../../services/common/file-watch';
import { silentLogger } from '../../../services/common/logger';
import { until } from '../../helpers/wait';

/** The one file-watch helper of the three reloaders (CA files, identity config, rate limits). */

function folder(): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-watch-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, 'a: 1\n');
  return { dir, file };
}

test('a burst of writes in the folder is one file change after the quiet time', async () => {
  const { dir, file } = folder();
  const seen: ChangeTrigger[] = [];
  const watch = watchFiles({
    paths: [file, undefined],
    intervalMs: 0,
    debounceMs: 100,
    what: 'test',
    logger: silentLogger,
    onChange: (trigger) => seen.push(trigger),
  });
  try {
    writeFileSync(file, 'a: 2\n');
    writeFileSync(join(dir, 'other'), 'x');
    writeFileSync(file, 'a: 3\n');
    await until(() => seen.length > 0, 'a change');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toEqual(['file']);
  } finally {
    watch.close();
  }
});

test('the timer fires without any write, and nothing fires once closed', async () => {
  const { file } = folder();
  const seen: ChangeTrigger[] = [];
  const watch = watchFiles({
    paths: [file],
    intervalMs: 30,
    watch: false,
    what: 'test',
    logger: silentLogger,
    onChange: (trigger) => seen.push(trigger),
  });
  await until(() => seen.length >= 2, 'two timer ticks');
  expect(new Set(seen)).toEqual(new Set(['timer']));
  watch.close();
  const count = seen.length;
  writeFileSync(file, 'a: 4\n');
  await new Promise((r) => setTimeout(r, 150));
  expect(seen.length).toBe(count);
});
