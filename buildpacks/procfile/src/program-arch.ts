import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';

/** ELF e_machine values of the architectures kiln builds for (CNB_TARGET_ARCH names). */
const MACHINES: Readonly<Record<string, number>> = { amd64: 62, arm64: 183 };
const NAMES: Readonly<Record<number, string>> = { 62: 'amd64', 183: 'arm64', 3: '386', 40: 'arm' };

/**
 * foreignProgram tells, for a process whose program is a file in the app (`./hello-server`,
 * `bin/server`), whether that file is an ELF program for another architecture than the image's
 * (CNB_TARGET_ARCH): the machine it is for, else undefined. A prebuilt binary is copied as it is,
 * so an amd64 one in an arm64 image would only fail at launch ("exec format error"). Programs
 * outside the app (on PATH, absolute), links and unreadable files are not looked at.
 */
export async function foreignProgram(
  appDir: string,
  program: string,
  targetArch: string | undefined,
): Promise<string | undefined> {
  const want = targetArch ? MACHINES[targetArch] : undefined;
  if (want === undefined || isAbsolute(program) || !program.includes('/')) return undefined;
  const rel = normalize(program);
  if (rel === '..' || rel.startsWith(`..${sep}`)) return undefined;
  const head = Buffer.alloc(20);
  let read = 0;
  try {
    // O_NOFOLLOW: a link is not looked at (it may point anywhere).
    const f = await open(join(appDir, rel), constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
    if (!f) return undefined;
    try {
      if (!(await f.stat()).isFile()) return undefined;
      read = (await f.read(head, 0, head.length, 0)).bytesRead;
    } finally {
      await f.close();
    }
  } catch {
    return undefined;
  }
  if (read < 20 || head.toString('latin1', 0, 4) !== '\x7fELF') return undefined;
  const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
  return machine === want ? undefined : (NAMES[machine] ?? `ELF machine ${machine}`);
}
