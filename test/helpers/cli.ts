// Runs the kiln CLI in process (src/cli/main.ts) with a given environment and collects what it
// writes, so CLI tests need no child process and each one picks its own KILN_HOME / config.
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main.ts';

/** What one in-process kiln run printed and returned. */
export interface MainResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** A Writable that appends every chunk, as text, to `into`. */
function collect(into: string[]): Writable {
  return new Writable({
    write(c, _e, cb) {
      into.push(String(c));
      cb();
    },
  });
}

/**
 * runMain runs `kiln <argv>` in process with exactly `env` (the test's HOME, KILN_HOME,
 * KILN_CONFIG, ...: nothing is inherited; an undefined value is an unset variable) and no TTY.
 */
export async function runMain(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<MainResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, {
    stdout: collect(out),
    stderr: collect(err),
    env: { ...env },
    isTTY: false,
  });
  return { code, out: out.join(''), err: err.join('') };
}
