import { join } from 'node:path';
import { splitCommand } from '../../_shared/command.ts';
import { readTextIfExists } from '../../_shared/fsutil.ts';
import type { Process } from '../../_shared/launch.ts';

/** ProcfileEntry is one `type: command` line. */
export interface ProcfileEntry {
  readonly type: string;
  readonly line: string;
}

const LINE = /^([A-Za-z0-9._-]+)\s*:\s*(.*\S)\s*$/;

/** parseProcfile reads `type: command` lines; blank lines and `#` comments are skipped. */
export function parseProcfile(text: string): ProcfileEntry[] {
  const out: ProcfileEntry[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`Procfile: cannot read line "${line}": expected "type: command"`);
    if (out.some((e) => e.type === m[1]))
      throw new Error(`Procfile: process type "${m[1]}" is declared twice`);
    out.push({ type: m[1]!, line: m[2]! });
  }
  return out;
}

/** readProcfile returns the Procfile's entries, or undefined when the app has none. */
export async function readProcfile(appDir: string): Promise<ProcfileEntry[] | undefined> {
  const text = await readTextIfExists(join(appDir, 'Procfile'));
  return text === undefined ? undefined : parseProcfile(text);
}

/**
 * toProcesses turns entries into launch.toml processes. Plain commands become argv and run
 * directly (no shell is needed, which kiln's run image lacks); a command with shell syntax runs as
 * `/bin/sh -c`, which works only on run images that have a shell. `web` is the default process,
 * else the first one.
 */
export function toProcesses(entries: readonly ProcfileEntry[]): {
  processes: Process[];
  shellTypes: string[];
} {
  const defaultType = entries.some((e) => e.type === 'web') ? 'web' : entries[0]?.type;
  const shellTypes: string[] = [];
  const processes = entries.map((e) => {
    const argv = splitCommand(e.line);
    if (!argv) shellTypes.push(e.type);
    return { type: e.type, command: argv ?? ['/bin/sh', '-c', e.line], default: e.type === defaultType };
  });
  return { processes, shellTypes };
}

/** Programs that are Node.js: a process starting one needs the `node` a Node.js buildpack provides. */
const NODE_PROGRAMS = new Set(['node', 'nodejs']);

/**
 * runsNode tells whether a Procfile entry starts Node.js: its program (the first word, after
 * `exec` or `env NAME=value` words) is `node`; in a line with shell syntax, `node` as a command
 * word anywhere (`cd app && node web.js`).
 */
export function runsNode(entry: ProcfileEntry): boolean {
  const argv = splitCommand(entry.line);
  if (argv) {
    let i = 0;
    while (i < argv.length && (argv[i] === 'exec' || argv[i] === 'env' || /^[A-Za-z_]\w*=/.test(argv[i]!)))
      i++;
    const prog = argv[i];
    return prog !== undefined && NODE_PROGRAMS.has(prog.slice(prog.lastIndexOf('/') + 1));
  }
  return /(^|[\s;&|(`])(exec\s+)?(\S*\/)?(node|nodejs)(\s|$)/.test(entry.line);
}
