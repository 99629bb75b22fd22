import {
  chmodSync,
  closeSync,
  createReadStream,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  realpathSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { posix } from 'node:path';
import { KilnError } from '../internal/errors.ts';
import { readTar } from '../layers/tar-reader.ts';
import { type ArMember, readArIndex } from './ar.ts';
import { type Paragraph, parseDeb822 } from './deb822.ts';
import { compressionOfName, decompress, type XzDecoder } from './decompress.ts';

/** DebControl is the control archive of a .deb: the control paragraph and the other files. */
export interface DebControl {
  /** The `control` file's text exactly as shipped. */
  readonly controlText: string;
  readonly control: Paragraph;
  /** Other control members by name: conffiles, md5sums, preinst, postinst, triggers, shlibs... */
  readonly files: ReadonlyMap<string, { data: Buffer; mode: number }>;
}

async function member(path: string, prefix: string): Promise<ArMember> {
  const members = await readArIndex(path);
  if (members[0]?.name !== 'debian-binary')
    throw new KilnError(`${path}: not a Debian package (no debian-binary member)`);
  const m = members.find((x) => x.name.startsWith(prefix));
  if (!m) throw new KilnError(`${path}: no ${prefix}* member`);
  return m;
}

function memberStream(path: string, m: ArMember, xz: XzDecoder) {
  const raw = createReadStream(path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 20 });
  return decompress(compressionOfName(m.name), raw, xz);
}

function clean(name: string): string {
  // Member paths look like "./usr/bin/x"; normalise to "usr/bin/x" ("" for the root).
  let n = name;
  while (n.startsWith('./')) n = n.slice(2);
  if (n === '.') n = '';
  return n.replace(/\/+$/, '');
}

/** readDebControl reads the control member of the .deb at `path` into memory (it is small). */
export async function readDebControl(path: string, xz: XzDecoder = 'process'): Promise<DebControl> {
  const m = await member(path, 'control.tar');
  const files = new Map<string, { data: Buffer; mode: number }>();
  for await (const e of readTar(memberStream(path, m, xz))) {
    if (e.header.type !== 'file') continue;
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(Buffer.from(c));
    files.set(clean(e.header.path), { data: Buffer.concat(chunks), mode: e.header.mode & 0o7777 });
  }
  const control = files.get('control');
  if (!control) throw new KilnError(`${path}: control archive has no control file`);
  files.delete('control');
  const controlText = control.data.toString('utf8');
  const para = parseDeb822(controlText)[0];
  if (!para) throw new KilnError(`${path}: empty control file`);
  return { controlText, control: para, files };
}

/** ExtractOptions steer data extraction. */
export interface ExtractOptions {
  /** Paths (without leading "/") to leave out; directories are still created when needed. */
  readonly skip?: (path: string) => boolean;
  /** Paths to keep in memory (e.g. copyright files read before docs are dropped). */
  readonly capture?: (path: string) => boolean;
  /** Maps a package path to where it lands (merged-/usr, `.dpkg-new` conffiles). */
  readonly rewrite?: (path: string) => string;
  /**
   * Asked before writing each non-directory (and before setting a directory's mode) at its
   * target path; false leaves the path to another package. Lets several packages unpack into one
   * tree concurrently while a fixed package order decides who wins a shared path.
   */
  readonly claim?: (target: string) => boolean;
  /**
   * Give regular files the archive's mtime, as dpkg does. Needed where something later embeds
   * mtimes (Python's .pyc files record their source's), so that the tree is the same every run.
   */
  readonly times?: boolean;
  readonly xz?: XzDecoder;
}

/** ExtractResult lists what a package's data archive contained. */
export interface ExtractResult {
  /** Every path of the archive as the package names it ("/usr/bin/x"; "/." for the root), in order. */
  readonly paths: readonly string[];
  readonly captured: ReadonlyMap<string, Buffer>;
  /** Bytes of regular files written. */
  readonly bytes: number;
}

/**
 * extractDebData unpacks the data member of the .deb at `path` into `root`. It refuses absolute
 * paths, `..` components, links that point out of the tree through `..`, and writes through a
 * symlink the archive itself created; it never changes ownership (the layer writer normalises
 * owners). Regular files get the archive's mode, mtimes are not kept (layers fix them anyway).
 */
