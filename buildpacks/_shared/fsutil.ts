import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** writeFileAtomic writes through a temporary name in the same directory, then renames. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode?: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // Unique enough among the processes writing one directory; not a secret, so node:crypto (slow to
  // load at start) is not needed.
  const tmp = join(dirname(path), `.${process.pid}-${Math.random().toString(36).slice(2)}.tmp`);
  try {
    await writeFile(tmp, data, mode === undefined ? {} : { mode });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** exists is true when `path` exists (any type, symlinks not followed). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** readTextIfExists returns the file's text, or undefined when it does not exist. */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === 'ENOENT' ||
      (err as NodeJS.ErrnoException).code === 'ENOTDIR'
    ) {
      return undefined;
    }
    throw err;
  }
}

/** readJsonIfExists parses a JSON file, naming it in the error when it is not valid JSON. */
export async function readJsonIfExists(path: string): Promise<unknown> {
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * filesDigest is the sha256 of the files' names and contents in order (a missing file counts as
 * empty): the key of a layer made from them (requirements, lock files).
 */
export async function filesDigest(files: readonly string[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of files) h.update(`${f}\n`).update(await readFile(f).catch(() => Buffer.alloc(0)));
  return h.digest('hex');
}
