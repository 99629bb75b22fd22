/**
 * BuildpackFailure is an expected failure with a message for the user; `code` is the exit status
 * (detect: 100 = does not apply, anything else = error; build: any non-zero fails the build).
 */
export class BuildpackFailure extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.name = 'BuildpackFailure';
    this.code = code;
  }
}

/** DETECT_FAIL is the exit status that means "this buildpack does not apply". */
export const DETECT_FAIL = 100;

/**
 * main runs a buildpack entry point: the function's resolved number is the exit status; errors
 * are printed as one line (BuildpackFailure) or with their stack (unexpected bugs).
 */
export function main(fn: () => Promise<number>): void {
  fn().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof BuildpackFailure) {
        process.stderr.write(`ERROR: ${err.message}\n`);
        process.exitCode = err.code;
      } else {
        process.stderr.write(`ERROR: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exitCode = 1;
      }
    },
  );
}

/**
 * log prints one progress line for the platform's build log. On Node.js >= 22.3 it writes to fd 1
 * directly: process.stdout builds a stream on first use (loading node:stream and net or tty), a
 * good share of a short buildpack run. Both ways are synchronous on Linux for files and pipes, so
 * lines stay in order; a non-blocking stdout that is full (EAGAIN) gets the rest through
 * process.stdout, which queues it. node:fs comes through process.getBuiltinModule, not an import:
 * on Node.js 18 (the build image's, which runs detect) a first `require('node:fs')` builds its ESM
 * facade, reading every export, which loads the fs streams (more than the whole detect's work).
 */
export function log(message: string): void {
  const fs = (
    process as { getBuiltinModule?: (id: 'node:fs') => typeof import('node:fs') }
  ).getBuiltinModule?.('node:fs');
  if (!fs) {
    process.stdout.write(`${message}\n`);
    return;
  }
  let bytes = Buffer.from(`${message}\n`);
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(fs.writeSync(1, bytes));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      process.stdout.write(bytes);
      return;
    }
  }
}
