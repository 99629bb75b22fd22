import fsSync from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { compressionOfMagic, decompress } from '../oci/compression.ts';
import { ExtractBudget, type ExtractLimits } from './extract-limits.ts';
import { type TarBodySink, type TarHeader, TarParser } from './tar-reader.ts';

/**
 * quoteName renders a name from an archive for a one-line message: quoted, with control and
 * line-separator characters escaped (a name may hold anything but "/" and NUL, newlines included)
 * and cut after 200 characters (a name may also be 4 KiB long).
 */
export function quoteName(name: string): string {
  const short = name.length > 200 ? `${name.slice(0, 200)}…` : name;
  return JSON.stringify(short).replace(
    /[\u0085\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** UnsafeTarError is a refusal to extract an entry; `entry` is the offending path as written. */
export class UnsafeTarError extends Error {
  readonly entry: string;
  readonly reason: string;
  constructor(entry: string, reason: string) {
    super(`refusing tar entry ${quoteName(entry)}: ${reason}`);
    this.name = 'UnsafeTarError';
    this.entry = entry;
    this.reason = reason;
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
  /**
   * Bounds on what is written (entries, bytes of content, the host's free-space reserve), for
   * untrusted layers: an ExtractBudget to share one bound across the layers of an image. A hit
   * throws an ExtractLimitError; what was written stays for the caller to remove.
   */
  readonly limits?: ExtractLimits | ExtractBudget;
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
  if (parts.some((p) => Buffer.byteLength(p) > NAME_MAX))
    throw new UnsafeTarError(entry, `a path component is longer than ${NAME_MAX} bytes`);
  return parts;
}

// Linux's limits (NAME_MAX, PATH_MAX less the NUL): longer names fail with ENAMETOOLONG, which
// is refused up front so that a layer gets one clear line rather than a bare errno.
const NAME_MAX = 255;
const PATH_MAX = 4095;

/** checkLength refuses `p` (a host path an entry resolves to) when the kernel would refuse it. */
function checkLength(p: string, entry: string): string {
  if (Buffer.byteLength(p) > PATH_MAX) throw new UnsafeTarError(entry, `path longer than ${PATH_MAX} bytes`);
  return p;
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
    // Components of the entry were checked; those a symlink target brings in were not.
    if (Buffer.byteLength(c) > NAME_MAX)
      throw new UnsafeTarError(
        entry,
        `a symlink on its path names a component longer than ${NAME_MAX} bytes`,
      );
    const here = checkLength(path.join(root, ...stack, c), entry);
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
      throw new UnsafeTarError(entry, `${quoteName([...stack, c].join('/'))} on its path is not a directory`);
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
  try {
    return fsSync.lstatSync(p, { throwIfNoEntry: false });
  } catch (e) {
    // A later entry may have replaced a parent directory with a file: the path is gone.
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** openDirInPlace opens directory `p` (a real path) unless it or a parent is now a link, or it is gone. */
function openDirInPlace(p: string): number | undefined {
  try {
    if (fsSync.realpathSync.native(p) !== p) return undefined;
    const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fsSync.constants;
    return fsSync.openSync(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch {
    return undefined; // gone, or no longer reachable as a directory
  }
}

function removeAny(p: string): void {
  fsSync.rmSync(p, { recursive: true, force: true });
}

/**
 * replaceWith runs `make` (a call that fails with EEXIST when something is at `p`: open with
 * O_CREAT|O_EXCL, symlink, mkdir) and, when something is in the way, removes it and runs `make`
 * once more. Trying first saves an lstat per entry in the common case, a fresh destination;
 * neither call ever follows a link at `p`.
 */
function replaceWith<T>(p: string, remove: (p: string) => void, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    remove(p);
    return make();
  }
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
    return undefined; // no /proc: every file gets an explicit fchmod
  }
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
  fsSync.mkdirSync(dest, { recursive: true });
  const unpacker = new Unpacker(fsSync.realpathSync(dest), dest, opts);
  const tar = await autoDecompress(source);
  // Entries are handled synchronously as the parser meets them; the only await is one per
  // decompressed chunk. After each chunk the event loop gets a turn (setImmediate), so that the
  // decompressor and the blob read, which run on other threads but need this one to start
  // their next step, keep working while this thread makes files.
  const parser = new TarParser((h) => unpacker.entry(h));
  try {
    for await (const chunk of tar) {
      parser.push(chunk as Buffer);
      if (parser.done) break;
      await new Promise(setImmediate);
    }
    parser.end();
  } catch (e) {
    // A refused or broken layer is read no further: its source (a blob's descriptor) is
    // released now, not when the collector gets to it.
    source.destroy();
    throw e;
  } finally {
    unpacker.closeFile();
  }
  unpacker.applyDirectories();
  return unpacker.result();
}

/**
 * Unpacker makes the entries of one layer under `root`, one synchronous call per entry. File
 * system calls are synchronous on purpose (as tar's are): a layer has thousands of small
 * entries, and a thread-pool round trip per lstat/open/chmod/close costs more than the calls.
 */
class Unpacker {
  readonly #root: string;
  readonly #opts: ExtractOptions;
  readonly #budget: ExtractBudget | undefined;
  readonly #owners: boolean;
  readonly #umask = currentUmask();
  /** Directories made or met, with the inode seen then: modes, owners and times are set last. */
  readonly #dirs: { p: string; h: TarHeader; st: fsSync.Stats }[] = [];
  /** Real paths this layer made (an opaque whiteout keeps them); kept only with whiteouts. */
  readonly #created = new Set<string>();
  readonly #skipped: string[] = [];
  /**
   * Parent directories already resolved to real, symlink-free directories. Anything that can
   * change a resolution (a symlink made, something removed) clears it.
   */
  readonly #resolved = new Map<string, string>();
  #entries = 0;
  #bytes = 0;
  /** The file being written, if any. */
  #fd: number | undefined;

  constructor(root: string, dest: string, opts: ExtractOptions) {
    this.#root = root;
    this.#opts = opts;
    this.#owners = opts.owners === true && opts.inert !== true;
    this.#budget =
      opts.limits === undefined || opts.limits instanceof ExtractBudget
        ? opts.limits
        : new ExtractBudget(`layer unpacked into ${dest}`, opts.limits);
  }

  result(): ExtractResult {
    return { entries: this.#entries, bytes: this.#bytes, skipped: this.#skipped };
  }

  closeFile(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    fsSync.closeSync(fd);
  }

  #modeOf(h: TarHeader): number {
    return this.#opts.inert ? inertMode(h.mode, h.uid) : h.mode & 0o7777;
  }

  #created_(p: string): void {
    if (this.#opts.whiteouts) this.#created.add(p);
  }

  readonly #remove = (p: string): void => {
    removeAny(p);
    this.#resolved.clear();
  };

  #parentOf(parts: string[], entry: string): string {
    const key = parts.join('/');
    const hit = this.#resolved.get(key);
    if (hit !== undefined) return hit;
    const parent = resolveParent(this.#root, parts, entry);
    let d = parent.dir;
    for (const m of parent.missing) {
      d = path.join(d, m);
      try {
        fsSync.mkdirSync(d, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      this.#created_(d);
    }
    this.#resolved.set(key, d);
    return d;
  }

  /** Makes one entry; returns where a file's content goes. */
  entry(h: TarHeader): TarBodySink | undefined {
    this.#entries++;
    this.#budget?.entry(this.#root);
    const parts = components(h.path);
    if (parts.length === 0) {
      if (h.type === 'dir') return undefined; // "./": the root itself
      throw new UnsafeTarError(h.path, 'empty path');
    }
    const name = parts[parts.length - 1]!;
    if (h.type === 'char' || h.type === 'block' || h.type === 'fifo') {
      if (this.#opts.special === 'skip') {
        this.#skipped.push(h.path);
        return undefined;
      }
      throw new UnsafeTarError(
        h.path,
        `${h.type === 'fifo' ? 'fifo' : `${h.type} device node`} not allowed in a layer`,
      );
    }
    if (h.type === 'other')
      throw new UnsafeTarError(h.path, `unsupported tar entry type ${quoteName(h.typeflag)}`);
    const parentDir = this.#parentOf(parts.slice(0, -1), h.path);
    if (this.#opts.whiteouts && name.startsWith(WHITEOUT)) {
      this.#whiteout(h, parentDir, name);
      return undefined;
    }
    const target = checkLength(path.join(parentDir, name), h.path);
    let sink: TarBodySink | undefined;
    switch (h.type) {
      case 'dir':
        this.#dir(h, target);
        break;
      case 'file':
        sink = this.#file(h, target);
        break;
      case 'symlink':
        this.#symlink(h, target);
        break;
      case 'link':
        this.#link(h, target);
        break;
    }
    this.#created_(target);
    return sink;
  }

  #whiteout(h: TarHeader, parentDir: string, name: string): void {
    if (name === OPAQUE) {
      for (const child of fsSync.readdirSync(parentDir)) {
        const p = path.join(parentDir, child);
        if (!this.#created.has(p)) this.#remove(p);
      }
      return;
    }
    const victim = name.slice(WHITEOUT.length);
    if (victim === '' || victim === '.' || victim === '..') throw new UnsafeTarError(h.path, 'bad whiteout');
    this.#remove(path.join(parentDir, victim));
  }

  #dir(h: TarHeader, target: string): void {
    // mkdir first: a fresh directory costs no lstat beforehand, and anything else in the way
    // is replaced (an existing directory, the common case when stacking layers, is kept).
    let st: fsSync.Stats | undefined;
    try {
      fsSync.mkdirSync(target, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      st = fsSync.lstatSync(target);
      if (!st.isDirectory()) {
        this.#remove(target);
        fsSync.mkdirSync(target, { mode: 0o700 });
        st = undefined;
      }
    }
    // Modes of directories are applied at the end: a read-only directory must still receive
    // its children first. Its inode is kept to find the same directory then.
    this.#dirs.push({ p: target, h, st: st ?? fsSync.lstatSync(target) });
  }

  #file(h: TarHeader, target: string): TarBodySink {
    const budget = this.#budget;
    const root = this.#root;
    budget?.expect(h.size);
    // O_CREAT|O_EXCL never follows a symlink someone raced into place; whatever is in the way
    // (file, link, directory) is removed first and the create tried once more. A plain mode
    // the umask leaves alone is given at create time and needs no fchmod (one syscall less per
    // file); anything else (setuid/setgid/sticky, bits the umask clears) is created 0600 and
    // set once written.
    const mode = this.#modeOf(h);
    const direct = this.#umask !== undefined && (mode & 0o7000) === 0 && (mode & ~this.#umask) === mode;
    const fd = replaceWith(target, this.#remove, () => fsSync.openSync(target, 'wx', direct ? mode : 0o600));
    this.#fd = fd;
    return {
      write: (chunk) => {
        budget?.write(chunk.length, root);
        for (let off = 0; off < chunk.length; ) off += fsSync.writeSync(fd, chunk, off, chunk.length - off);
      },
      end: () => {
        if (this.#owners) fsSync.fchownSync(fd, h.uid, h.gid);
        if (!direct) fsSync.fchmodSync(fd, mode);
        if (this.#opts.times !== false) fsSync.futimesSync(fd, h.mtime, h.mtime);
        this.closeFile();
        this.#bytes += h.size;
      },
    };
  }

  #symlink(h: TarHeader, target: string): void {
    // symlink(2) refuses these; say so instead of failing with a bare errno or TypeError.
    if (h.linkname === '' || h.linkname.includes('\0') || Buffer.byteLength(h.linkname) > PATH_MAX)
      throw new UnsafeTarError(
        h.path,
        `symlink target ${quoteName(h.linkname)} is empty, too long or holds NUL`,
      );
    replaceWith(target, this.#remove, () => fsSync.symlinkSync(h.linkname, target));
    this.#resolved.clear();
    if (this.#owners) fsSync.lchownSync(target, h.uid, h.gid);
    if (this.#opts.times !== false) fsSync.lutimesSync(target, h.mtime, h.mtime);
  }

  #link(h: TarHeader, target: string): void {
    let lparts: string[];
    try {
      lparts = components(h.linkname);
    } catch (e) {
      throw new UnsafeTarError(
        h.path,
        `hard link target ${quoteName(h.linkname)}: ${e instanceof UnsafeTarError ? e.reason : (e as Error).message}`,
      );
    }
    if (lparts.length === 0) throw new UnsafeTarError(h.path, `hard link to ${quoteName(h.linkname)}`);
    const ldir = resolveParent(this.#root, lparts.slice(0, -1), h.path);
    if (ldir.missing.length > 0)
      throw new UnsafeTarError(h.path, `hard link target ${quoteName(h.linkname)} does not exist`);
    const src = checkLength(path.join(ldir.dir, lparts[lparts.length - 1]!), h.path);
    const st = lstatOrUndefined(src);
    if (!st) throw new UnsafeTarError(h.path, `hard link target ${quoteName(h.linkname)} does not exist`);
    if (st.isDirectory())
      throw new UnsafeTarError(h.path, `hard link target ${quoteName(h.linkname)} is a directory`);
    // Hard links are rare: the lstat of what is in the way stays, for the checks below.
    const existing = lstatOrUndefined(target);
    // Already that file (a link to itself, or through a symlinked parent): removing the
    // target first would remove the source too.
    if (existing && existing.ino === st.ino && existing.dev === st.dev) return;
    if (existing) this.#remove(target);
    if (!lstatOrUndefined(src))
      throw new UnsafeTarError(
        h.path,
        `hard link target ${quoteName(h.linkname)} was inside the entry it replaces`,
      );
    fsSync.linkSync(src, target);
    if (this.#owners) fsSync.lchownSync(target, h.uid, h.gid);
  }

  /** Sets directories' modes, owners and times, deepest first (after their children were written). */
  applyDirectories(): void {
    const owners = this.#owners;
    const times = this.#opts.times !== false;
    for (const { p, h, st } of this.#dirs.reverse()) {
      // A later entry may have replaced the directory, or one of its parents, with a symlink (to
      // a host directory, say), and chmod/chown/utimes would follow it. So only the directory
      // this extraction made is touched: its path must still be free of symlinks, and it is
      // opened without following one and checked to be the same inode before anything changes.
      const fd = openDirInPlace(p);
      if (fd === undefined) continue;
      try {
        const now = fsSync.fstatSync(fd);
        if (now.ino !== st.ino || now.dev !== st.dev) continue;
        if (owners) fsSync.fchownSync(fd, h.uid, h.gid);
        fsSync.fchmodSync(fd, this.#modeOf(h));
        if (times) fsSync.futimesSync(fd, h.mtime, h.mtime);
      } finally {
        fsSync.closeSync(fd);
      }
    }
  }
}
