/**
 * The latency-versus-load plot, as a self-contained SVG (no native dependencies): p50, p90
 * and p99 against the offered rate, on a log latency axis, with the peak rate, 80 % of it
 * and the 25 ms p99 target marked, so the knee is visible at a glance.
 */

export interface LoadPoint {
  /** Offered rate, certificates per second. */
  readonly offered: number;
  /** Achieved rate. */
  readonly achieved: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

const W = 760;
const H = 440;
const M = { left: 70, right: 150, top: 40, bottom: 60 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

export function latencyPlot(
  points: readonly LoadPoint[],
  options: { peak: number; targetMs: number; title: string },
): string {
  const xs = points.map((p) => p.offered);
  const xMax = Math.max(options.peak * 1.15, ...xs) || 1;
  const lat = points.flatMap((p) => [p.p50, p.p90, p.p99]).filter((v) => v > 0);
  const yMin = 0.5;
  const yMax = Math.max(options.targetMs * 4, ...lat) * 1.5;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x = (v: number) => M.left + (v / xMax) * plotW;
  const y = (v: number) =>
    M.top +
    plotH -
    ((Math.log10(Math.max(v, yMin)) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) *
      plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - M.right / 2}" y="22" text-anchor="middle" font-size="14">${esc(options.title)}</text>`,
  );
  // Axes and grid.
  for (let decade = Math.ceil(Math.log10(yMin)); 10 ** decade <= yMax; decade++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** decade;
      if (v < yMin || v > yMax) continue;
      out.push(
        `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
        `<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`,
      );
    }
  }
  const xStep = 10 ** Math.floor(Math.log10(xMax / 5));
  const xTick = [1, 2, 5].map((m) => m * xStep).find((s) => xMax / s <= 8) ?? xStep * 10;
  for (let v = 0; v <= xMax; v += xTick) {
    out.push(
      `<line x1="${x(v)}" x2="${x(v)}" y1="${M.top}" y2="${M.top + plotH}" stroke="#f0f0f0"/>`,
      `<text x="${x(v)}" y="${M.top + plotH + 16}" text-anchor="middle">${Math.round(v)}</text>`,
    );
  }
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${M.left + plotW / 2}" y="${H - 18}" text-anchor="middle">offered load, certificates/s</text>`,
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency, ms (log)</text>`,
  );
  // Markers: target, peak, 80 % of peak.
  out.push(
    `<line x1="${M.left}" x2="${M.left + plotW}" y1="${y(options.targetMs)}" y2="${y(options.targetMs)}" stroke="#c00" stroke-dasharray="6 4"/>`,
    `<text x="${M.left + plotW + 6}" y="${y(options.targetMs) + 4}" fill="#c00">p99 target ${options.targetMs} ms</text>`,
    `<line x1="${x(options.peak)}" x2="${x(options.peak)}" y1="${M.top}" y2="${M.top + plotH}" stroke="#555" stroke-dasharray="3 3"/>`,
    `<text x="${x(options.peak) + 4}" y="${M.top + 14}" fill="#555">peak ${Math.round(options.peak)}/s</text>`,
    `<line x1="${x(options.peak * 0.8)}" x2="${x(options.peak * 0.8)}" y1="${M.top}" y2="${M.top + plotH}" stroke="#888" stroke-dasharray="2 5"/>`,
    `<text x="${x(options.peak * 0.8) - 4}" y="${M.top + 28}" fill="#888" text-anchor="end">80 %</text>`,
  );
  const series: [keyof LoadPoint, string][] = [
    ['p50', '#1f77b4'],
    ['p90', '#ff7f0e'],
    ['p99', '#d62728'],
  ];
  const sorted = [...points].sort((a, b) => a.offered - b.offered);
  series.forEach(([key, color], i) => {
    const path = sorted.map((p, j) => `${j ? 'L' : 'M'}${x(p.offered)},${y(p[key])}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of sorted)
      out.push(`<circle cx="${x(p.offered)}" cy="${y(p[key])}" r="3" fill="${color}"/>`);
    out.push(
      `<line x1="${M.left + plotW + 10}" x2="${M.left + plotW + 30}" y1="${M.top + 60 + i * 18}" y2="${M.top + 60 + i * 18}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${M.left + plotW + 36}" y="${M.top + 64 + i * 18}">${key}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
