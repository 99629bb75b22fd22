/**
 * Exit codes of the CNB platform spec (the reference lifecycle's values where the spec gives a
 * range). The CLI maps every failure to one of these, so platforms that wrap kiln can read them.
 */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  InvalidArgs: 3,
  PlatformApiUnsupported: 11,
  BuildpackApiUnsupported: 12,
  DetectNoGroup: 20,
  DetectFailedWithErrors: 21,
  DetectError: 22,
  AnalyzeError: 32,
  RestoreError: 42,
  BuildFailed: 51,
  BuildError: 52,
  ExportError: 62,
  RebaseError: 72,
  LaunchError: 82,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * KilnError is an expected failure: its message is one line for the user (what went wrong,
 * naming the thing and what was expected) and it carries the exit code to leave with.
 */
export class KilnError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.Failed, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KilnError';
    this.exitCode = exitCode;
  }
}
