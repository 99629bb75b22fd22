// What went wrong, as data. Errors say what happened (the file, the flag, the registry's answer)
// and never how the process should end: the CLI maps them to the platform spec's exit codes in one
// table (src/cli/exit-codes.ts), so a step always ends with the same code whatever failed inside it.

/**
 * The steps of the platform spec an error can happen in (its exit-code table is by step), plus
 * kiln's own commands that run as steps (`stack`, `builder`: no code of their own).
 */
export type Phase =
  | 'analyze'
  | 'detect'
  | 'restore'
  | 'build'
  | 'export'
  | 'rebase'
  | 'launch'
  | (string & {});

/**
 * KilnError is an expected failure: its message is one line for the user naming the thing and
 * what was expected. The step it happened in is added by the step's wrapper (`phase`), once.
 */
export class KilnError extends Error {
  #phase: Phase | undefined;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KilnError';
  }

  /** The step this happened in (set by the step's wrapper; undefined outside any step). */
  get phase(): Phase | undefined {
    return this.#phase;
  }

  /** inPhase records the step this happened in; the innermost step, the first to record, wins. */
  inPhase(phase: Phase): this {
    this.#phase ??= phase;
    return this;
  }
}

/**
 * PhaseError is a failure that is not kiln's own (an fs or network error, a bug) carried out of a
 * step: the message is the cause's, prefixed with the step where the step asks for it.
 */
export class PhaseError extends KilnError {
  constructor(phase: Phase, cause: unknown, prefix?: string) {
    const message = cause instanceof Error ? cause.message : String(cause);
    super(prefix === undefined ? message : `${prefix}: ${message}`, { cause });
    this.name = 'PhaseError';
    this.inPhase(phase);
  }
}

/**
 * inPhase is how a step's wrapper passes an error on: a KilnError gets the phase recorded, anything
 * else is wrapped in a PhaseError (with `prefix` before its message when given).
 */
export function inPhase(phase: Phase, e: unknown, prefix?: string): KilnError {
  if (e instanceof KilnError) return e.inPhase(phase);
  return new PhaseError(phase, e, prefix);
}

/** UsageError is an invalid argument, flag or user-supplied file; `argument` names it when known. */
export class UsageError extends KilnError {
  readonly argument: string | undefined;
  constructor(message: string, options?: ErrorOptions & { readonly argument?: string }) {
    super(message, options);
    this.name = 'UsageError';
    this.argument = options?.argument ?? /(?:^|[\s"'(])(--[a-z][a-z0-9-]*)/.exec(message)?.[1];
  }
}

/** errnoOf is the errno code of a Node.js system error (`ENOENT`…), undefined for anything else. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * isAbsent: the one failure that means "this optional file is not there": ENOENT, raised here or
 * kept as the cause of the error that names the file.
 */
export function isAbsent(e: unknown): boolean {
  for (let i = 0, c = e; i < 4 && c !== undefined && c !== null; i++, c = (c as Error).cause)
    if (errnoOf(c) === 'ENOENT') return true;
  return false;
}

/** DigestMismatchError is content whose digest (or size) is not the one it was asked for by. */
export class DigestMismatchError extends KilnError {
  /** What was asked for (`sha256:…`, or a size in bytes). */
  readonly expected: string;
  /** What the content turned out to be. */
  readonly actual: string;
  constructor(message: string, o: { readonly expected: string; readonly actual: string }) {
    super(message);
    this.name = 'DigestMismatchError';
    this.expected = o.expected;
    this.actual = o.actual;
  }
}

/**
 * inStep runs `fn` as the step `phase` (a command that is one step of the spec: rebase, launch):
 * whatever it throws carries that phase.
 */
export function inStep<A extends unknown[], T>(
  phase: Phase,
  fn: (...args: A) => Promise<T>,
): (...args: A) => Promise<T> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (e) {
      throw inPhase(phase, e);
    }
  };
}
