import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { tempSibling } from './temp-name.ts';

/** Options of writeFileAtomic. */
export interface AtomicWriteOptions {
  /** Flush the file's data to disk before the rename (so a crash never leaves an empty file in place). */
  readonly fsync?: boolean;
  /** Also flush the directory after the rename, so the new name itself survives a crash. */
  readonly fsyncDir?: boolean;
}

/**
 * writeFileAtomic writes `data` to a temp name next to `path` (creating the directory) and renames
 * it into place, so readers never see half a file. The mode is set explicitly, not left to the
 * umask, so files other users (e.g. the sandbox's build user) must read stay readable.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  try {
    // 'wx' (O_EXCL): a link planted at the temp name is refused, never written through.
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      if (opts.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (opts.fsyncDir) await syncDir(dirname(path));
}

/** syncDir flushes a directory's entries (a rename into it) to disk. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
