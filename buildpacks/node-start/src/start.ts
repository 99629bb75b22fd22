import { join } from 'node:path';
import { splitCommand } from '../../_shared/command.ts';
import { exists, readJsonIfExists } from '../../_shared/fsutil.ts';

/** StartCommand is the web process command and where it came from. */
export interface StartCommand {
  readonly command: readonly string[];
  readonly source: string;
  /** Set when the start script could not be used and a fallback was chosen. */
  readonly warning?: string;
}

/** ENTRY_FILES are the conventional entry points tried when package.json names none. */
export const ENTRY_FILES = ['server.js', 'app.js', 'index.js', 'main.js'] as const;

/**
 * startCommand finds how to start the app without a shell (the run image has none and npm is
 * not shipped): the start script when it is a plain command, else `main`, else a conventional
 * entry file. A start script that calls a package binary (e.g. `next start`) runs it with node
 * from node_modules/.bin, because the run image has no /usr/bin/env for its `#!` line.
 */
export async function startCommand(appDir: string): Promise<StartCommand | undefined> {
  const pkg = (await readJsonIfExists(join(appDir, 'package.json'))) as
    | { main?: unknown; scripts?: { start?: unknown } }
    | undefined;
  let warning: string | undefined;
  const start = pkg?.scripts?.start;
  if (typeof start === 'string' && start.trim()) {
    const argv = splitCommand(start);
    if (argv) {
      const bin = join('node_modules', '.bin', argv[0]!);
      if (argv[0] === 'node') return { command: argv, source: 'package.json scripts.start' };
      if (!argv[0]!.includes('/') && (await exists(join(appDir, bin)))) {
        return { command: ['node', bin, ...argv.slice(1)], source: 'package.json scripts.start' };
      }
      return { command: argv, source: 'package.json scripts.start' };
    }
    warning = `the start script "${start}" needs a shell, which the run image does not have; using main instead`;
  }
  if (typeof pkg?.main === 'string' && pkg.main.trim()) {
    return { command: ['node', pkg.main], source: 'package.json main', ...(warning ? { warning } : {}) };
  }
  for (const file of ENTRY_FILES) {
    if (await exists(join(appDir, file))) {
      return { command: ['node', file], source: file, ...(warning ? { warning } : {}) };
    }
  }
  return undefined;
}
