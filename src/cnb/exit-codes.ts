/**
 * Exit codes of the CNB platform spec (the reference lifecycle's values where the spec gives a
 * range). Only the CLI's table (src/cli/exit-codes.ts) chooses among them; errors carry none.
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
