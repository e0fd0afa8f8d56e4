/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where the main thread's time went: by
 * area (library or mayfly module) and by function, self time only.
 */

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  /** Sampled milliseconds, idle excluded. */
  readonly totalMs: number;
  readonly certificates: number;
  readonly areas: { name: string; ms: number }[];
  readonly functions: { name: string; where: string; ms: number }[];
}

const AREAS: readonly [RegExp, string][] = [
  [/node_modules\/jose\//, 'jose (token parsing, claims, WebCrypto call)'],
  [/node_modules\/(pkijs|asn1js|bytestreamjs|pvtsutils|pvutils)\//, 'pkijs / asn1js'],
  [
    /node_modules\/(express|router|body-parser|raw-body|type-is|content-type|iconv-lite|on-finished|finalhandler|proxy-addr|forwarded|ipaddr\.js|http-errors|depd|statuses|bytes|unpipe|media-typer|mime-types|debug)\//,
    'express, body-parser and helpers',
  ],
  [
    /node_modules\/(pino|sonic-boom|fast-redact|quick-format-unescaped|atomic-sleep|on-exit-leak-free|thread-stream|pino-std-serializers)\//,
    'pino (logs, audit log)',
  ],
  [/node_modules\/(prom-client|tdigest|bintrees)\//, 'prom-client (metrics)'],
  [/node_modules\/ioredis\//, 'ioredis'],
  [/services\/ca\/http\//, 'mayfly http/'],
  [/services\/ca\/identity\//, 'mayfly identity/'],
  [/services\/ca\/pop\//, 'mayfly pop/'],
  [/services\/ca\/issuance\//, 'mayfly issuance/'],
  [/services\/ca\/audit\//, 'mayfly audit/'],
  [/services\/ca\/ra\/|services\/ca\/ratelimit\//, 'mayfly ra/ and ratelimit/'],
  [/services\/ca\//, 'mayfly, other'],
  [/services\/ctlog\//, 'mayfly ctlog/'],
  [/services\/common\//, 'mayfly common/'],
  [/^node:internal\/crypto|^node:crypto/, 'node:crypto (OpenSSL work included)'],
  [
    /^node:(internal\/)?(http|_http|net|stream|streams|tls|dns|url|events|timers|buffer|util)/,
    'node:http, net, streams, timers',
  ],
  [/^node:/, 'node, other'],
];

function areaOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (!url) {
    if (functionName === '(garbage collector)') return 'garbage collector';
    if (functionName === '(program)') return '(program: native, not attributed)';
    return 'native / V8 builtins';
  }
  for (const [pattern, name] of AREAS) if (pattern.test(url)) return name;
  return 'other';
}

function shortUrl(url: string): string {
  const at = url.search(/node_modules\/|services\/|node:/);
  return at >= 0 ? url.slice(at) : url;
}

/**
 * `window`: monotonic-clock microseconds (process.hrtime / 1000, the clock V8 stamps samples
 * with): only samples taken in it count, so start-up and shutdown stay out.
 */
export function summarizeProfile(
  text: string,
  certificates: number,
  window?: { from: number; to: number },
): ProfileSummary {
  const profile = JSON.parse(text) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const collect = (inWindow: (t: number) => boolean) => {
    const self = new Map<number, number>();
    let t = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      const delta = profile.timeDeltas[i] ?? 0;
      t += delta;
      if (!inWindow(t)) continue;
      const id = profile.samples[i]!;
      self.set(id, (self.get(id) ?? 0) + delta / 1000);
    }
    return self;
  };
  let self = window ? collect((t) => t >= window.from && t <= window.to) : collect(() => true);
  if (self.size === 0) self = collect(() => true);
  const areas = new Map<string, number>();
  const functions = new Map<string, { name: string; where: string; ms: number }>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') continue;
    totalMs += ms;
    const area = areaOf(node);
    areas.set(area, (areas.get(area) ?? 0) + ms);
    const name = node.callFrame.functionName || '(anonymous)';
    const where = node.callFrame.url
      ? `${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`
      : '';
    const key = `${name}@${where}`;
    const entry = functions.get(key) ?? { name, where, ms: 0 };
    entry.ms += ms;
    functions.set(key, entry);
  }
  return {
    totalMs,
    certificates,
    areas: [...areas].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms),
    functions: [...functions.values()].sort((a, b) => b.ms - a.ms).slice(0, 20),
  };
}
