/**
 * kiln's own directories (the build cache with the warm directories it trusts by fingerprint, the
 * rootfs cache, the image store, the id leases under /run/kiln, its config) decide what later
 * builds run and what kiln, as root, renames into a build. Another host user who can write one of
 * them, or any directory above it, can plant content there. So, as ssh does for ~/.ssh: a
 * directory kiln makes is owned by kiln's uid and not writable by anyone else, and an existing one
 * is used only when it is a real directory (not a link) owned by kiln's uid, not writable by group
 * or others, below directories that only root or kiln's uid can change (a world-writable sticky
 * directory such as /tmp counts: nobody else can rename or remove what kiln made in it).
 * Anything else is refused in one line, naming the directory and the fix.
 */
import { chmodSync, lstatSync, mkdirSync, realpathSync, type Stats } from 'node:fs';
import path from 'node:path';
import { KilnError } from './errors.ts';

export interface OwnedDirOptions {
  /** What the directory is, for messages: "the build cache". */
  readonly what: string;
  /**
   * 0o700 (default): private; an existing directory that others may read is tightened to 0700.
   * 0o755: others may read and search it (the rootfs cache, which the sandbox's ids must reach).
   */
  readonly mode?: 0o700 | 0o755;
}

const S_ISVTX = 0o1000;

/** kiln's effective uid (the owner its directories must have). */
function kilnUid(): number {
  return process.geteuid?.() ?? 0;
}

/**
 * ensureOwnedDir creates `dir` (missing parents 0755, `dir` itself `mode`) or checks the existing
 * one, and every existing directory above it, as the module comment says. Returns the resolved
 * path.
 */
export function ensureOwnedDir(dir: string, o: OwnedDirOptions): string {
  const abs = path.resolve(dir);
  const mode = o.mode ?? 0o700;
  // The deepest existing ancestor: its real path is checked component by component (a link
  // among the ancestors, such as /var/run -> /run, is judged by where it leads).
  let existing = abs;
  const missing: string[] = [];
  while (lstatSync(existing, { throwIfNoEntry: false }) === undefined) {
    missing.unshift(path.basename(existing));
    const up = path.dirname(existing);
    if (up === existing) break;
    existing = up;
  }
  if (missing.length === 0) {
    const parent = path.dirname(abs);
    checkAncestors(parent === abs ? abs : realpathSync(parent), abs, o);
    checkOwn(abs, lstatSync(abs), o, mode);
    return abs;
  }
  const base = realpathSync(existing);
  checkAncestors(base, abs, o);
  if (!lstatSync(base).isDirectory()) refuse(abs, o, `${base} is not a directory`);
  let cur = base;
  for (const [i, name] of missing.entries()) {
    cur = path.join(cur, name);
    const last = i === missing.length - 1;
    try {
      mkdirSync(cur, { mode: last ? mode : 0o755 });
    } catch (e) {
      // Made meanwhile by someone: judged like any existing directory.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      checkOwn(cur, lstatSync(cur), o, last ? mode : undefined, abs);
      continue;
    }
    // mkdir's mode went through the umask; the explicit chmod makes it exact.
    if (last) chmodSync(cur, mode);
  }
  return abs;
}

/**
 * checkOwnedFile: an existing file kiln takes settings from (its config) must be a regular file
 * owned by root or kiln's uid, not writable by group or others, in directories only they can
 * change. A missing file is fine (nothing is read).
 */
export function checkOwnedFile(file: string, o: OwnedDirOptions): void {
  const abs = path.resolve(file);
  const st = lstatSync(abs, { throwIfNoEntry: false });
  if (!st) return;
  const uid = kilnUid();
  if (!st.isFile()) refuse(abs, o, `${abs} is not a regular file`, 'replace it with a file');
  if (st.uid !== 0 && st.uid !== uid)
    refuse(
      abs,
      o,
      `${abs} is owned by uid ${st.uid}, not by root or kiln's uid ${uid}`,
      `chown ${uid} ${abs} after checking it`,
    );
  if ((st.mode & 0o022) !== 0)
    refuse(abs, o, `${abs} is writable by group or others (mode ${octal(st.mode)})`, `chmod go-w ${abs}`);
  checkAncestors(realpathSync(path.dirname(abs)), abs, o);
}

/** Every directory from `/` down to `real` (a real path) may be changed only by root or kiln. */
function checkAncestors(real: string, shown: string, o: OwnedDirOptions): void {
  const uid = kilnUid();
  let cur = real;
  for (;;) {
    const st = lstatSync(cur);
    const owner = st.uid === 0 || st.uid === uid;
    const othersWrite = (st.mode & 0o022) !== 0;
    // Sticky and root-owned (/tmp): others can add entries but not rename or remove kiln's.
    const stickyOk = (st.mode & S_ISVTX) !== 0 && st.uid === 0;
    if (!owner)
      refuse(
        shown,
        o,
        `${cur} above it is owned by uid ${st.uid}, who could replace it`,
        `choose a directory below ones only root or uid ${uid} own`,
      );
    if (othersWrite && !stickyOk)
      refuse(
        shown,
        o,
        `${cur} above it is writable by group or others (mode ${octal(st.mode)})`,
        `chmod go-w ${cur}, or choose another directory`,
      );
    const up = path.dirname(cur);
    if (up === cur) return;
    cur = up;
  }
}

/**
 * checkOwn: `p` must be a directory, not a link, owned by kiln's uid and not writable by group or
 * others; with `want` 0o700, read access for others is removed (kiln owns it, so it may).
 */
function checkOwn(p: string, st: Stats, o: OwnedDirOptions, want: number | undefined, shown = p): void {
  const uid = kilnUid();
  if (st.isSymbolicLink()) refuse(shown, o, `${p} is a symbolic link`, 'remove the link');
  if (!st.isDirectory()) refuse(shown, o, `${p} is not a directory`, 'remove it');
  if (st.uid !== uid)
    refuse(
      shown,
      o,
      `${p} is owned by uid ${st.uid}, not by kiln's uid ${uid}`,
      `chown ${uid} ${p} after checking its content, or choose another directory`,
    );
  if ((st.mode & 0o022) !== 0)
    refuse(
      shown,
      o,
      `${p} is writable by group or others (mode ${octal(st.mode)})`,
      `chmod go-w ${p} after checking its content, or choose another directory`,
    );
  if (want === 0o700 && (st.mode & 0o077) !== 0) chmodSync(p, st.mode & 0o7700);
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function refuse(dir: string, o: OwnedDirOptions, why: string, fix?: string): never {
  const subject = why.startsWith(`${dir} `) ? why : `${dir}: ${why}`;
  throw new KilnError(
    `${o.what} ${subject}: kiln refuses to use it (another user could change what kiln does)${fix ? `; ${fix}` : ''}`,
  );
}
