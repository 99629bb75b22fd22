import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pidAlive } from './process.ts';

// The one temp-name scheme: `.<name>.tmp-<pid>-<random>` next to what it becomes (so a rename into
// place stays on one file system), or `.tmp-<pid>-<random>` in a scratch directory. The pid says
// whose it is, so a sweep removes only what a dead process left; the random part keeps two temps
// of one process apart; the leading dot keeps them out of listings of what a directory holds.

const OWNER = /\.tmp-(\d+)-[0-9a-f]{8,}$/;

/** tempSibling is a fresh temp path next to `target`, for writing and then renaming into place. */
export function tempSibling(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}${suffix()}`);
}

/** tempIn is a fresh temp path inside `dir` (not tied to a final name). */
export function tempIn(dir: string): string {
  return path.join(dir, suffix());
}

function suffix(): string {
  return `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** tempOwner is the pid that made temp name `name` (a base name or a path), or undefined for other names. */
export function tempOwner(name: string): number | undefined {
  const m = OWNER.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * isAbandonedTemp tells whether `name` is a temp name made by a process that no longer exists
 * (never one of this process's own).
 */
export function isAbandonedTemp(name: string): boolean {
  const pid = tempOwner(name);
  return pid !== undefined && pid !== process.pid && !pidAlive(pid);
}
