import fsSync from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { compressionOfMagic, decompress } from '../oci/compression.ts';
import { type TarBodySink, type TarHeader, TarParser } from './tar-reader.ts';

/** UnsafeTarError is a refusal to extract an entry; `entry` is the offending path as written. */
export class UnsafeTarError extends Error {
  readonly entry: string;
  constructor(entry: string, reason: string) {
    super(`refusing tar entry "${entry}": ${reason}`);
    this.name = 'UnsafeTarError';
    this.entry = entry;
  }
}

/** Options of extract. */
export interface ExtractOptions {
  /**
   * Apply OCI whiteouts (`.wh.NAME` deletes NAME, `.wh..wh..opq` empties a directory of what
   * lower layers put there) instead of writing them as files. Use when stacking layers into a rootfs.
   */
  readonly whiteouts?: boolean;
  /** lchown entries to their uid/gid (needs root; default false: files belong to the caller). */
  readonly owners?: boolean;
  /** Device nodes and fifos: 'error' (default) refuses them, 'skip' leaves them out. */
  readonly special?: 'error' | 'skip';
  /** Set entries' mtimes from the archive (default true). */
  readonly times?: boolean;
  /**
   * Unpack without privilege, for trees other host users can reach (rootfs caches): setuid and
   * setgid bits and group/other write bits are dropped, owners are never kept (`owners` is
   * ignored), and what the archive let a non-root owner read or run stays readable and runnable
   * by everyone (the files now belong to the extracting user). Device nodes and fifos are never
   * created in any mode; combine with `special: 'skip'` to leave them out instead of failing.
   */
  readonly inert?: boolean;
}

/** Mode bits no inert tree keeps: setuid, setgid, and write access for group and others. */
const PRIVILEGED_BITS = 0o6022;

/**
 * inertMode is the mode an entry gets in an inert tree: privileged bits dropped and, for an
 * entry a non-root user owned in the archive, its owner's read and execute bits granted to
 * group and others (ownership is not kept, and the image's users must still read their files).
 */
export function inertMode(mode: number, archiveUid: number): number {
  let m = mode & 0o7777 & ~PRIVILEGED_BITS;
  if (archiveUid !== 0) {
    const rx = m & 0o500;
    m |= (rx >> 3) | (rx >> 6);
  }
  return m;
}

/** What an extraction did. */
export interface ExtractResult {
  readonly entries: number;
  readonly bytes: number;
  /** Entries left out because `special: 'skip'`. */
  readonly skipped: readonly string[];
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** Splits an archive path into safe components or refuses it. */
function components(entry: string): string[] {
  if (entry.startsWith('/')) throw new UnsafeTarError(entry, 'absolute path');
  const parts = entry.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeTarError(entry, '".." in path');
  if (entry.includes('\0')) throw new UnsafeTarError(entry, 'NUL in path');
  return parts;
}

/**
 * resolveParent finds the real directory that `parts` (all but the last component) name under
 * `root`, following symlinks already on disk the way a container would: absolute targets are
 * taken relative to `root`, relative ones from the link's directory. Resolution that climbs
 * above `root` is refused. Returns the real path of the parent (which may not exist yet:
 * `missing` then lists the components still to create).
 */
function resolveParent(root: string, parts: string[], entry: string): { dir: string; missing: string[] } {
  const stack: string[] = []; // resolved components below root
  const todo = [...parts];
  let hops = 0;
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '.' || c === '') continue;
    if (c === '..') {
      if (stack.length === 0)
        throw new UnsafeTarError(entry, 'a symlink on its path leaves the extraction root');
      stack.pop();
      continue;
    }
    const here = path.join(root, ...stack, c);
    const st = lstatOrUndefined(here);
    if (!st) {
      // Not there yet (it will be created as a directory); keep resolving, since a later ".."
      // from a symlink target may climb back into existing directories.
      stack.push(c);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) throw new UnsafeTarError(entry, 'too many symlinks on its path');
      const target = fsSync.readlinkSync(here);
      if (target.startsWith('/')) stack.length = 0;
      todo.unshift(...target.split('/'));
      continue;
    }
    if (!st.isDirectory())
      throw new UnsafeTarError(entry, `"${[...stack, c].join('/')}" on its path is not a directory`);
    stack.push(c);
  }
  // The first component that does not exist starts the part still to be created.
  for (let i = 0; i < stack.length; i++) {
    if (!lstatOrUndefined(path.join(root, ...stack.slice(0, i + 1))))
      return { dir: path.join(root, ...stack.slice(0, i)), missing: stack.slice(i) };
  }
  return { dir: path.join(root, ...stack), missing: [] };
}

function lstatOrUndefined(p: string): fsSync.Stats | undefined {
  return fsSync.lstatSync(p, { throwIfNoEntry: false });
}

