import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { normalizeTarPath, sortEntries, type TarEntry } from './tar-writer.ts';

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
  readonly filter?: (rel: string, stat: Stats) => boolean;
  /** Mode of the parent directories made up for `prefix` (default 0o755). */
  readonly parentMode?: number;
  /** Told about sockets, fifos and device nodes, which layers never carry. */
  readonly onSkip?: (rel: string, reason: string) => void;
}

/**
 * walk lists a directory tree as tar entries, sorted by path bytes (the order the tar writer
 * writes). Symlinks are recorded, never followed; files sharing an inode become one file plus
 * hard links to it (the first in sorted order holds the content). Modes are kept as on disk.
 */
export async function walk(dir: string, opts: WalkOptions = {}): Promise<TarEntry[]> {
  const root = path.resolve(dir);
  const rootStat = await fs.lstat(root);
  if (!rootStat.isDirectory()) throw new Error(`cannot walk "${dir}": not a directory`);
  const prefix = opts.prefix === undefined ? '' : normalizeTarPath(opts.prefix);
  const out: TarEntry[] = [];
  const inodes = new Map<string, string>();
  // Only what hard-link detection needs is kept: holding Stats objects (or closures over a
  // directory's whole lstat result) costs kilobytes per entry on trees of many files.
  const inodeOf = new Map<TarEntry, string>();

  const own = (st: Stats) => ({ uid: opts.uid ?? st.uid, gid: opts.gid ?? st.gid });
  const join = (rel: string) => (prefix === '' ? rel : rel === '' ? prefix : `${prefix}/${rel}`);

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
    out.push({ path: prefix, type: 'dir', mode: rootStat.mode & 0o7777, ...own(rootStat) });
  }

  async function visit(abs: string, rel: string): Promise<void> {
    const names = await fs.readdir(abs);
    // lstat in small batches and one directory at a time: thousands of requests in flight
    // cost tens of MB on big trees for no speed gained on a thread pool of four.
    const stats: Stats[] = [];
    for (let i = 0; i < names.length; i += 32)
      stats.push(...(await Promise.all(names.slice(i, i + 32).map((n) => fs.lstat(path.join(abs, n))))));
    const subdirs: [string, string][] = [];
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const st = stats[i]!;
      const r = rel === '' ? name : `${rel}/${name}`;
      if (opts.filter && !opts.filter(r, st)) continue;
      const p = join(r);
      const full = path.join(abs, name);
      if (st.isDirectory()) {
        out.push({ path: p, type: 'dir', mode: st.mode & 0o7777, ...own(st) });
        subdirs.push([full, r]);
      } else if (st.isSymbolicLink()) {
        out.push({
          path: p,
          type: 'symlink',
          mode: st.mode & 0o7777,
          linkname: await fs.readlink(full),
          ...own(st),
        });
      } else if (st.isFile()) {
        const entry = fileEntry(p, full, st.mode & 0o7777, st.size, own(st));
        if (st.nlink > 1) inodeOf.set(entry, `${st.dev}:${st.ino}`);
        out.push(entry);
      } else {
        opts.onSkip?.(r, st.isSocket() ? 'socket' : st.isFIFO() ? 'fifo' : 'device node');
      }
    }
    for (const [full, r] of subdirs) await visit(full, r);
  }
  await visit(root, '');

  // Hard links: decide which path holds the content only after sorting, so it is the same
  // one every time regardless of readdir order.
  const sorted = sortEntries(out).map((s) => s.entry);
  return sorted.map((e) => {
    const key = inodeOf.get(e);
    if (key === undefined) return e;
    const first = inodes.get(key);
    if (first === undefined) {
      inodes.set(key, normalizeTarPath(e.path));
      return e;
    }
    return { path: e.path, type: 'link', mode: e.mode, uid: e.uid, gid: e.gid, linkname: first };
  });
}
