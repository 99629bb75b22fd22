import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, type Stats } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  readlink,
  realpath,
  stat,
  symlink,
} from 'node:fs/promises';
import path from 'node:path';
import { type KilnError, UsageError } from '../internal/errors.ts';
import type { SourceListing } from '../layers/source-listing.ts';
import type { SourceFilter } from './source-filter.ts';

/** Options of copyAppSource. */
export interface CopyAppSourceOptions {
  /** Owner to give every copied entry (the build user, CNB_USER_ID); unchanged when undefined. */
  readonly uid?: number;
  readonly gid?: number;
  /** Files copied at once (default 16): copyFile runs on the thread pool. */
  readonly concurrency?: number;
}

/** What copyAppSource did. */
export interface CopyAppSourceResult {
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly bytes: number;
  /** Relative paths not copied because they are neither file, directory nor symlink (sockets, fifos, devices). */
  readonly skipped: readonly string[];
  /** What was copied, as git's index sees it (see SourceListing). */
  readonly listing: SourceListing;
}

/** How long before the copy a change makes a file "recent" (far above any timestamp tick). */
const RECENT_MS = 1000;

const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * copyAppSource copies the app directory `src` into `dst` (the build's workspace; created if
 * needed, expected empty) keeping only what `filter` includes. The walk is sorted by name bytes,
 * so the result does not depend on the directory order of the host file system. Symlinks are
 * copied as symlinks (never followed). Modes keep their permission bits (setuid, setgid and sticky
 * are dropped: app files have no business carrying them); owners become `uid:gid` when given.
 * A `dst` inside `src` is skipped, so a workspace under the app directory cannot copy into itself.
 */
export async function copyAppSource(
  src: string,
  dst: string,
  filter: SourceFilter,
  opts: CopyAppSourceOptions = {},
): Promise<CopyAppSourceResult> {
  const root = await appRoot(src);
  await mkdir(dst, { recursive: true });
  const dstReal = await realpath(dst);
  const run: CopyRun = {
    src,
    dstReal,
    dstStat: await stat(dstReal),
    filter,
    opts,
    stats: { files: 0, dirs: 0, symlinks: 0, bytes: 0, skipped: [] },
    dirModes: [],
    made: new Set<string>(['']),
    modes: new Map<string, number>(),
    pool: new Pool(opts.concurrency ?? 16),
    started: Date.now(),
    listing: createHash('sha256').update('kiln-source-listing-1\n'),
    recent: [],
  };
  // The root is the user's choice of directory: opened by its real path.
  const rootFd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await walk(run, '', rootFd);
  } finally {
    await run.pool.drain();
    closeSync(rootFd);
  }
  for (const [dir, mode] of run.dirModes.reverse()) await chmod(dir, mode);
  return {
    ...run.stats,
    listing: { fingerprint: `sha256:${run.listing.digest('hex')}`, recent: run.recent },
  };
}

/** appRoot is the real path of the app directory; missing or not a directory is a usage error. */
async function appRoot(src: string): Promise<string> {
  try {
    const root = await realpath(src);
    if (!(await lstat(root)).isDirectory())
      throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    return root;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `app directory ${src}: ${code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : `cannot read (${code})`}`,
      { cause: err },
    );
  }
}

/** CopyRun is one copy's inputs and what it has done so far; it lives only as long as copyAppSource. */
interface CopyRun {
  readonly src: string;
  readonly dstReal: string;
  readonly dstStat: Stats;
  readonly filter: SourceFilter;
  readonly opts: CopyAppSourceOptions;
  readonly stats: { files: number; dirs: number; symlinks: number; bytes: number; skipped: string[] };
  /** Directories made, with the mode each gets once the copy is done (deepest last). */
  readonly dirModes: Array<[string, number]>;
  readonly made: Set<string>;
  /** Source modes of the directories the walk has reached. */
  readonly modes: Map<string, number>;
  readonly pool: Pool;
  readonly started: number;
  readonly listing: Hash;
  readonly recent: string[];
}

// Directories count by name and mode only: entries coming and going change their times, and
// the listing already shows what was copied.
function list(run: CopyRun, rel: string, st: Stats, link = ''): void {
  if (st.isDirectory()) return void run.listing.update(`${rel}/\0${st.mode}\n`);
  run.listing.update(
    `${rel}\0${st.mode}\0${st.size}\0${link}\0${st.mtimeMs}\0${st.ctimeMs}\0${st.dev}\0${st.ino}\n`,
  );
  if (Math.max(st.mtimeMs, st.ctimeMs) > run.started - RECENT_MS) run.recent.push(rel);
}

async function own(opts: CopyAppSourceOptions, p: string): Promise<void> {
  if (opts.uid !== undefined || opts.gid !== undefined) await lchown(p, opts.uid ?? -1, opts.gid ?? -1);
}

// Directories are made when first needed (include mode creates only the parents of included
// files), writable while copying; their real modes are applied at the end, deepest first.
// (The modes are those listed by the walk, which reaches a directory before its children.)
async function ensureDir(run: CopyRun, rel: string): Promise<void> {
  if (run.made.has(rel)) return;
  await ensureDir(run, parentOf(rel));
  const out = path.join(run.dstReal, rel);
  await mkdir(out, { mode: 0o700 });
  await own(run.opts, out);
  run.dirModes.push([out, run.modes.get(rel) ?? 0o755]);
  run.made.add(rel);
  run.stats.dirs++;
}

