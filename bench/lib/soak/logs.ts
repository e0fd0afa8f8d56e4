import { existsSync, readFileSync } from 'node:fs';

/**
 * What the replicas complained about: their warn, error and fatal log lines (pino JSON),
 * counted by level and message, so the report shows how mayfly itself saw each fault (the
 * limiter failing open during a Redis failover, for one) next to what the clients saw.
 */

const LEVELS: Record<number, string> = { 40: 'warn', 50: 'error', 60: 'fatal' };

export function summarizeLogs(files: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const file of files) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      let entry: { level?: unknown; msg?: unknown; err?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      const level = typeof entry.level === 'number' ? LEVELS[entry.level] : undefined;
      if (!level) continue;
      // The error text tells a refused connection from a write on a closed stream; long
      // texts are cut so that one message with varying detail stays one row.
      const err = typeof entry.err === 'string' ? ` (${entry.err.slice(0, 80)})` : '';
      const key = `${level}: ${String(entry.msg)}${err}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}
