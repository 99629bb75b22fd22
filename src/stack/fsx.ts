import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

// File writes for staged root filesystems. Modes must not depend on the process umask: the
// modes land in the image layer, and the same lock must give the same image under any umask.

/** writeFileExact writes `data` and sets exactly `mode`. */
export async function writeFileExact(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await writeFile(path, data);
  await chmod(path, mode);
}

/** mkdirExact creates `path` (and missing parents) and gives every directory it created `mode`. */
export async function mkdirExact(path: string, mode = 0o755): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first === undefined) return;
  for (let d = path; ; d = dirname(d)) {
    await chmod(d, mode);
    if (d === first || d === dirname(d)) break;
  }
}