/** mkdirFresh makes a directory, or returns false when something is already at `p`. */
function mkdirFresh(p: string): boolean {
  try {
    fsSync.mkdirSync(p, { mode: 0o700 });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/**
 * replaceWith runs `make` (a call that fails with EEXIST when something is at `p`: symlink,
 * link) and, when something is in the way, removes it and runs `make` once more. Trying first
 * saves an lstat per entry in the common case, an empty destination.
 */
function replaceWith(p: string, remove: (p: string) => void, make: () => void): void {
  try {
    make();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    remove(p);
    make();
  }
}

/** createExclusive creates `p` with O_CREAT|O_EXCL and `mode`, replacing what is in the way. */
function createExclusive(p: string, mode: number, remove: (p: string) => void): number {
  let fd = -1;
  replaceWith(p, remove, () => {
    fd = fsSync.openSync(p, 'wx', mode);
  });
  return fd;
}

/**
 * The process's umask, read without changing it (process.umask() sets it to 0 for a moment,
 * which other threads creating files would see); undefined when the kernel does not say.
 */
function currentUmask(): number | undefined {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(fsSync.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number.parseInt(m[1]!, 8) : undefined;
  } catch {
    return undefined;
  }
}

function removeAny(p: string): void {
  fsSync.rmSync(p, { recursive: true, force: true });
}

/** Opens `source`, detects gzip/zstd/plain from the magic bytes and returns the tar stream. */
export async function autoDecompress(source: Readable): Promise<Readable> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : Buffer.from(first.value as Buffer);
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value as Buffer;
      }
    })(),
    { objectMode: false },
  );
  return decompress(rest, compressionOfMagic(head));
}

/**
 * extract unpacks a layer (gzip, zstd or plain tar, detected from its first bytes) into `dest`,
 * streaming. It refuses absolute paths, `..`, writes through symlinks that lead outside `dest`,
 * hard links to outside, and device nodes / fifos, with an UnsafeTarError naming the entry.
 * Existing files are replaced (unlinked first, never written through).
 */
