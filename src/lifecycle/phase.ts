import { inPhase, type Phase } from '../internal/errors.ts';
import type { Deadline } from './deadline.ts';

// The one wrapper every step of the creator runs in: the header line, timing, the deadline check,
// the test hook and error wrapping happen here and nowhere else, so this is the one place that
// attaches a phase to what went wrong. Which exit code a phase ends with is the CLI's business
// (src/cli/exit-codes.ts): every failure inside a step carries that step's phase.

/** One step of the creator. */
export interface PhaseStep {
  /** The step's name: what hooks and the deadline see (`analyze`, `export-layers`, …). */
  readonly name: string;
  /** The header line logged before the step (`ANALYZING`); none for kiln's own steps. */
  readonly header?: string;
  /** The key of its time in the timings (default `name`; the same key adds up). */
  readonly timing?: string;
  /** The platform spec's phase the step belongs to: every failure inside it carries this phase. */
  readonly phase: Phase;
  /** A failure that is not a KilnError gets `<prefix>: ` before its message (none: as it is). */
  readonly prefix?: string;
  /** Whether a passed deadline ends the build after this step (false: never cut short). */
  readonly deadline?: boolean;
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
  analyze: { name: 'analyze', phase: 'analyze', header: 'ANALYZING', deadline: true },
  detect: { name: 'detect', phase: 'detect', header: 'DETECTING', deadline: true },
  restore: { name: 'restore', phase: 'restore', header: 'RESTORING', prefix: 'restore', deadline: true },
  build: { name: 'build', phase: 'build', header: 'BUILDING', deadline: true },
  exportLayers: {
    name: 'export-layers',
    phase: 'export',
    header: 'EXPORTING',
    timing: 'export',
    prefix: 'export',
    deadline: true,
  },
  // Writing the image is never cut short by the deadline: the image is nearly done.
  write: { name: 'export', phase: 'export', timing: 'write', prefix: 'export: writing the image' },
  // The exporter saves the cache (platform spec): its failures are export failures.
  cache: { name: 'cache', phase: 'export' },
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
    try {
      const out = await this.time(step.timing ?? step.name, fn);
      await this.done(step.name, step.deadline);
      return out;
    } catch (e) {
      throw inPhase(step.phase, e, step.prefix);
    }
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

  /** done checks the deadline (when `deadline` is set) and calls the hook for `name`. */
  async done(name: string, deadline = false): Promise<void> {
    // The deadline spans every phase: kiln's own steps end the build too once it has passed.
    if (deadline) this.#o.deadline?.check(name.replace('-layers', ''));
    await this.#o.onPhase?.(name);
  }
}
