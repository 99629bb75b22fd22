/**
 * The seccomp filter every bubblewrap sandbox runs under: a BPF program written at build time by
 * src/sandbox/seccomp/filter.c (scripts/build.d/seccomp.sh → dist/seccomp/default.bpf), handed to
 * `bwrap --seccomp FD` through an inherited file descriptor. The policy (a deny list in the spirit
 * of Docker's default profile, for x86_64 and aarch64) is described in filter.c and README.md.
 *
 * Fail closed: a sandbox never starts without the filter unless the filter was switched off
 * explicitly — `seccomp: false` in the executor options, or `KILN_SECCOMP=off` in kiln's
 * environment (for kernels without seccomp filtering; documented in README.md).
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../internal/errors.ts';
import { EXTRA_FD_BASE, type HostCommand } from './_child.ts';

/** The build step's output (scripts/build.d/seccomp.sh). */
export const DEFAULT_SECCOMP_FILTER = fileURLToPath(
  new URL('../../dist/seccomp/default.bpf', import.meta.url),
);

/** The environment variable whose value `off` runs sandboxes without the filter. */
export const SECCOMP_ENV = 'KILN_SECCOMP';

/** The executor option: a BPF program file, or `false` for none (an explicit opt-out). */
export type SeccompSetting = string | false;

/** The bwrap fd number of the filter: always the first extra fd of the host command. */
export const SECCOMP_FD = EXTRA_FD_BASE;

/** BPF_MAXINSNS: the kernel refuses longer classic BPF programs. */
const MAX_INSTRUCTIONS = 4096;
/** One classic BPF instruction (struct sock_filter) is 8 bytes. */
const INSTRUCTION_BYTES = 8;

/**
 * seccompFilterOf resolves the executor option: an explicit path or `false` as given; otherwise
 * the build step's filter, unless `KILN_SECCOMP=off` is set in `env`. Any other value of
 * KILN_SECCOMP is refused, so a typo never turns the filter off silently or leaves it on unasked.
 */
export function seccompFilterOf(
  setting: SeccompSetting | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): SeccompSetting {
  if (setting !== undefined) return setting;
  const value = env[SECCOMP_ENV];
  if (value === undefined || value === '' || value === 'on') return DEFAULT_SECCOMP_FILTER;
  if (value === 'off') return false;
  throw new KilnError(`${SECCOMP_ENV}=${value} is not understood: expected "on" or "off"`);
}

/** The bwrap arguments that load the filter from SECCOMP_FD (none when it is switched off). */
export function seccompArgs(filter: SeccompSetting): string[] {
  return filter === false ? [] : ['--seccomp', String(SECCOMP_FD)];
}

/**
 * openSeccompFilter opens `file` and checks that it can be a BPF program (a non-empty whole number
 * of instructions, at most BPF_MAXINSNS), so a missing or damaged filter stops the sandbox with
 * one line saying how to rebuild it instead of a bwrap error. Returns the open fd.
 */
export function openSeccompFilter(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r'); // close-on-exec (libuv's default); spawn dup2s it into place for bwrap
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'is missing' : `cannot be opened (${code ?? String(err)})`;
    throw new KilnError(
      `seccomp filter ${file} ${why}: build it with scripts/build.sh (it needs libseccomp-dev); sandboxes do not start without it`,
    );
  }
  const st = fstatSync(fd);
  if (
    !st.isFile() ||
    st.size === 0 ||
    st.size % INSTRUCTION_BYTES !== 0 ||
    st.size > MAX_INSTRUCTIONS * INSTRUCTION_BYTES
  ) {
    closeSync(fd);
    throw new KilnError(
      `seccomp filter ${file} is not a BPF program (${st.isFile() ? `${st.size} bytes` : 'not a regular file'}; expected 1 to ${MAX_INSTRUCTIONS} instructions of ${INSTRUCTION_BYTES} bytes): rebuild it with scripts/build.sh`,
    );
  }
  return fd;
}

/**
 * withSeccompFilter runs `fn` with `cmd` plus the opened filter as its first extra fd (what
 * `seccompArgs` points bwrap at) and closes the fd afterwards; without a filter, `cmd` as is.
 */
export async function withSeccompFilter<T>(
  filter: SeccompSetting,
  cmd: HostCommand,
  fn: (cmd: HostCommand) => Promise<T>,
): Promise<T> {
  if (filter === false) return fn(cmd);
  const fd = openSeccompFilter(filter);
  try {
    return await fn({ ...cmd, extraFds: [fd, ...(cmd.extraFds ?? [])] });
  } finally {
    closeSync(fd);
  }
}