export async function extract(
  source: Readable,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  // File system calls are synchronous on purpose (as tar's are): a layer has thousands of small
  // entries, and a thread-pool round trip per lstat/open/chmod/close costs more than the calls.
  fsSync.mkdirSync(dest, { recursive: true });
  const root = fsSync.realpathSync(dest);
  const tar = await autoDecompress(source);
  const dirs: { p: string; h: TarHeader }[] = [];
  const created = new Set<string>(); // real paths this layer made (opaque whiteouts keep them)
  const skipped: string[] = [];
  // Parent directories already resolved to real, symlink-free directories. Anything that can
  // change a resolution (a symlink made, something removed) clears it.
  const resolved = new Map<string, string>();
  let entries = 0;
  let bytes = 0;

  const parentOf = (parts: string[], entry: string): string => {
    const key = parts.join('/');
    const hit = resolved.get(key);
    if (hit !== undefined) return hit;
    const parent = resolveParent(root, parts, entry);
    let d = parent.dir;
    for (const m of parent.missing) {
      d = path.join(d, m);
      try {
        fsSync.mkdirSync(d, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      created.add(d);
    }
    resolved.set(key, d);
    return d;
  };
  const remove = (p: string) => {
    removeAny(p);
    resolved.clear();
  };
  const owners = opts.owners === true && opts.inert !== true;
  const umask = currentUmask();
  const modeOf = (h: TarHeader) => (opts.inert ? inertMode(h.mode, h.uid) : h.mode & 0o7777);

  // Entries are handled synchronously as the parser meets them; the only await is one per
  // decompressed chunk. After each chunk the event loop gets a turn (setImmediate), so that the
  // decompressor and the blob read, which finish on other threads but need this one to start
  // their next step, keep working while this thread makes files.
  let fd: number | undefined; // the file being written, if any
  const closeFile = () => {
    if (fd === undefined) return;
    const f = fd;
    fd = undefined;
    fsSync.closeSync(f);
  };
  const entry = (h: TarHeader): TarBodySink | undefined => {
    entries++;
    const parts = components(h.path);
    if (parts.length === 0) {
      if (h.type === 'dir') return undefined; // "./": the root itself
      throw new UnsafeTarError(h.path, 'empty path');
    }
    const name = parts[parts.length - 1]!;
    if (h.type === 'char' || h.type === 'block' || h.type === 'fifo') {
      if (opts.special === 'skip') {
        skipped.push(h.path);
        return undefined;
      }
      throw new UnsafeTarError(
        h.path,
        `${h.type === 'fifo' ? 'fifo' : `${h.type} device node`} not allowed in a layer`,
      );
    }
    if (h.type === 'other') throw new UnsafeTarError(h.path, `unsupported tar entry type "${h.typeflag}"`);
    const parentDir = parentOf(parts.slice(0, -1), h.path);
    if (opts.whiteouts && name.startsWith(WHITEOUT)) {
      if (name === OPAQUE) {
        for (const child of fsSync.readdirSync(parentDir)) {
          const p = path.join(parentDir, child);
          if (!created.has(p)) remove(p);
        }
      } else {
        const victim = name.slice(WHITEOUT.length);
        if (victim === '' || victim === '.' || victim === '..')
          throw new UnsafeTarError(h.path, 'bad whiteout');
        remove(path.join(parentDir, victim));
      }
      return undefined;
    }
    const target = path.join(parentDir, name);
    let sink: TarBodySink | undefined;
    switch (h.type) {
      case 'dir': {
        // mkdir first: an existing directory (the common case when stacking layers) costs no
        // extra lstat, and anything else in the way is replaced.
        if (!mkdirFresh(target)) {
          if (!lstatOrUndefined(target)?.isDirectory()) {
            remove(target);
            fsSync.mkdirSync(target, { mode: 0o700 });
          }
        }
        // Modes of directories are applied at the end: a read-only directory must still
        // receive its children first.
        dirs.push({ p: target, h });
        break;
      }
      case 'file': {
        // O_CREAT|O_EXCL never follows a symlink someone raced into place; whatever is in the
        // way (file, link, directory) is removed first and the create tried once more.
        // A plain mode the umask leaves alone is given at create time and needs no fchmod (one
        // syscall less per file); anything else (setuid/setgid/sticky, bits the umask clears)
        // is created 0600 and set once written.
        const mode = modeOf(h);
        const direct = umask !== undefined && (mode & 0o7000) === 0 && (mode & ~umask) === mode;
        fd = createExclusive(target, direct ? mode : 0o600, remove);
        const f = fd;
        sink = {
          write: (chunk) => {
            for (let off = 0; off < chunk.length; )
              off += fsSync.writeSync(f, chunk, off, chunk.length - off);
          },
          end: () => {
            if (owners) fsSync.fchownSync(f, h.uid, h.gid);
            if (!direct) fsSync.fchmodSync(f, mode);
            if (opts.times !== false) fsSync.futimesSync(f, h.mtime, h.mtime);
            closeFile();
            bytes += h.size;
          },
        };
        break;
      }
      case 'symlink': {
        replaceWith(target, remove, () => fsSync.symlinkSync(h.linkname, target));
        resolved.clear();
        break;
      }
      case 'link': {
        let lparts: string[];
        try {
          lparts = components(h.linkname);
        } catch (e) {
          throw new UnsafeTarError(
            h.path,
            `hard link target "${h.linkname}": ${(e as Error).message.replace(/^.*": /, '')}`,
          );
        }
        if (lparts.length === 0) throw new UnsafeTarError(h.path, `hard link to "${h.linkname}"`);
        const ldir = resolveParent(root, lparts.slice(0, -1), h.path);
        if (ldir.missing.length > 0)
          throw new UnsafeTarError(h.path, `hard link target "${h.linkname}" does not exist`);
        const src = path.join(ldir.dir, lparts[lparts.length - 1]!);
        const st = lstatOrUndefined(src);
        if (!st) throw new UnsafeTarError(h.path, `hard link target "${h.linkname}" does not exist`);
        if (st.isDirectory())
          throw new UnsafeTarError(h.path, `hard link target "${h.linkname}" is a directory`);
        replaceWith(target, remove, () => fsSync.linkSync(src, target));
        break;
      }
    }
    created.add(target);
    if (h.type === 'symlink') {
      if (owners) fsSync.lchownSync(target, h.uid, h.gid);
      if (opts.times !== false) fsSync.lutimesSync(target, h.mtime, h.mtime);
    } else if (h.type === 'link' && owners) fsSync.lchownSync(target, h.uid, h.gid);
    return sink;
  };
  const parser = new TarParser(entry);
  try {
    for await (const chunk of tar) {
      parser.push(chunk as Buffer);
      if (parser.done) break;
      await new Promise(setImmediate);
    }
    parser.end();
  } finally {
    closeFile();
  }
  // Deepest first, so a parent's mtime is set after its children were written.
  for (const { p, h } of dirs.reverse()) {
    // A later entry may have replaced the directory (say, with a symlink to a host file):
    // chmod/utimes follow symlinks, so only a directory still in place is touched.
    if (!lstatOrUndefined(p)?.isDirectory()) continue;
    if (owners) fsSync.lchownSync(p, h.uid, h.gid);
    fsSync.chmodSync(p, modeOf(h));
    if (opts.times !== false) fsSync.utimesSync(p, h.mtime, h.mtime);
  }
  return { entries, bytes, skipped };
}
