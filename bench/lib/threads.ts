import { readFileSync, readdirSync } from 'node:fs';

/**
 * Per-thread CPU of one process, from /proc/<pid>/task/<tid>/stat and status (Linux): user
 * and system time, and voluntary / involuntary context switches, so that a figure of CPU
 * per certificate can be split into the main (JavaScript) thread, libuv's pool, V8's
 * platform workers (GC, compiler) and the rest. Thread names are the kernel's `comm`
 * (`node` for the main thread, `libuv-worker`, `V8Worker`, ...).
 */

const TICKS_PER_SECOND = 100; // USER_HZ

export interface ThreadSample {
  readonly tid: number;
  readonly name: string;
  /** Seconds. */
  readonly user: number;
  readonly system: number;
  readonly voluntarySwitches: number;
  readonly involuntarySwitches: number;
  /** Seconds on a CPU, from schedstat (nanoseconds: finer than the 10 ms ticks of stat). */
  readonly onCpu: number;
}

export function threadSamples(pid: number): ThreadSample[] {
  const out: ThreadSample[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const switches = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
      const schedstat = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8');
      out.push({
        onCpu: Number(schedstat.split(' ')[0]) / 1e9,
        tid: Number(tid),
        name,
        user: Number(fields[11]) / TICKS_PER_SECOND,
        system: Number(fields[12]) / TICKS_PER_SECOND,
        voluntarySwitches: switches('voluntary_ctxt_switches'),
        involuntarySwitches: switches('nonvoluntary_ctxt_switches'),
      });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/**
 * The class a thread is counted under. Node 20 names none of its threads (all are `node`),
 * so only the main thread (tid = pid) is told apart; bench/cpu-200.ts lists them one by one.
 */
export function threadClass(sample: ThreadSample, mainTid: number): string {
  return sample.tid === mainTid ? 'main' : 'other threads';
}

export interface ThreadUsage {
  /** Seconds, by class. */
  readonly user: Record<string, number>;
  readonly system: Record<string, number>;
  readonly voluntarySwitches: Record<string, number>;
  readonly involuntarySwitches: Record<string, number>;
  /** Seconds on a CPU (schedstat), all threads. */
  readonly onCpu: number;
}

/** What each class of thread used between two samples of the same process. */
export function threadUsage(
  pid: number,
  before: readonly ThreadSample[],
  after: readonly ThreadSample[],
): ThreadUsage {
  const usage: ThreadUsage = {
    user: {},
    system: {},
    voluntarySwitches: {},
    involuntarySwitches: {},
    onCpu: 0,
  };
  let onCpu = 0;
  const earlier = new Map(before.map((s) => [s.tid, s]));
  for (const s of after) {
    const b = earlier.get(s.tid);
    const cls = threadClass(s, pid);
    const add = (into: Record<string, number>, v: number) => (into[cls] = (into[cls] ?? 0) + v);
    add(usage.user, s.user - (b?.user ?? 0));
    add(usage.system, s.system - (b?.system ?? 0));
    add(usage.voluntarySwitches, s.voluntarySwitches - (b?.voluntarySwitches ?? 0));
    add(usage.involuntarySwitches, s.involuntarySwitches - (b?.involuntarySwitches ?? 0));
    onCpu += s.onCpu - (b?.onCpu ?? 0);
  }
  return { ...usage, onCpu };
}

export const THREAD_CLASSES = ['main', 'other threads'] as const;
