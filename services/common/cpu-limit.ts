import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/**
 * How many cores this process may use: the smaller of the CPUs it may run on (its affinity
 * mask: `os.availableParallelism()`) and its cgroup's CPU limit (a container's `--cpus`, a
 * systemd unit's CPUQuota), rounded up. The parsing is pure (file contents in, cores out)
 * and tested on its own; `readCgroupCpuFiles` is the only part that touches the file system.
 */

/** The contents of the cgroup files that limit CPU; a file that could not be read is absent. */
export interface CgroupCpuFiles {
  /** cgroup v2 `cpu.max` ("quota period" or "max period") of this cgroup and of its ancestors. */
  readonly cpuMax?: readonly string[];
  /** cgroup v1 `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`. */
  readonly cfsQuotaUs?: string;
  readonly cfsPeriodUs?: string;
}

/** Cores (fractional) from a quota and a period in microseconds; undefined for none or nonsense. */
function cores(quota: string, period: string): number | undefined {
  if (!/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined;
  const q = Number(quota);
  const p = Number(period);
  if (q <= 0 || p <= 0) return undefined;
  return q / p;
}

/** One v2 `cpu.max`: "max 100000" is no limit, "150000 100000" is 1.5 cores. */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period, ...rest] = text.trim().split(/\s+/);
  if (quota === undefined || period === undefined || rest.length > 0) return undefined;
  if (quota === 'max') return undefined;
  return cores(quota, period);
}

/** v1 CFS: a quota of -1 is no limit. */
export function parseCfs(quotaUs: string, periodUs: string): number | undefined {
  return cores(quotaUs.trim(), periodUs.trim());
}

/** The cgroup CPU limit in cores (the strictest one found), or undefined when none applies. */
export function cgroupCpuLimit(files: CgroupCpuFiles): number | undefined {
  const limits: number[] = [];
  for (const text of files.cpuMax ?? []) {
    const limit = parseCpuMax(text);
    if (limit !== undefined) limits.push(limit);
  }
  if (files.cfsQuotaUs !== undefined && files.cfsPeriodUs !== undefined) {
    const limit = parseCfs(files.cfsQuotaUs, files.cfsPeriodUs);
    if (limit !== undefined) limits.push(limit);
  }
  return limits.length ? Math.min(...limits) : undefined;
}

export interface UsableCores {
  readonly cores: number;
  /** Why: for the start-up log. */
  readonly reason: string;
}

/** The smaller of the affinity's CPUs and the cgroup limit rounded up; at least 1. */
export function usableCores(parallelism: number, cgroupLimit: number | undefined): UsableCores {
  const affinity = Math.max(1, Math.floor(parallelism) || 1);
  if (cgroupLimit === undefined || !Number.isFinite(cgroupLimit) || cgroupLimit <= 0)
    return { cores: affinity, reason: `${affinity} CPUs available, no cgroup CPU limit` };
  const limit = Math.max(1, Math.ceil(cgroupLimit - 1e-9));
  const rounded = Math.round(cgroupLimit * 100) / 100;
  if (limit < affinity)
    return {
      cores: limit,
      reason: `cgroup CPU limit ${rounded} (rounded up to ${limit}) of ${affinity} CPUs available`,
    };
  return { cores: affinity, reason: `${affinity} CPUs available, cgroup CPU limit ${rounded}` };
}

type Read = (path: string) => string | undefined;

const readOrUndefined: Read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * Reads the cgroup CPU files of this process: v2 `cpu.max` at the mount's root (a container's
 * own cgroup under a cgroup namespace) and along the path that /proc/self/cgroup names; v1
 * `cpu.cfs_*` in the `cpu` controller's folder, likewise.
 */
export function readCgroupCpuFiles(
  read: Read = readOrUndefined,
  root = '/sys/fs/cgroup',
): CgroupCpuFiles {
  const self = read('/proc/self/cgroup') ?? '';
  const cpuMax: string[] = [];
  const v2Path = /^0::(\/.*)$/m.exec(self)?.[1];
  const v2Dirs = new Set<string>([root]);
  if (v2Path) {
    const parts = v2Path.split('/').filter(Boolean);
    for (let i = parts.length; i > 0; i--) v2Dirs.add(`${root}/${parts.slice(0, i).join('/')}`);
  }
  for (const dir of v2Dirs) {
    const text = read(`${dir}/cpu.max`);
    if (text !== undefined) cpuMax.push(text);
  }
  let cfsQuotaUs: string | undefined;
  let cfsPeriodUs: string | undefined;
  const v1Line = /^\d+:([^:]*\bcpu\b[^:]*):(\/.*)$/m.exec(self);
  const v1Dirs = [`${root}/cpu`, `${root}/cpu,cpuacct`];
  if (v1Line) {
    const path = v1Line[2] === '/' ? '' : v1Line[2]!;
    v1Dirs.unshift(`${root}/${v1Line[1]}${path}`, `${root}/cpu${path}`);
  }
  for (const dir of v1Dirs) {
    const quota = read(`${dir}/cpu.cfs_quota_us`);
    const period = read(`${dir}/cpu.cfs_period_us`);
    if (quota !== undefined && period !== undefined) {
      cfsQuotaUs = quota;
      cfsPeriodUs = period;
      break;
    }
  }
  return {
    ...(cpuMax.length ? { cpuMax } : {}),
    ...(cfsQuotaUs !== undefined && cfsPeriodUs !== undefined ? { cfsQuotaUs, cfsPeriodUs } : {}),
  };
}

/** The cores this process may use, from the running system. */
export function usableCoresHere(): UsableCores {
  return usableCores(availableParallelism(), cgroupCpuLimit(readCgroupCpuFiles()));
}
