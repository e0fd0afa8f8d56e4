import { Registry } from 'prom-client';
import { createProberMetrics } from '../../services/prober/metrics';
import type { MayflyApp } from '../../services/ca/app';

/**
 * PromQL, as far as the observability tests need it: which metric names an expression
 * reads, and which metric names mayfly and its prober really export.
 */

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
  'Inf',
  'NaN',
]);

/** The metric names an expression selects (functions, keywords and labels left out). */
export function metricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/gi, ' ')
    .replace(/\boffset\s+\w+/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = match[0];
    if (KEYWORDS.has(word)) continue;
    const rest = stripped.slice(match.index + word.length).trimStart();
    if (rest.startsWith('(')) continue; // a function or an aggregation
    names.add(word);
  }
  return names;
}

/** Sample names of a registry: histograms as _bucket/_count/_sum, summaries as _count/_sum. */
export async function exportedNames(registry: Registry): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram')
      for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${metric.name}${suffix}`);
    if (String(metric.type) === 'summary')
      for (const suffix of ['_count', '_sum']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

/** Every sample name mayfly (this app) and the prober export. */
export async function allExportedNames(app: MayflyApp): Promise<Set<string>> {
  const names = await exportedNames(app.metrics.registry);
  for (const name of await exportedNames(createProberMetrics(new Registry()).registry))
    names.add(name);
  return names;
}
