import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

/**
 * CPU time and memory of a server's process tree, read from /proc (Linux): the server is
 * measured from outside, so the load generator's own CPU never counts.
 */

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux this runs on

function stat(pid: number): { ppid: number; cpuSeconds: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return { ppid, cpuSeconds: (utime + stime) / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** The pid and all of its descendants (cluster workers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(Number(entry));
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const child of children.get(pid) ?? []) walk(child);
  };
  walk(root);
  return out;
}

/** User + system CPU seconds of every process in the tree (threads included). */
export function treeCpuSeconds(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += stat(pid)?.cpuSeconds ?? 0;
  return total;
}

/**
 * Waits until the processes have gone quiet: at most `share` of a core in a `windowMs`
 * window, or `timeoutMs` passed; returns how long it waited (ms). A closed-loop phase ends
 * with requests still in the server (its queue, requests waiting on a CT log); a paced phase
 * that starts at once would measure their aftermath, not its own rate.
 */
export async function waitForQuiet(
  pids: readonly number[],
  { windowMs = 250, share = 0.05, timeoutMs = 10_000 } = {},
): Promise<number> {
  const started = Date.now();
  for (;;) {
    const before = treeCpuSeconds(pids);
    await new Promise((r) => setTimeout(r, windowMs));
    const used = treeCpuSeconds(pids) - before;
    if (used <= (share * windowMs) / 1000 || Date.now() - started >= timeoutMs)
      return Date.now() - started;
  }
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident set of each process now, in MB. */
export function rssMb(pids: readonly number[]): number[] {
  return pids.map((pid) => statusKb(pid, 'VmRSS') / 1024);
}

/** Peak resident set (VmHWM) of each process, in MB. */
export function peakRssMb(pids: readonly number[]): number[] {
  return pids.map((pid) => statusKb(pid, 'VmHWM') / 1024);
}

export interface MachineFacts {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGb: number;
  readonly kernel: string;
  readonly node: string;
  readonly openssl: string;
  readonly v8: string;
}

export function machineFacts(): MachineFacts {
  const list = cpus();
  return {
    cpu: list[0]?.model ?? 'unknown',
    cores: list.length,
    memoryGb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    openssl: process.versions.openssl,
    v8: process.versions.v8,
  };
}

/** The 1-minute load average (other work on the machine skews every number). */
export function load1(): number {
  return Math.round(loadavg()[0]! * 100) / 100;
}
