import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import type { Deadline } from './deadline.ts';

// The one wrapper every step of the creator runs in: the header line, timing, the deadline check,
// the test hook and error wrapping happen here and nowhere else, so this is the one place that
// attaches a phase to what went wrong.

/** One step of the creator. */
export interface PhaseStep {
  /** The step's name: what hooks and the deadline see (`analyze`, `export-layers`, …). */
  readonly name: string;
  /** The header line logged before the step (`ANALYZING`); none for kiln's own steps. */
  readonly header?: string;
  /** The key of its time in the timings (default `name`; the same key adds up). */
  readonly timing?: string;
  /**
   * An unexpected failure (not a KilnError) becomes `<prefix>: <message>` with this exit code;
   * without it, errors pass through as they are.
   */
  readonly wrap?: { readonly prefix: string; readonly exitCode: number };
  /** The exit code a passed deadline ends the build with after this step (none: never cut short). */
  readonly deadlineExit?: number;
}

/** Where the header line goes (the CLI's logger fits). */
export interface PhaseHeaderLog {
  phase(name: string): void;
}

/** What a Phases runner needs. */
export interface PhasesOptions {
  readonly log: PhaseHeaderLog;
  /** The whole build's time limit: checked after each step that names a deadline exit code. */
  readonly deadline?: Deadline;
  /** Test hook: called after each step (e.g. to kill the process mid-export). */
  readonly onPhase?: (name: string) => void | Promise<void>;
}

/** The steps the creator runs, in order, and how each is wrapped. */
export const STEPS = {
  analyze: { name: 'analyze', header: 'ANALYZING', deadlineExit: ExitCode.AnalyzeError },
  detect: { name: 'detect', header: 'DETECTING', deadlineExit: ExitCode.DetectError },
  restore: {
    name: 'restore',
    header: 'RESTORING',
    wrap: { prefix: 'restore', exitCode: ExitCode.RestoreError },
    deadlineExit: ExitCode.RestoreError,
  },
  build: { name: 'build', header: 'BUILDING', deadlineExit: ExitCode.BuildFailed },
  exportLayers: {
    name: 'export-layers',
    header: 'EXPORTING',
    timing: 'export',
    wrap: { prefix: 'export', exitCode: ExitCode.ExportError },
    deadlineExit: ExitCode.ExportError,
  },
  // Writing the image is never cut short by the deadline: the image is nearly done.
  write: {
    name: 'export',
    timing: 'write',
    wrap: { prefix: 'export: writing the image', exitCode: ExitCode.ExportError },
  },
  cache: { name: 'cache' },
} as const satisfies Record<string, PhaseStep>;

/** Phases runs the creator's steps through one wrapper and keeps their timings. */
export class Phases {
  /** Milliseconds per step (and whatever else `time` measured). */
  readonly timings: Record<string, number> = {};
  readonly #o: PhasesOptions;

  constructor(o: PhasesOptions) {
    this.#o = o;
  }

  /** phase runs one step: header, timing, error wrapping, then the deadline check and the hook. */
  async phase<T>(step: PhaseStep, fn: () => Promise<T>): Promise<T> {
    if (step.header) this.#o.log.phase(step.header);
    let out: T;
    try {
      out = await this.time(step.timing ?? step.name, fn);
    } catch (e) {
      throw wrapError(step, e);
    }
    await this.done(step.name, step.deadlineExit);
    return out;
  }

  /** time runs `fn` and adds its duration to `timings[key]` (steps outside the phases: copy, unpack). */
  async time<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.timings[key] = (this.timings[key] ?? 0) + performance.now() - t0;
    }
  }

  /** done checks the deadline (when `deadlineExit` is given) and calls the hook for `name`. */
  async done(name: string, deadlineExit?: number): Promise<void> {
    // The deadline spans every phase: kiln's own steps end the build too once it has passed.
    if (deadlineExit !== undefined) this.#o.deadline?.check(name.replace('-layers', ''), deadlineExit);
    await this.#o.onPhase?.(name);
  }
}

function wrapError(step: PhaseStep, e: unknown): unknown {
  if (!step.wrap || e instanceof KilnError) return e;
  return new KilnError(`${step.wrap.prefix}: ${(e as Error).message}`, step.wrap.exitCode, { cause: e });
}
