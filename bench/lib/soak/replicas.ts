import type { ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { peakRssMb, rssMb } from '../proc';
import { exited, isRunning, spawnLogged, stopChild, waitForLine } from './procs';

/**
 * One mayfly replica: the compiled service (`node dist/services/ca/main.js`, as an operator
 * runs it) on a fixed loopback port that nginx knows, so that a restarted replica comes back
 * where the load balancer looks for it. Each start is an "incarnation" with its own pid.
 */

export interface Incarnation {
  readonly pid: number;
  readonly startedAt: number;
  /** VmRSS right after the replica answered its first request (MB). */
  rssAtStartMb?: number;
  /** VmRSS just before the process was killed or stopped (MB), and when. */
  rssAtStopMb?: number;
  stoppedAt?: number;
}

export class Replica {
  private child: ChildProcess | undefined;
  readonly incarnations: Incarnation[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly where: {
      readonly mainJs: string;
      readonly cwd: string;
      /** Folder for the log file. */
      readonly dir: string;
      readonly env: Record<string, string>;
    },
  ) {}

  get logFile(): string {
    return join(this.where.dir, `${this.name}.log`);
  }

  get pid(): number | undefined {
    return isRunning(this.child) ? this.child.pid : undefined;
  }

  get current(): Incarnation | undefined {
    return this.incarnations[this.incarnations.length - 1];
  }

  /** Starts a new process and waits for its listening line; returns the milliseconds taken. */
  async start(): Promise<number> {
    const began = Date.now();
    let offset = 0;
    try {
      offset = statSync(this.logFile).size;
    } catch {
      // First start.
    }
    const child = spawnLogged(process.execPath, [this.where.mainJs], {
      logFile: this.logFile,
      cwd: this.where.cwd,
      env: {
        PATH: process.env.PATH ?? '',
        MAYFLY_HOST: '127.0.0.1',
        // One process, as measured so far (the default is one per usable core).
        MAYFLY_WORKERS: '1',
        MAYFLY_PORT: String(this.port),
        MAYFLY_METRICS_HOST: '127.0.0.1',
        MAYFLY_METRICS_PORT: '0',
        MAYFLY_GRPC_HOST: '127.0.0.1',
        MAYFLY_GRPC_PORT: '0',
        ...this.where.env,
      },
    });
    this.child = child;
    await waitForLine(
      this.logFile,
      /mayfly listening on http:\/\/127\.0\.0\.1:(\d+)/,
      child,
      this.name,
      { offset },
    );
    this.incarnations.push({ pid: child.pid!, startedAt: Date.now() });
    return Date.now() - began;
  }

  /** kill -9: no drain, in-flight requests are cut. */
  async crash(): Promise<void> {
    this.noteStop();
    await stopChild(this.child, 'SIGKILL');
  }

  /** The last RSS of a process that is about to go: its growth over its whole life. */
  private noteStop(): void {
    const current = this.current;
    if (!current || this.pid !== current.pid) return;
    current.rssAtStopMb = this.rssMb();
    current.stoppedAt = Date.now();
  }

  /** SIGTERM and the replica's own drain; returns how long it took to exit (ms). */
  async terminate(): Promise<number> {
    this.noteStop();
    const began = Date.now();
    await stopChild(this.child, 'SIGTERM', 30_000);
    return Date.now() - began;
  }

  exited(): Promise<void> {
    return this.child ? exited(this.child) : Promise.resolve();
  }

  /** VmRSS of the running process (MB), or undefined when it is down. */
  rssMb(): number | undefined {
    const pid = this.pid;
    return pid === undefined ? undefined : rssMb([pid])[0];
  }

  /** VmHWM (peak RSS) of the running process (MB). */
  peakRssMb(): number | undefined {
    const pid = this.pid;
    return pid === undefined ? undefined : peakRssMb([pid])[0];
  }
}
