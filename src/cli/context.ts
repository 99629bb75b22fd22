import type { Writable } from 'node:stream';
import { Redactor } from '../internal/redactor.ts';
import { Logger } from './logger.ts';
import { type GlobalFlags, resolveSettings, type Settings } from './settings.ts';

/** kiln's version (`kiln --version`, builder metadata, SBOM tool entries). */
export const KILN_VERSION = '0.1.0';

/**
 * CliContext is what every command's `register(program, ctx)` receives. `settings` and `log` are
 * resolved once from the global flags just before a command's action runs (a commander
 * preAction hook), so read them inside actions, not at registration time.
 */
export interface CliContext {
  readonly settings: Settings;
  readonly log: Logger;
  /** The run's one redactor (the logger's): secrets learnt anywhere are added to it. */
  readonly redactor: Redactor;
  /** Where command output (data such as --json) goes. Logs go to `log` (stderr). */
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** The streams and environment a CLI run uses (tests pass their own). */
export interface CliIO {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly isTTY: boolean;
}

/** MutableContext is the CLI's own handle: `init` fills settings and logger from parsed flags. */
export interface MutableContext extends CliContext {
  init(flags: GlobalFlags): void;
  /** The program with every command registered (`kiln completion`); set by main. */
  allCommands?: () => Promise<import('commander').Command>;
}

/** createContext builds an uninitialised context over `io`. */
export function createContext(io: CliIO): MutableContext {
  let settings: Settings | undefined;
  let log: Logger | undefined;
  const redactor = new Redactor();
  return {
    stdout: io.stdout,
    stderr: io.stderr,
    redactor,
    get settings(): Settings {
      if (!settings) throw new Error('CLI settings read before flags were parsed');
      return settings;
    },
    get log(): Logger {
      if (!log) {
        // Errors raised before flag parsing still need a logger: plain, info level.
        log = new Logger({ out: io.stderr, level: 'info', color: false, bars: false, redactor });
      }
      return log;
    },
    init(flags: GlobalFlags) {
      settings = resolveSettings(flags, io.env, { isTTY: io.isTTY });
      log = new Logger({
        out: io.stderr,
        level: settings.verbose ? 'debug' : settings.quiet ? 'warn' : 'info',
        color: settings.color,
        bars: settings.tty && !settings.ci,
        redactor,
      });
    },
  };
}
