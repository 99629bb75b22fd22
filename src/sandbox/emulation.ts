import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { KilnError } from '../internal/errors.ts';

// Builds for another architecture run the build image's programs under qemu-user, through the
// kernel's binfmt_misc: an arm64 ELF exec'd in a sandbox starts /usr/libexec/qemu-binfmt/… on
// the host. The registration needs the F flag (the interpreter is opened when registered), since
// a sandbox's root holds no qemu. Seccomp then filters the *host's* system calls (qemu
// translates the guest's), which is the x86_64 half of dist/seccomp/default.bpf on an amd64 host.

/** The binfmt_misc entry Debian's qemu-user-static registers, by OCI architecture. */
const QEMU_ENTRY: Readonly<Record<string, string>> = {
  arm64: 'qemu-aarch64',
  arm: 'qemu-arm',
  riscv64: 'qemu-riscv64',
};

const FIX = (entry: string) =>
  `as root: apt-get install qemu-user-static binfmt-support; mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable ${entry}`;

/** EmulationMissingError: this machine cannot run the target's programs; says what and the fix. */
export class EmulationMissingError extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'EmulationMissingError';
  }
}

/** What checkEmulation found: the binfmt entry used, or nothing when the build is native. */
export interface Emulation {
  readonly entry: string;
  readonly interpreter: string;
}

/**
 * checkEmulation makes sure programs of `arch` (an OCI architecture) can run here when it is not
 * `hostArch`: binfmt_misc mounted at `binfmtDir`, the qemu entry registered, enabled and with the
 * F flag, its interpreter present. Fails with one line naming what is missing and the commands
 * that fix it. Undefined for a native build.
 */
export function checkEmulation(
  arch: string,
  hostArch: string,
  binfmtDir = '/proc/sys/fs/binfmt_misc',
): Emulation | undefined {
  if (arch === hostArch) return undefined;
  const entry = QEMU_ENTRY[arch];
  const what = `linux/${arch} build steps run under emulation on this ${hostArch} machine`;
  if (!entry) throw new EmulationMissingError(`${what}, and kiln knows no qemu-user emulator for ${arch}`);
  let status: string;
  try {
    status = readFileSync(path.join(binfmtDir, 'status'), 'utf8').trim();
  } catch {
    throw new EmulationMissingError(`${what}, but binfmt_misc is not mounted at ${binfmtDir}: ${FIX(entry)}`);
  }
  if (status !== 'enabled')
    throw new EmulationMissingError(`${what}, but binfmt_misc is disabled (status ${status}): ${FIX(entry)}`);
  let text: string;
  try {
    text = readFileSync(path.join(binfmtDir, entry), 'utf8');
  } catch {
    throw new EmulationMissingError(`${what}, but ${entry} is not registered in binfmt_misc: ${FIX(entry)}`);
  }
  const field = (k: string) => new RegExp(`^${k}:? (.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  if (!/^enabled$/m.test(text))
    throw new EmulationMissingError(`${what}, but the ${entry} binfmt entry is disabled: ${FIX(entry)}`);
  if (!field('flags').includes('F'))
    throw new EmulationMissingError(
      `${what}, but ${entry} is registered without the F flag (sandboxes hold no qemu): as root: update-binfmts --disable ${entry}; apt-get install --reinstall qemu-user-static; update-binfmts --enable ${entry}`,
    );
  const interpreter = field('interpreter');
  try {
    if (!statSync(interpreter).isFile()) throw new Error('not a file');
  } catch {
    throw new EmulationMissingError(
      `${what}, but ${entry}'s interpreter ${interpreter || '(none)'} is missing: ${FIX(entry)}`,
    );
  }
  return { entry, interpreter };
}
