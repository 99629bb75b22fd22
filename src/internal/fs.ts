import type { Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';

// Absent means ENOENT (or ENOTDIR: a parent is a file). Any other failure (EACCES, EIO, ELOOP) is
// not "absent" and is thrown, so a broken path is never silently treated as missing.

function absent(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** exists tells whether a directory entry named `p` exists (a symlink counts; it is not followed). */
export async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if (absent(e)) return false;
    throw e;
  }
}

/** isDir tells whether `p` is a directory, following symlinks (a dangling link is not one). */
export async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch (e) {
    if (absent(e) || (e as NodeJS.ErrnoException).code === 'ELOOP') return false;
    throw e;
  }
}

/** lstatIfExists is lstat, undefined only when `p` is absent (ENOENT, ENOTDIR); other failures throw. */
export async function lstatIfExists(p: string): Promise<Stats | undefined> {
  try {
    return await lstat(p);
  } catch (e) {
    if (absent(e)) return undefined;
    throw e;
  }
}

/** statIfExists is stat (links followed), undefined only when `p` is absent; other failures throw. */
export async function statIfExists(p: string): Promise<Stats | undefined> {
  try {
    return await stat(p);
  } catch (e) {
    if (absent(e)) return undefined;
    throw e;
  }
}