export async function extractDebData(
  path: string,
  root: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const m = await member(path, 'data.tar');
  const paths: string[] = [];
  const captured = new Map<string, Buffer>();
  const symlinks = new Set<string>();
  const UMASK = currentUmask();
  const dirs = new Set<string>();
  const ensureDir = (d: string) => {
    if (dirs.has(d)) return;
    const first = mkdirSync(d, { recursive: true });
    // Directories the archive does not list get 0755 whatever the umask.
    if (first !== undefined && (UMASK & 0o755) !== 0) {
      for (let x = d; ; x = posix.dirname(x)) {
        chmodSync(x, 0o755);
        if (x === first || x === posix.dirname(x)) break;
      }
    }
    dirs.add(d);
  };
  let bytes = 0;
  const fail = (name: string, why: string): never => {
    throw new KilnError(`${path}: refusing data entry "${name}": ${why}`);
  };
  // Several packages unpack into one root: a link an earlier package made (absolute, or with more
  // `..` than its depth) would let a later entry be written outside the root. Every directory an
  // entry is created in is resolved first and must stay inside.
  const realRoot = realpathSync(root);
  const inside = new Set<string>();
  const staysInside = (name: string, dir: string): void => {
    if (inside.has(dir)) return;
    for (let d = dir; ; d = posix.dirname(d)) {
      if (lstatSync(d, { throwIfNoEntry: false }) === undefined && d !== posix.dirname(d)) continue;
      let real: string;
      try {
        real = realpathSync(d);
      } catch {
        fail(name, `${d.slice(root.length) || '/'} is a link that does not resolve inside the root`);
        return;
      }
      if (real !== realRoot && !real.startsWith(`${realRoot}/`))
        fail(name, `${d.slice(root.length) || '/'} is a link that leads out of the root`);
      break;
    }
    if (lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) inside.add(dir);
  };
  for await (const e of readTar(memberStream(path, m, opts.xz ?? 'process'))) {
    const h = e.header;
    const mode = h.mode & 0o7777;
    const rel = clean(h.path);
    if (h.path.startsWith('/')) fail(h.path, 'absolute path');
    if (rel.split('/').includes('..')) fail(h.path, 'path contains ..');
    paths.push(rel === '' ? '/.' : `/${rel}`);
    if (rel === '') continue;
    const target = opts.rewrite ? opts.rewrite(rel) : rel;
    for (let d = posix.dirname(target); d !== '.' && d !== '/'; d = posix.dirname(d)) {
      if (symlinks.has(d)) fail(h.path, 'path goes through a symlink');
    }
    const captureIt = h.type === 'file' && opts.capture?.(rel) === true;
    const skipIt = opts.skip?.(rel) === true;
    const dest = posix.join(root, target);
    if (skipIt && !captureIt) continue;
    if (h.type === 'dir') {
      if (skipIt) continue;
      staysInside(h.path, dest);
      ensureDir(dest);
      // Always set the mode: the directory may exist already, made as the parent of an earlier entry.
      if (opts.claim?.(target) !== false) chmodSync(dest, mode);
      continue;
    }
    if (skipIt && captureIt) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(Buffer.from(c));
      captured.set(rel, Buffer.concat(chunks));
      continue;
    }
    staysInside(h.path, posix.dirname(dest));
    ensureDir(posix.dirname(dest));
    if (opts.claim?.(target) === false) {
      if (captureIt) {
        const chunks: Buffer[] = [];
        for await (const c of e.body) chunks.push(Buffer.from(c));
        captured.set(rel, Buffer.concat(chunks));
      }
      continue;
    }
    if (h.type === 'file') {
      removeExisting(dest);
      const fd = openSync(dest, 'w', mode);
      const chunks: Buffer[] | null = captureIt ? [] : null;
      try {
        for await (const c of e.body) {
          writeSync(fd, c);
          bytes += c.length;
          chunks?.push(Buffer.from(c));
        }
      } finally {
        closeSync(fd);
      }
      // open() applied the umask; set the exact mode only when the umask took something away.
      if ((mode & UMASK) !== 0 || mode > 0o777) chmodSync(dest, mode);
      if (opts.times) utimesSync(dest, h.mtime, h.mtime);
      if (chunks) captured.set(rel, Buffer.concat(chunks));
    } else if (h.type === 'symlink') {
      const resolved = posix.normalize(posix.join(posix.dirname(`/${rel}`), h.linkname));
      if (!h.linkname.startsWith('/') && resolved.startsWith('/..'))
        fail(h.path, `symlink target ${h.linkname} leaves the root`);
      removeExisting(dest);
      symlinkSync(h.linkname, dest);
      symlinks.add(target);
    } else if (h.type === 'link') {
      const lt = clean(h.linkname);
      if (h.linkname.startsWith('/') || lt.split('/').includes('..'))
        fail(h.path, `hard link target ${h.linkname} leaves the root`);
      const source = posix.join(root, opts.rewrite ? opts.rewrite(lt) : lt);
      staysInside(h.path, posix.dirname(source));
      removeExisting(dest);
      linkSync(source, dest);
    } else {
      fail(h.path, 'device nodes, fifos and other special files are not allowed');
    }
  }
  return { paths, captured, bytes };
}

function removeExisting(dest: string): void {
  const st = lstatSync(dest, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isDirectory()) throw new KilnError(`cannot replace directory ${dest} with a file`);
  // Replacing a file shipped by an earlier package (dpkg would divert or complain; the fixed
  // package order decides who wins).
  unlinkSync(dest);
}

// The process umask, read for each extraction (callers and tests change it): files are created
// with the archive's mode and fixed up with chmod only when the umask removed bits from it.
function currentUmask(): number {
  const m = process.umask(0o022);
  process.umask(m);
  return m;
}
