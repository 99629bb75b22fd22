/**
 * Deadline is the whole build's time limit (`kiln build --timeout`): it starts with the build and
 * spans every phase. Each sandboxed process gets what is left of it, and is SIGKILLed (through its
 * pid namespace, which also ends stopped or signal-ignoring processes) when that runs out; kiln's
 * own phases check it between steps.
 *
 * LimitError is how a limit hit ends a phase: one line naming the buildpack, the limit and how to
 * raise it; the CLI's table gives it the phase's exit code (a limit hit in build is a failed
 * buildpack, 51).
 */

import { KilnError } from '../internal/errors.ts';
import { formatDuration, RAISE } from '../sandbox/limits.ts';

/** A limit stopped a buildpack process, or the build's time ran out: the build ends. */
export class LimitError extends KilnError {
  /** The buildpack process it stopped (none when the deadline passed between steps). */
  readonly process: ProcessLabel | undefined;
  constructor(message: string, process?: ProcessLabel) {
    super(message);
    this.name = 'LimitError';
    this.process = process;
    if (process) this.inPhase(process.phase);
  }
}

/** Which buildpack process a message is about. */
export interface ProcessLabel {
  readonly buildpack: string;
  readonly phase: 'detect' | 'build';
}

export class Deadline {
  readonly limitMs: number;
  readonly #end: number;

  private constructor(limitMs: number, start: number) {
    this.limitMs = limitMs;
    this.#end = start + limitMs;
  }

  /** after starts a deadline `ms` from now. */
  static after(ms: number, now: number = Date.now()): Deadline {
    if (!Number.isFinite(ms) || ms <= 0)
      throw new RangeError(`deadline: ${ms} ms is not a positive duration`);
    return new Deadline(ms, now);
  }

  /** Milliseconds left (0 once it has passed). */
  remainingMs(now: number = Date.now()): number {
    return Math.max(0, this.#end - now);
  }

  expired(now: number = Date.now()): boolean {
    return now >= this.#end;
  }

  /** `30s build timeout (--timeout)`: the limit as the user set it. */
  get label(): string {
    return `${formatDuration(this.limitMs)} build timeout (--timeout)`;
  }

  /** The one line for a buildpack process killed at the deadline. */
  stopped(p: ProcessLabel): LimitError {
    return new LimitError(`buildpack ${p.buildpack} (${p.phase}) was stopped after the ${this.label}`, p);
  }

  /**
   * check throws a LimitError when the deadline has passed: kiln's own steps call it between
   * phases (`during` names where the build was; the step's wrapper adds the phase).
   */
  check(during: string): void {
    if (this.expired())
      throw new LimitError(
        `the build was stopped during ${during}: the ${this.label} passed; raise it with ${RAISE.timeout}`,
      );
  }
}
