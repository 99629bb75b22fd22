/**
 * kiln-init, the sandbox's pid 1 (src/sandbox/init/init.c, built by scripts/build.d/init.sh).
 *
 * bwrap's own init runs as the sandbox uid and is dumpable: a buildpack could open /proc/1/mem
 * for writing and rewrite its sandbox's pid 1, and seccomp cannot tell that open(2) apart. With
 * `--as-pid-1`, kiln-init is pid 1 instead: it makes itself non-dumpable before anything else
 * runs, then runs the command, reaps and forwards signals as bwrap's init does.
 *
 * How it gets into the sandbox without a host path: bwrap copies it (`--file FD`) from an fd kiln
 * opens per run into the sandbox's own /dev tmpfs (which is then remounted read-only), so there is
 * no mount for mountinfo to show, and /proc/1/cmdline reads `/dev/.kiln-init CMD…`. Required, like
 * the seccomp filter: a missing or damaged file stops the sandbox with one line.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../internal/errors.ts';
import type { HostCommand } from './_child.ts';

/** The repository's build of init.c. */
export const DEFAULT_INIT = fileURLToPath(new URL('../../dist/init/kiln-init', import.meta.url));

/** Where the init lives inside the sandbox. */
export const INIT_PATH = '/dev/.kiln-init';

/** Largest init accepted (a static musl build is ~30 KB; glibc's ~800 KB). */
const MAX_BYTES = 4 * 1024 * 1024;

/** Which init: a file, or `false` for bwrap's own (dumpable) init. */
export type InitSetting = string | false;

/** bwrap options that install the init from child fd `fd` and run it as pid 1. */
export function initArgs(fd: number): string[] {
  return ['--as-pid-1', '--perms', '0555', '--file', String(fd), INIT_PATH];
}

/** Opens the init and checks it can be one (a non-empty regular file, not huge). */
export function openInit(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KilnError(
      `sandbox init ${file} ${code === 'ENOENT' ? 'is missing' : `cannot be opened (${code})`}: build it with scripts/build.sh; sandboxes do not start without it`,
    );
  }
  const st = fstatSync(fd);
  if (!st.isFile() || st.size === 0 || st.size > MAX_BYTES) {
    closeSync(fd);
    throw new KilnError(
      `sandbox init ${file} is not a usable program (expected a static executable): rebuild it with scripts/build.sh`,
    );
  }
  return fd;
}

/** openInitFor opens the init of a run (undefined for bwrap's own); the caller closes it. */
export function openInitFor(init: InitSetting): number | undefined {
  return init === false ? undefined : openInit(init);
}

/** `cmd` with host fd `fd` placed first among its extra fds (none when undefined). */
export function withFd(cmd: HostCommand, fd: number | undefined): HostCommand {
  return fd === undefined ? cmd : { ...cmd, extraFds: [fd, ...(cmd.extraFds ?? [])] };
}
