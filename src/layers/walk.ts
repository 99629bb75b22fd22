import type { Stats } from 'node:fs';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { normalizeTarPath, sortEntries, type TarEntry } from './tar-writer.ts';

/** Files up to this size are read whole (and ahead) by the tar writer. */
const SMALL_FILE = 256 * 1024;

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
  const files: { entry: TarEntry; st: Stats }[] = [];

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
    const stats = await Promise.all(names.map((n) => fs.lstat(path.join(abs, n))));
    const subdirs: Promise<void>[] = [];
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const st = stats[i]!;
      const r = rel === '' ? name : `${rel}/${name}`;
      if (opts.filter && !opts.filter(r, st)) continue;
      const p = join(r);
      const full = path.join(abs, name);
      if (st.isDirectory()) {
        out.push({ path: p, type: 'dir', mode: st.mode & 0o7777, ...own(st) });
        subdirs.push(visit(full, r));
      } else if (st.isSymbolicLink()) {
        out.push({
          path: p,
          type: 'symlink',
          mode: st.mode & 0o7777,
          linkname: await fs.readlink(full),
          ...own(st),
        });
      } else if (st.isFile()) {
        const entry: TarEntry = {
          path: p,
          type: 'file',
          mode: st.mode & 0o7777,
          size: st.size,
          // Buffers sized to the file: a stream allocates highWaterMark bytes per read, and
          // 1 MiB buffers for thousands of small files keep the garbage collector busy.
          open: () =>
            createReadStream(full, { highWaterMark: Math.max(16384, Math.min(st.size + 1, 1 << 20)) }),
          ...(st.size <= SMALL_FILE ? { read: () => fs.readFile(full) } : {}),
          ...own(st),
        };
        files.push({ entry, st });
        out.push(entry);
      } else {
        opts.onSkip?.(r, st.isSocket() ? 'socket' : st.isFIFO() ? 'fifo' : 'device node');
      }
    }
    await Promise.all(subdirs);
  }
  await visit(root, '');

  // Hard links: decide which path holds the content only after sorting, so it is the same
  // one every time regardless of readdir order.
  const sorted = sortEntries(out).map((s) => s.entry);
  const multi = new Set(files.filter((f) => f.st.nlink > 1).map((f) => f.entry));
  const byEntry = new Map(files.map((f) => [f.entry, f.st]));
  return sorted.map((e) => {
    if (!multi.has(e)) return e;
    const st = byEntry.get(e)!;
    const key = `${st.dev}:${st.ino}`;
    const first = inodes.get(key);
    if (first === undefined) {
      inodes.set(key, normalizeTarPath(e.path));
      return e;
    }
    return { path: e.path, type: 'link', mode: e.mode, uid: e.uid, gid: e.gid, linkname: first };
  });
}