// The walk is descriptor-relative, as safe-read.ts resolves paths: each directory is opened
// through its parent's fd (`/proc/self/fd/<fd>/<name>`, O_NOFOLLOW|O_DIRECTORY) and checked to
// be the directory listed, and every entry is listed, read and opened through the fd of its
// directory. A directory (or any parent) swapped for a link to a host directory while the copy
// runs is therefore never followed: the swap is seen as a link (copied as a link) or refused.
async function walk(run: CopyRun, rel: string, dirFd: number): Promise<void> {
  const names = (await readdir(at(dirFd))).sort(byBytes);
  for (const name of names) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    // Linux paths stop at PATH_MAX: say so in one line instead of an ENAMETOOLONG with the path.
    if (Buffer.byteLength(childRel) > MAX_REL_PATH)
      throw new UsageError(
        `app directory ${run.src}: ${JSON.stringify(`${childRel.slice(0, 60)}…`)} is nested deeper than kiln copies (paths up to ${MAX_REL_PATH} bytes)`,
      );
    const childAt = at(dirFd, name);
    const st = await lstat(childAt).catch((e: NodeJS.ErrnoException) => {
      throw changed(childRel, e.code, 'the entry listed');
    });
    if (st.isDirectory()) {
      await walkDir(run, dirFd, name, childRel, st);
      continue;
    }
    if (!run.filter.includes(childRel, false)) continue;
    await ensureDir(run, rel);
    const out = path.join(run.dstReal, childRel);
    if (st.isFile()) {
      list(run, childRel, st);
      run.stats.files++;
      run.stats.bytes += st.size;
      await run.pool.run(() => copyFileEntry(run, childAt, childRel, st, out));
    } else if (st.isSymbolicLink()) {
      run.stats.symlinks++;
      const target = await readlink(childAt).catch((e: NodeJS.ErrnoException) => {
        throw changed(childRel, e.code, 'the symbolic link listed');
      });
      list(run, childRel, st, target);
      await symlink(target, out);
      await own(run.opts, out);
    } else {
      run.stats.skipped.push(childRel);
    }
  }
}

/** walkDir makes an included directory and walks into it through its parent's fd; the destination is skipped. */
async function walkDir(
  run: CopyRun,
  dirFd: number,
  name: string,
  childRel: string,
  st: Stats,
): Promise<void> {
  if (st.dev === run.dstStat.dev && st.ino === run.dstStat.ino) return;
  run.modes.set(childRel, st.mode & 0o777);
  if (run.filter.includes(childRel, true)) {
    await ensureDir(run, childRel);
    list(run, childRel, st);
  }
  if (run.filter.mayContain(childRel)) {
    const fd = openDirAt(dirFd, name, st, childRel);
    try {
      await walk(run, childRel, fd);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * copyFileEntry copies one regular file listed by the walk. It opens the file synchronously, before
 * its first await, so the directory's fd is still open (the walk closes it once it moves on).
 */
async function copyFileEntry(
  run: CopyRun,
  childAt: string,
  childRel: string,
  st: Stats,
  out: string,
): Promise<void> {
  // Opened through the directory's fd without following a link and without blocking, then
  // checked to be the file listed: a file swapped for a link to a host file, or for a FIFO,
  // is never read.
  let fd: number;
  try {
    fd = openSync(childAt, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    throw changed(childRel, (e as NodeJS.ErrnoException).code);
  }
  try {
    const now = fstatSync(fd);
    if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) throw changed(childRel);
    await copyFile(at(fd), out, constants.COPYFILE_FICLONE);
  } finally {
    closeSync(fd);
  }
  await chmod(out, st.mode & 0o777);
  await own(run.opts, out);
}

/** Longest app-relative path copied: the copy lives a few hundred bytes deep, PATH_MAX is 4096. */
const MAX_REL_PATH = 3072;

function changed(rel: string, code?: string, expected = 'the regular file listed'): KilnError {
  return new UsageError(
    `app directory: ${JSON.stringify(rel)} changed while it was copied${code ? ` (${code})` : ''}: expected ${expected}`,
  );
}

/** The path of `name` inside the directory open as `fd` (or of the fd itself): openat semantics. */
function at(fd: number, name?: string): string {
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * openDirAt opens directory `name` of the directory open as `dirFd`, never following a link, and
 * checks it is the directory listed (`st`): a directory swapped for a link or another directory
 * since it was listed is refused.
 */
function openDirAt(dirFd: number, name: string, st: Stats, rel: string): number {
  let fd: number;
  try {
    fd = openSync(at(dirFd, name), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    throw changedDir(rel, (e as NodeJS.ErrnoException).code);
  }
  const now = fstatSync(fd);
  if (now.ino !== st.ino || now.dev !== st.dev) {
    closeSync(fd);
    throw changedDir(rel);
  }
  return fd;
}

function changedDir(rel: string, code?: string): KilnError {
  return new UsageError(
    `app directory: ${JSON.stringify(rel)} changed while it was copied${code ? ` (${code})` : ''}: expected the directory listed`,
  );
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

// A bounded set of concurrent tasks: `run` waits for a free slot, `drain` for all of them; the
// first failure is rethrown by the next run or drain.
class Pool {
  readonly #limit: number;
  readonly #active = new Set<Promise<void>>();
  #error: unknown;

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  async run(task: () => Promise<void>): Promise<void> {
    while (this.#active.size >= this.#limit) await Promise.race(this.#active);
    if (this.#error) throw this.#error;
    const p: Promise<void> = task()
      .catch((err) => {
        this.#error ??= err;
      })
      .finally(() => this.#active.delete(p));
    this.#active.add(p);
  }

  async drain(): Promise<void> {
    await Promise.all(this.#active);
    if (this.#error) throw this.#error;
  }
}
