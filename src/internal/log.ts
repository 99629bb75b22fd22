/**
 * Logger is the one logging interface: what the CLI's logger implements and every folder receives
 * (never a global). One line per call; `phase` prints a lifecycle phase header (`===> DETECTING`).
 * Implementations redact secrets from every line (see redactor.ts).
 */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  phase(name: string): void;
}

const ignore = (): void => {};

/** discardLogger drops every line (for callers that have nothing to say to a user). */
export const discardLogger: Logger = {
  debug: ignore,
  info: ignore,
  warn: ignore,
  error: ignore,
  phase: ignore,
};

/** loggerFrom completes a partial logger (levels not given are dropped), e.g. a test's line collector. */
export function loggerFrom(partial: Partial<Logger>): Logger {
  return { ...discardLogger, ...partial };
}
