import { BuildpackApiError, PlatformApiError } from '../cnb/api.ts';
import { ExitCode } from '../cnb/exit-codes.ts';
import { DataFileError } from '../internal/data-file.ts';
import { KilnError, type Phase, UsageError } from '../internal/errors.ts';
import { UntrustedFileError } from '../internal/safe-read.ts';
import { LimitError } from '../lifecycle/deadline.ts';
import { BuildpackFailure, DetectFailedError, DetectNoGroupError } from '../lifecycle/errors.ts';

// The platform spec's exit-code table, in one place. Errors say what happened and in which step;
// this decides how the process ends. What happened decides first where the spec names it (a usage
// error, an unsupported API, detection's verdict, a failed buildpack); otherwise the step does, so
// a step ends with the same code whatever went wrong inside it (a registry 5xx or a full disk
// while exporting: 62).

/** The code of a failure inside each step the spec names (anything outside a step: 1). */
const BY_PHASE: Readonly<Record<string, number>> = {
  detect: ExitCode.DetectError,
  analyze: ExitCode.AnalyzeError,
  restore: ExitCode.RestoreError,
  build: ExitCode.BuildError,
  export: ExitCode.ExportError,
  rebase: ExitCode.RebaseError,
  launch: ExitCode.LaunchError,
};

/**
 * ProcessExit ends the CLI with the exit status of the process `kiln run` ran, without an error
 * line (the process already said what it had to say).
 */
export class ProcessExit extends KilnError {
  readonly status: number;
  constructor(status: number) {
    super(`process exited with ${status}`);
    this.name = 'ProcessExit';
    this.status = status;
  }
}

/** How far down a chain of causes the table looks (a cycle or a runaway chain ends there). */
const MAX_CAUSES = 8;

/** exitCodeOf is the exit code `error` ends the process with (never 0). */
export function exitCodeOf(error: unknown): number {
  const chain = causesOf(error);
  const exit = chain.find((e) => e instanceof ProcessExit) as ProcessExit | undefined;
  if (exit) return exit.status;
  const phase = chain.find((e) => e instanceof KilnError && e.phase !== undefined) as KilnError | undefined;
  const step: Phase | undefined = phase?.phase;
  for (const e of chain) {
    const code = byWhatHappened(e, step);
    if (code !== undefined) return code;
  }
  return (step !== undefined ? BY_PHASE[step] : undefined) ?? ExitCode.Failed;
}

function byWhatHappened(e: unknown, step: Phase | undefined): number | undefined {
  if (e instanceof UsageError) return ExitCode.InvalidArgs;
  if ((e instanceof DataFileError || e instanceof UntrustedFileError) && e.userInput)
    return ExitCode.InvalidArgs;
  if (e instanceof PlatformApiError) return ExitCode.PlatformApiUnsupported;
  if (e instanceof BuildpackApiError) return ExitCode.BuildpackApiUnsupported;
  if (e instanceof DetectNoGroupError) return ExitCode.DetectNoGroup;
  if (e instanceof DetectFailedError) return ExitCode.DetectFailedWithErrors;
  // A buildpack that failed or hit a limit while building: the spec's "buildpack failed".
  if ((e instanceof BuildpackFailure || e instanceof LimitError) && step === 'build')
    return ExitCode.BuildFailed;
  return undefined;
}

function causesOf(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e !== undefined && chain.length < MAX_CAUSES && !chain.includes(e); ) {
    chain.push(e);
    e = e instanceof Error ? e.cause : undefined;
  }
  return chain;
}
