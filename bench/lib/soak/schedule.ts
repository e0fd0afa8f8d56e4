import { performance } from 'node:perf_hooks';

/**
 * The chaos schedule: steps placed at fractions of the run, so that the ten-minute soak and
 * the thirty-second CI smoke go through the same steps in the same order, only closer
 * together. Steps run one after the other; a step that takes a while (a failover, a drain)
 * pushes the next ones back, and the report shows when each one really ran.
 */

export interface ChaosStep {
  /** When, as a fraction of the load's duration. */
  readonly at: number;
  readonly label: string;
  /** The replica (nginx's "host:port") this step drains, if it does. */
  readonly drains?: string;
  /** Does the step; returns what happened, for the report. */
  run(): Promise<string | void>;
}

export interface StepRecord {
  readonly label: string;
  readonly drains?: string;
  readonly plannedMs: number;
  readonly startedMs: number;
  readonly endedMs: number;
  readonly detail: string;
  readonly ok: boolean;
}

export class Schedule {
  readonly records: StepRecord[] = [];
  private origin = 0;
  private running = false;

  constructor(private readonly steps: readonly ChaosStep[]) {
    for (let i = 1; i < steps.length; i++)
      if (steps[i]!.at < steps[i - 1]!.at) throw new Error('chaos steps must be in order');
  }

  /** Index of the window in force: 0 before the first step, i after step i began. */
  window(): number {
    return this.records.length + (this.running ? 1 : 0);
  }

  /** Label of window i (for the report). */
  windowLabel(i: number): string {
    return i === 0 ? 'before any fault' : `after: ${this.steps[i - 1]?.label ?? '?'}`;
  }

  /** Milliseconds since the load started. */
  elapsed(): number {
    return performance.now() - this.origin;
  }

  /** Runs every step at its time; `origin` is performance.now() when the load started. */
  async run(origin: number, durationMs: number, log: (line: string) => void): Promise<void> {
    this.origin = origin;
    for (const step of this.steps) {
      const plannedMs = step.at * durationMs;
      const wait = plannedMs - this.elapsed();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const startedMs = this.elapsed();
      this.running = true;
      log(`chaos t=${(startedMs / 1000).toFixed(1)}s: ${step.label}`);
      let detail = '';
      let ok = true;
      try {
        detail = (await step.run()) ?? '';
      } catch (err) {
        ok = false;
        detail = `FAILED: ${(err as Error).message.split('\n')[0]}`;
      }
      this.running = false;
      const endedMs = this.elapsed();
      this.records.push({
        label: step.label,
        ...(step.drains ? { drains: step.drains } : {}),
        plannedMs,
        startedMs,
        endedMs,
        detail,
        ok,
      });
      if (detail) log(`chaos t=${(endedMs / 1000).toFixed(1)}s: ${detail}`);
    }
  }
}
