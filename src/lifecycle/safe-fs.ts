/** Guards for kiln's root-side writes into directories the build user owns. */
import { isAbsolute, join, relative, sep } from 'node:path';
import { KilnError } from '../internal/errors.ts';
import { lstatIfExists } from '../internal/fs.ts';

/**
 * assertNoLinks throws unless every component of `path` below `root` that exists is a real
 * directory (the last one may be anything but a symlink). kiln, as root, creates, renames, removes
 * and chowns entries under directories the build user owns (`<layers>/<bp>`, its layer dirs): a
 * directory a buildpack swapped for a symlink would lead those writes onto the host. Call it while
 * no buildpack process runs: the build user's host ids are leased to this build and its sandboxes'
 * processes end with each run, so nothing can swap the path between the check and the write.
 */
export async function assertNoLinks(root: string, path: string): Promise<void> {
  const rel = relative(root, path);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new KilnError(`${path} is outside ${root}`);
  }
  const parts = rel === '' ? [] : rel.split(sep);
  let cur = root;
  for (const [i, part] of parts.entries()) {
    cur = join(cur, part);
    const st = await lstatIfExists(cur);
    if (st === undefined) return;
    const last = i === parts.length - 1;
    if (st.isSymbolicLink() || (!last && !st.isDirectory())) {
      throw new KilnError(
        `${cur} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}: kiln writes below it, so it must be a directory of the layers dir`,
      );
    }
  }
}
