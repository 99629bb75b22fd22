import { type BigIntStats, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { normalizeTarPath, type TarEntry } from './tar-writer.ts';

/**
 * A file entry: plain data, no closures (trees of many files keep thousands of these). The tar
 * writers read the content from `source`.
 */
function fileEntry(
  p: string,
  full: string,
  mode: number,
  size: number,
  owner: { uid: number; gid: number },
): TarEntry {
  return { path: p, type: 'file', mode, size, uid: owner.uid, gid: owner.gid, source: full };
}

/** The names a directory held and its stamp then (see dirStamp). */
export interface DirListing {
  readonly stamp: string;
  readonly names: readonly string[];
}

/** Directory listings of a walk, by slash-separated path relative to the walked directory. */
export type DirListings = Map<string, DirListing>;

/**
 * dirStamp identifies a directory's listing, as git's untracked cache does: creating, removing or
 * renaming an entry changes the directory's mtime and ctime, and a ctime cannot be set back.
 */
export function dirStamp(st: BigIntStats): string {
  return `${st.mtimeNs}/${st.ctimeNs}/${st.dev}/${st.ino}`;
}

/** Names from a kept listing must be what readdir could return: nothing may lead out of the tree. */
function checkedNames(rel: string, names: readonly string[]): readonly string[] {
  for (const n of names)
    if (n === '' || n === '.' || n === '..' || n.includes('/') || n.includes('\0'))
      throw new Error(`kept listing of "${rel}" names "${n}", which is not a file name`);
  return names;
}

/** Options of walk. */
export interface WalkOptions {
  /** Path of the walked directory inside the tar (e.g. `layers/kiln_node/node`); default: its children sit at the top. */
  readonly prefix?: string;
  /** Owner written for every entry (default: the files' own uid/gid). */
  readonly uid?: number;
  readonly gid?: number;
  /**
   * Returns false to leave a path out (a directory is then not descended into). `rel` is the
   * slash-separated path relative to the walked directory.
   */
  readonly filter?: (rel: string, stat: BigIntStats) => boolean;
  /** Mode of the parent directories made up for `prefix` (default 0o755). */
  readonly parentMode?: number;
  /**
   * Modes for a layer the build user owns and a run user of its group runs: the group gets the
   * owner's read and execute bits (never write), so what a buildpack wrote stays readable and
   * runnable whatever modes it chose; setuid and setgid bits are dropped (a setuid file of the
   * build user would let the app become it and rewrite its own layers).
   */
  readonly runUserModes?: boolean;
  /** Told about sockets, fifos and device nodes, which layers never carry. */
  readonly onSkip?: (rel: string, reason: string) => void;
  /**
   * Told about every entry the walk keeps (the root as `''` first, then files, directories and
   * symlinks, hard-linked paths each as a file) with the lstat the walk made of it, in an order
   * that depends only on the tree: depth first, names sorted within each directory. Layer
   * fingerprints are made from it without a second stat or a sort.
   */
  readonly onEntry?: (
    rel: string,
    kind: 'file' | 'dir' | 'symlink',
    stat: BigIntStats,
    linkname?: string,
  ) => void;
  /**
   * Listings of an earlier walk of this tree: a directory below the root whose stamp is the one
   * recorded still holds those names, so it is not read again (its entries are still lstat'ed).
   * The root is always read (moving a tree into place changes its own stamp).
   */
  readonly knownDirs?: ReadonlyMap<string, DirListing>;
  /** Filled with this walk's listings (every directory below the root), for a later walk. */
  readonly recordDirs?: DirListings;
}

/** Entries stat'ed between two yields to the event loop (see walk): a few milliseconds' worth. */
const ENTRIES_PER_YIELD = 1024;

/** True for strings whose UTF-16 order may differ from their UTF-8 byte order. */
const ASTRAL_OR_HIGH = /[\ud800-\uffff]/;

/**
 * traverse visits every entry below `root` (see WalkOptions.onEntry for the order), one lstat per
 * entry, made synchronously: a few microseconds each against tens through the thread pool and a
 * promise apiece (trees of thousands of files are walked on every no-op rebuild). It yields to the
 * event loop every thousand entries or so, so that work running alongside (a compression stream)
 * is not starved, and keeps nothing but what `visit` keeps.
 */
async function traverse(
  root: string,
  rootStat: BigIntStats,
  opts: WalkOptions,
  visit: (rel: string, name: string, full: string, st: BigIntStats, linkname?: string) => void,
): Promise<void> {
  const { knownDirs, recordDirs, onEntry } = opts;
  onEntry?.('', 'dir', rootStat);
  // Depth-first with an explicit stack: no recursion depth limit, no closure per directory.
  const pending: [abs: string, rel: string, stamp: string][] = [[root, '', '']];
  let seen = 0;
  while (pending.length > 0) {
    const [abs, rel, stamp] = pending.pop()!;
    const base = abs.endsWith('/') ? abs : `${abs}/`;
    const known = rel === '' ? undefined : knownDirs?.get(rel);
    const names = known?.stamp === stamp ? checkedNames(rel, known.names).slice() : readdirSync(abs);
    names.sort();
    if (recordDirs && rel !== '') recordDirs.set(rel, { stamp, names });
    for (const name of names) {
      if (++seen % ENTRIES_PER_YIELD === 0) await new Promise<void>((r) => setImmediate(r));
      const full = base + name;
      const st = lstatSync(full, { bigint: true });
      const r = rel === '' ? name : `${rel}/${name}`;
      if (opts.filter && !opts.filter(r, st)) continue;
      let linkname: string | undefined;
      if (st.isDirectory()) {
        onEntry?.(r, 'dir', st);
        pending.push([full, r, knownDirs || recordDirs ? dirStamp(st) : '']);
      } else if (st.isSymbolicLink()) {
        linkname = readlinkSync(full);
        onEntry?.(r, 'symlink', st, linkname);
      } else if (st.isFile()) {
        onEntry?.(r, 'file', st);
      } else {
        opts.onSkip?.(r, st.isSocket() ? 'socket' : st.isFIFO() ? 'fifo' : 'device node');
        continue;
      }
      visit(r, name, full, st, linkname);
    }
  }
}

function rootOf(dir: string): { root: string; rootStat: BigIntStats } {
  const root = path.resolve(dir);
  const rootStat = lstatSync(root, { bigint: true });
  if (!rootStat.isDirectory()) throw new Error(`cannot walk "${dir}": not a directory`);
  return { root, rootStat };
}

/**
 * scan visits a directory tree as walk does (same options, same onEntry calls) without building
 * its entries: for callers that only need what onEntry sees (a fingerprint check).
 */
export async function scan(dir: string, opts: WalkOptions): Promise<void> {
  const { root, rootStat } = rootOf(dir);
  await traverse(root, rootStat, opts, () => {});
}

/**
 * walk lists a directory tree as tar entries, sorted by path bytes (the order the tar writer
 * writes). Symlinks are recorded, never followed; files sharing an inode become one file plus
 * hard links to it (the first in sorted order holds the content). Modes are kept as on disk.
 * Only the entries are kept, never Stats objects, so trees of 100k files cost their entries.
 */
export async function walk(dir: string, opts: WalkOptions = {}): Promise<TarEntry[]> {
  const { root, rootStat } = rootOf(dir);
  const prefix = opts.prefix === undefined ? '' : normalizeTarPath(opts.prefix);
  const out: TarEntry[] = [];
  // Only what hard-link detection needs is kept: dev:ino of files with more than one link.
  const inodeOf = new Map<TarEntry, string>();
  const fixedOwner =
    opts.uid !== undefined && opts.gid !== undefined ? { uid: opts.uid, gid: opts.gid } : undefined;
  const own = (st: BigIntStats) =>
    fixedOwner ?? { uid: opts.uid ?? Number(st.uid), gid: opts.gid ?? Number(st.gid) };
  const modeOf = opts.runUserModes
    ? (st: BigIntStats) => {
        const m = Number(st.mode & 0o1777n);
        return m | ((m & 0o500) >> 3);
      }
    : (st: BigIntStats) => Number(st.mode & 0o7777n);
  const join = (rel: string) => (prefix === '' ? rel : rel === '' ? prefix : `${prefix}/${rel}`);
  // Paths are built from readdir names (never empty, ".", ".." or containing "/") under a
  // normalized prefix, so they need no normalizing; and unless a name holds a character at or
  // above U+D800, JavaScript's string order is the UTF-8 byte order the tar writer sorts by.
  let byteOrder = ASTRAL_OR_HIGH.test(prefix);

  if (prefix !== '') {
    const parts = prefix.split('/');
    for (let i = 1; i < parts.length; i++)
      out.push({
        path: parts.slice(0, i).join('/'),
        type: 'dir',
        mode: opts.parentMode ?? 0o755,
        uid: opts.uid ?? 0,
        gid: opts.gid ?? 0,
      });
    out.push({ path: prefix, type: 'dir', mode: modeOf(rootStat), ...own(rootStat) });
  }

  await traverse(root, rootStat, opts, (r, name, full, st, linkname) => {
    if (!byteOrder && ASTRAL_OR_HIGH.test(name)) byteOrder = true;
    const p = join(r);
    if (st.isDirectory()) out.push({ path: p, type: 'dir', mode: modeOf(st), ...own(st) });
    else if (st.isSymbolicLink())
      out.push({ path: p, type: 'symlink', mode: modeOf(st), linkname: linkname!, ...own(st) });
    else {
      const entry = fileEntry(p, full, modeOf(st), Number(st.size), own(st));
      if (st.nlink > 1n) inodeOf.set(entry, `${st.dev}:${st.ino}`);
      out.push(entry);
    }
  });

  if (byteOrder) {
    const keys = new Map(out.map((e) => [e, Buffer.from(e.path, 'utf8')]));
    out.sort((a, b) => Buffer.compare(keys.get(a)!, keys.get(b)!));
  } else out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  // Hard links: decide which path holds the content only after sorting, so it is the same
  // one every time regardless of readdir order.
  if (inodeOf.size === 0) return out;
  const inodes = new Map<string, string>();
  return out.map((e) => {
    const key = inodeOf.get(e);
    if (key === undefined) return e;
    const first = inodes.get(key);
    if (first === undefined) {
      inodes.set(key, e.path);
      return e;
    }
    return { path: e.path, type: 'link', mode: e.mode, uid: e.uid, gid: e.gid, linkname: first };
  });
}
