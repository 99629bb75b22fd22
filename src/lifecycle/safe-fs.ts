import { lstat, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';

/**
 * assertInside throws unless `path` (after resolving every symlink) lies inside `root` and is a
 * regular file or a directory. kiln reads
 * buildpack outputs as root on the host, where a buildpack's symlink (`launch.toml ->
 * /root/.docker/config.json`) would otherwise make kiln copy secrets into labels, SBOMs or the
 * next buildpack's environment. A path that does not exist passes (there is nothing to read).
 * Only call it while no buildpack process runs (the sandbox's pid namespace ends with the run),
 * so nothing can swap the path between the check and the read.
 */
export async function assertInside(
  root: string,
  path: string,
  exitCode: number = ExitCode.BuildError,
  maxBytes: number = MAX_READ_BYTES,
): Promise<void> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const realRoot = await realpath(root);
  if (real !== realRoot && !real.startsWith(realRoot + sep)) {
    throw new KilnError(
      `${path} resolves to ${real}, outside ${root}: symlinks must stay inside the layers directory`,
      exitCode,
    );
  }
  // A FIFO or device would block kiln's read forever (or read a device): only files and dirs.
  const st = await stat(real);
  if (!st.isFile() && !st.isDirectory()) {
    throw new KilnError(`${path} is not a regular file or directory`, exitCode);
  }
  if (st.isFile() && st.size > maxBytes) {
    throw new KilnError(`${path} is ${st.size} bytes, more than the ${maxBytes} kiln reads`, exitCode);
  }
}

/** Largest buildpack output file (TOML, env file) kiln reads into memory. */
export const MAX_READ_BYTES = 16 * 1024 * 1024;

/** isSymlink tells whether `path` itself is a symlink (e.g. one a buildpack planted where kiln writes). */
export async function isSymlink(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * assertNoLinks throws unless every component of `path` below `root` that exists is a real
 * directory (the last one may be anything but a symlink). kiln, as root, creates, renames, removes
 * and chowns entries under directories the build user owns (`<layers>/<bp>`, its layer dirs): a
 * directory a buildpack swapped for a symlink would lead those writes onto the host. Call it while
 * no buildpack process runs: the build user's host ids are leased to this build and its sandboxes'
 * processes end with each run, so nothing can swap the path between the check and the write.
 */
export async function assertNoLinks(
  root: string,
  path: string,
  exitCode: number = ExitCode.BuildError,
): Promise<void> {
  const rel = relative(root, path);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new KilnError(`${path} is outside ${root}`, exitCode);
  }
  const parts = rel === '' ? [] : rel.split(sep);
  let cur = root;
  for (const [i, part] of parts.entries()) {
    cur = join(cur, part);
    const st = await lstat(cur).catch(() => undefined);
    if (st === undefined) return;
    const last = i === parts.length - 1;
    if (st.isSymbolicLink() || (!last && !st.isDirectory())) {
      throw new KilnError(
        `${cur} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}: kiln writes below it, so it must be a directory of the layers dir`,
        exitCode,
      );
    }
  }
}
