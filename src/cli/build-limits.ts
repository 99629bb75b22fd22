import type { KilnConfig } from '../config/config-file.ts';
import { UsageError } from '../internal/errors.ts';
import { DEFAULT_LIMITS } from '../sandbox/bubblewrap.ts';
import type { Limits } from '../sandbox/executor.ts';
import { BUILD_LIMIT_DEFAULTS, parseDuration, parseSize } from '../sandbox/limits.ts';

/**
 * The limits of one `kiln build`, resolved at the CLI edge: a flag wins over the config file, the
 * config file over the default. Pure; the command passes its flags, the loaded config and whether
 * anyone is watching (Settings.ci / Settings.tty).
 *
 * The timeout default (decided; README of src/sandbox): none when a person watches the build on
 * a terminal (they can press Ctrl-C, and a slow first build must not die half-way), one hour when
 * nobody does (CI set, or stderr is not a terminal), so a hung buildpack cannot hold a CI runner
 * forever. `--timeout 0` / `none` turns it off explicitly.
 */
export interface BuildLimitFlags {
  diskBudget?: string;
  diskReserve?: string;
  fileSizeLimit?: string;
  memoryLimit?: string;
  processLimit?: string;
  timeout?: string;
}

export interface BuildLimits {
  readonly limits: Limits;
  /** The whole build's time limit, or undefined for none. */
  readonly timeoutMs: number | undefined;
}

export function resolveBuildLimits(
  flags: BuildLimitFlags,
  config: Pick<
    KilnConfig,
    'diskBudget' | 'diskReserve' | 'fileSizeLimit' | 'memoryLimit' | 'processLimit' | 'timeout'
  >,
  attended: { ci: boolean; tty: boolean },
): BuildLimits {
  const size = (
    flag: string | undefined,
    flagName: string,
    conf: string | undefined,
    key: string,
    dflt: number,
  ) =>
    flag !== undefined
      ? parseSize(flag, `--${flagName}`)
      : conf !== undefined
        ? parseSize(conf, `${key} (kiln config)`)
        : dflt;
  let processes: number = DEFAULT_LIMITS.processes;
  if (flags.processLimit !== undefined) {
    processes = Number(flags.processLimit);
    if (!/^\d+$/.test(flags.processLimit) || processes < 1)
      throw new UsageError(
        `--process-limit "${flags.processLimit}" is not a number of processes: expected a positive whole number`,
      );
  } else if (config.processLimit !== undefined) processes = config.processLimit;
  const unattended = attended.ci || !attended.tty;
  const timeoutMs =
    flags.timeout !== undefined
      ? parseDuration(flags.timeout, '--timeout')
      : config.timeout !== undefined
        ? parseDuration(config.timeout, 'timeout (kiln config)')
        : unattended
          ? BUILD_LIMIT_DEFAULTS.unattendedTimeoutMs
          : undefined;
  return {
    limits: {
      ...DEFAULT_LIMITS,
      processes,
      diskBytes: size(
        flags.diskBudget,
        'disk-budget',
        config.diskBudget,
        'disk-budget',
        BUILD_LIMIT_DEFAULTS.diskBytes,
      ),
      diskReserveBytes: size(
        flags.diskReserve,
        'disk-reserve',
        config.diskReserve,
        'disk-reserve',
        BUILD_LIMIT_DEFAULTS.diskReserveBytes,
      ),
      fileSizeBytes: size(
        flags.fileSizeLimit,
        'file-size-limit',
        config.fileSizeLimit,
        'file-size-limit',
        BUILD_LIMIT_DEFAULTS.fileSizeBytes,
      ),
      memoryBytes: size(
        flags.memoryLimit,
        'memory-limit',
        config.memoryLimit,
        'memory-limit',
        BUILD_LIMIT_DEFAULTS.memoryBytes,
      ),
    },
    timeoutMs,
  };
}
