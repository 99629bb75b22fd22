import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { KilnError } from '../cnb/exit-codes.ts';
import { redact } from '../registry/redact.ts';
import * as buildCommand from './commands/build.ts';
import * as builderCommand from './commands/builder.ts';
import * as configCommand from './commands/config.ts';
import * as imageCommand from './commands/image.ts';
import * as inspectCommand from './commands/inspect.ts';
import * as runCommand from './commands/run.ts';
import { ProcessExit } from './commands/run.ts';
import { type CliIO, createContext, type MutableContext } from './context.ts';
import type { GlobalFlags } from './settings.ts';

/** Each command module exports `register(program, ctx)`; add new ones to this list. */
const COMMANDS: ReadonlyArray<{ register(program: Command, ctx: MutableContext): void }> = [
  imageCommand,
  buildCommand,
  builderCommand,
  configCommand,
  runCommand,
  inspectCommand,
];

/** buildProgram creates the commander program with global flags and every command registered. */
export function buildProgram(ctx: MutableContext): Command {
  const program = new Command('kiln')
    .description('Cloud Native Buildpacks without a daemon: source to OCI image, rebase, inspect')
    .version(VERSION, '--version')
    .option('-v, --verbose', 'show debug output and stacks of unexpected errors')
    .option('-q, --quiet', 'show only warnings and errors')
    .option('--no-color', 'disable colours (NO_COLOR is respected too)')
    .addOption(
      new Option('--insecure-registry <host>', 'talk plain HTTP to this registry (repeatable)')
        .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
        .default(undefined),
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
      outputError: () => {}, // reported by main() as one ERROR line
    });
  program.hook('preAction', (_this, action) => ctx.init(action.optsWithGlobals() as GlobalFlags));
  for (const c of COMMANDS) c.register(program, ctx);
  return program;
}

const VERSION = '0.1.0';

/**
 * main runs the CLI over `argv` (without node and script) and returns the exit code: a KilnError
 * leaves with its own code and a one-line message; anything else with 1 (stack with --verbose or
 * KILN_DEBUG).
 */
export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  const ctx = createContext(io);
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    return reportError(e, ctx, argv, io);
  }
}

function reportError(e: unknown, ctx: MutableContext, argv: readonly string[], io: CliIO): number {
  if (e instanceof ProcessExit) return e.exitCode; // `kiln run`: the app's own exit code, no ERROR line
  if (e instanceof CommanderError) {
    if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
    io.stderr.write(`ERROR: ${redact(e.message.replace(/^error: /, ''))} (see kiln --help)\n`);
    return e.exitCode === 1 ? 3 : e.exitCode; // usage errors are invalid arguments
  }
  const debug = argv.includes('--verbose') || argv.includes('-v') || (io.env.KILN_DEBUG ?? '') !== '';
  if (e instanceof KilnError) {
    ctx.log.error(oneLine(e.message));
    if (debug && e.stack) io.stderr.write(redact(e.stack) + '\n');
    return e.exitCode;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  ctx.log.error(oneLine(err.message));
  if (debug && err.stack) io.stderr.write(redact(err.stack) + '\n');
  return 1;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function isEntryPoint(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const code = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    isTTY: Boolean(process.stderr.isTTY),
  });
  process.exitCode = code;
}
