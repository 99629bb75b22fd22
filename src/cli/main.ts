import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { inPhase, type Phase } from '../internal/errors.ts';
import { settleCgroups } from '../sandbox/cgroup.ts';
import { type CliIO, createContext, KILN_VERSION, type MutableContext } from './context.ts';
import { exitCodeOf, ProcessExit } from './exit-codes.ts';
import type { GlobalFlags } from './settings.ts';

/** A command module: `register(program, ctx)` adds its command(s) to the program. */
export interface CommandModule {
  register(program: Command, ctx: MutableContext): void;
  /** The platform spec's step the whole command is (`rebase`, `launch`): its failures carry it. */
  readonly step?: Phase;
}

/**
 * Command modules by the top-level command they register, imported only when that command runs
 * (all of them for help): start-up stays fast, and a module that fails to load breaks only its
 * own command. Add a command with one line: `name: () => import('./commands/name.ts')`.
 */
const COMMANDS: Readonly<Record<string, () => Promise<CommandModule>>> = {
  image: () => import('./commands/image.ts'),
  build: () => import('./commands/build.ts'),
  buildpack: () => import('./commands/buildpack.ts'),
  builder: () => import('./commands/builder.ts'),
  cache: () => import('./commands/cache.ts'),
  config: () => import('./commands/config.ts'),
  run: () => import('./commands/run.ts'),
  inspect: () => import('./commands/inspect.ts'),
  manifest: () => import('./commands/manifest.ts'),
  rebase: () => import('./commands/rebase.ts'),
  fleet: () => import('./commands/fleet.ts'),
  sbom: () => import('./commands/sbom.ts'),
  stack: () => import('./commands/stack.ts'),
  key: () => import('./commands/key.ts'),
  sign: () => import('./commands/sign.ts'),
  verify: () => import('./commands/verify.ts'),
  completion: () => import('./commands/completion.ts'),
  report: () => import('./commands/report.ts'),
};

// The first word of argv that is not a global option (or its value): the command to load.
function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return undefined;
    if (a === '--insecure-registry') {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

// The step of the command argv runs, read from its module (loaded already by buildProgram).
const steps = new Map<string, Phase | undefined>();

function stepOf(argv: readonly string[]): Phase | undefined {
  const name = commandOf(argv);
  return name === undefined ? undefined : steps.get(name);
}

/**
 * buildProgram creates the commander program with global flags and the commands `argv` needs
 * registered (every command when argv names none, as for help).
 */
export async function buildProgram(ctx: MutableContext, argv: readonly string[] = []): Promise<Command> {
  const program = new Command('kiln')
    .description('Cloud Native Buildpacks without a daemon: source to OCI image, rebase, inspect')
    .version(KILN_VERSION, '--version')
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
  ctx.allCommands ??= () => buildProgram(ctx, []);
  const name = commandOf(argv);
  // `kiln --version` prints the version and exits in commander before any command would run.
  if (name === undefined && argv.includes('--version')) return program;
  if (name !== undefined && Object.hasOwn(COMMANDS, name)) {
    const module = await COMMANDS[name]!();
    steps.set(name, module.step);
    module.register(program, ctx);
    return program;
  }
  for (const [n, load] of Object.entries(COMMANDS)) {
    try {
      (await load()).register(program, ctx);
    } catch (e) {
      // Help must still work when one command's module is broken; that command reports it when run.
      if (argv.includes('--verbose') || argv.includes('-v'))
        ctx.stderr.write(`kiln: command "${n}" failed to load: ${(e as Error).message}\n`);
    }
  }
  return program;
}

/**
 * main runs the CLI over `argv` (without node and script) and returns the exit code: every error
 * is one ERROR line (stack with --verbose or KILN_DEBUG) and the code exitCodeOf gives it.
 */
export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  const ctx = createContext(io);
  try {
    const program = await buildProgram(ctx, argv);
    try {
      await program.parseAsync([...argv], { from: 'user' });
    } catch (e) {
      const step = stepOf(argv);
      // A flag commander refused is a usage error whatever the command.
      throw step === undefined || e instanceof CommanderError ? e : inPhase(step, e);
    }
    return 0;
  } catch (e) {
    return reportError(e, ctx, argv, io);
  }
}

function reportError(e: unknown, ctx: MutableContext, argv: readonly string[], io: CliIO): number {
  // `kiln run` ends with the app's own exit status (ProcessExit), no ERROR line.
  if (e instanceof ProcessExit) return exitCodeOf(e);
  if (e instanceof CommanderError) {
    if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
    io.stderr.write(`ERROR: ${ctx.redactor.redact(e.message.replace(/^error: /, ''))} (see kiln --help)\n`);
    return e.exitCode === 1 ? 3 : e.exitCode; // usage errors are invalid arguments
  }
  const debug = argv.includes('--verbose') || argv.includes('-v') || (io.env.KILN_DEBUG ?? '') !== '';
  const err = e instanceof Error ? e : new Error(String(e));
  ctx.log.error(oneLine(err.message));
  if (debug && err.stack) io.stderr.write(ctx.redactor.redact(err.stack) + '\n');
  return exitCodeOf(err);
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
    // A probe: a path that does not resolve is not this module.
    return false;
  }
}

/**
 * runProcess runs the CLI over this process's argv, streams and environment and sets its exit
 * code: what running main.ts (or the bundled CLI, scripts/build.d/cli-bundle.ts) does.
 */
export async function runProcess(): Promise<void> {
  process.exitCode = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    isTTY: Boolean(process.stderr.isTTY),
  });
  // Sandbox cgroups are removed in the background as their last processes are reaped: leave none.
  await settleCgroups();
}

if (isEntryPoint()) await runProcess();
