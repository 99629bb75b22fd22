import { KilnError } from '../internal/errors.ts';

// What can go wrong with the buildpacks themselves, as data: which buildpack, in which phase, how
// it ended. The CLI's exit-code table reads these (platform spec: 20, 21, 51); nothing here picks
// a code.

/** A buildpack process that ended badly: a non-zero status, a signal, or a missing executable. */
export class BuildpackFailure extends KilnError {
  /** `id@version`. */
  readonly buildpack: string;
  /** The exit status, when it exited. */
  readonly status: number | undefined;
  /** The signal that ended it, when one did. */
  readonly signal: string | undefined;
  /** Limits it ran into on the way (`the 2 GiB memory limit was reached`, …). */
  readonly notes: readonly string[];
  constructor(
    message: string,
    o: {
      readonly buildpack: string;
      readonly phase: 'detect' | 'build';
      readonly status?: number;
      readonly signal?: string | null;
      readonly notes?: readonly string[];
    },
  ) {
    super(message);
    this.name = 'BuildpackFailure';
    this.buildpack = o.buildpack;
    this.inPhase(o.phase);
    this.status = o.status;
    this.signal = o.signal ?? undefined;
    this.notes = o.notes ?? [];
  }
}

/** Detection ended without a group: every group failed (no buildpack errored). */
export class DetectNoGroupError extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'DetectNoGroupError';
  }
}

/** Detection ended without a group, and at least one buildpack's detect errored. */
export class DetectFailedError extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'DetectFailedError';
  }
}
