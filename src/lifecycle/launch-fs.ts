import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { lstatInRoot } from '../internal/safe-read.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { Image } from '../oci/image.ts';

// The app image's filesystem as the launch check sees it, without unpacking anything: the run
// image as a listing read once from its layer tars (kept per run image digest), each launch layer
// as the listing its scan made, and the app directory on the host. Links are resolved here,
// component by component, inside the image's root (an absolute target restarts at the image's
// root, never the host's), with the kernel's bound on hops.

/** An entry: 'f' file, 'x' executable file, 'd' directory, 'l' symbolic link (with its target). */
export type FsKind = 'f' | 'x' | 'd' | 'l';
export interface FsNode {
  readonly t: FsKind;
  readonly link?: string;
}

/** A tree a path inside it (no leading slash, normalised) is looked up in; links are not followed. */
export interface FileTree {
  lookup(rel: string): FsNode | undefined;
}

const DIR: FsNode = { t: 'd' };
/** Linux's bound on links followed in one lookup (ELOOP beyond it). */
const MAX_HOPS = 40;

/** normalEntryPath turns a tar entry path into the tree's form; undefined for one that escapes. */
export function normalEntryPath(p: string): string | undefined {
  const parts: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') return undefined;
    parts.push(c);
  }
  return parts.join('/');
}

/** kindOf maps a tar entry type and mode to a node kind (hard links and devices count as files). */
export function kindOf(type: string, mode: number): FsKind {
  if (type === 'dir') return 'd';
  if (type === 'symlink') return 'l';
  return mode & 0o111 ? 'x' : 'f';
}

/** ListedTree is a tree held as a listing; parents a listing leaves out are directories. */
export class ListedTree implements FileTree {
  readonly #nodes = new Map<string, FsNode>();

  constructor(nodes: Iterable<readonly [string, FsKind, string?]>) {
    for (const [p, t, link] of nodes) this.set(p, link === undefined ? { t } : { t, link });
  }

  set(p: string, n: FsNode): void {
    this.#nodes.set(p, n);
    for (let d = path.posix.dirname(p); d !== '.' && !this.#nodes.has(d); d = path.posix.dirname(d))
      this.#nodes.set(d, DIR);
  }

  lookup(rel: string): FsNode | undefined {
    return rel === '' ? DIR : this.#nodes.get(rel);
  }

  /** entries lists the tree for serialising. */
  entries(): [string, FsKind, string?][] {
    return [...this.#nodes].map(([p, n]) => (n.link === undefined ? [p, n.t] : [p, n.t, n.link]));
  }
}

/** HostTree is a directory on the host (the app dir), looked up without following any link. */
export class HostTree implements FileTree {
  readonly root: string;
  /** Whether anything inside the root was looked up (a result then depends on the tree's content). */
  touched = false;
  constructor(root: string) {
    this.root = root;
  }
  lookup(rel: string): FsNode | undefined {
    if (rel === '') return DIR;
    this.touched = true;
    try {
      // The resolver asks for every parent first, so none of them is a link here.
      const st = lstatInRoot(this.root, rel);
      if (!st) return undefined;
      if (st.isDirectory()) return DIR;
      if (st.isSymbolicLink()) return { t: 'l', link: readlinkSync(path.join(this.root, rel)) };
      return { t: st.mode & 0o111 ? 'x' : 'f' };
    } catch {
      return undefined;
    }
  }
}

/** Where a resolved path lives: the tree and the path inside it. */
export interface Resolved {
  /** The absolute image path, links resolved. */
  readonly path: string;
  readonly node: FsNode;
  /** The mount it is in ('' for the run image) and the path inside that mount. */
  readonly mount: string;
  readonly rel: string;
}

/** ImageView joins the run image and the trees mounted over it (`layers/<bp>/<layer>`, `workspace`). */
export class ImageView {
  readonly #base: FileTree;
  readonly #mounts: ReadonlyMap<string, FileTree>;
  readonly #parents = new Set<string>();

  constructor(base: FileTree, mounts: ReadonlyMap<string, FileTree>) {
    this.#base = base;
    this.#mounts = mounts;
    for (const m of mounts.keys())
      for (let d = path.posix.dirname(m); d !== '.'; d = path.posix.dirname(d)) this.#parents.add(d);
  }

  #at(parts: readonly string[]): { node: FsNode | undefined; mount: string; rel: string } {
    for (const n of [3, 1]) {
      if (parts.length < n) continue;
      const key = parts.slice(0, n).join('/');
      const tree = this.#mounts.get(key);
      if (tree) {
        const rel = parts.slice(n).join('/');
        return { node: tree.lookup(rel), mount: key, rel };
      }
    }
    const rel = parts.join('/');
    if (this.#parents.has(rel)) return { node: DIR, mount: '', rel };
    return { node: this.#base.lookup(rel), mount: '', rel };
  }

  /** resolve follows every link of an absolute path (relative ones are taken from `cwd`). */
  resolve(p: string, cwd = '/'): Resolved | undefined {
    let todo = path.posix
      .resolve('/', cwd, p)
      .split('/')
      .filter((c) => c !== '');
    const done: string[] = [];
    let hops = 0;
    while (todo.length > 0) {
      const c = todo[0]!;
      todo = todo.slice(1);
      if (c === '.') continue;
      if (c === '..') {
        done.pop();
        continue;
      }
      done.push(c);
      const { node } = this.#at(done);
      if (!node) return undefined;
      if (node.t === 'l') {
        if (++hops > MAX_HOPS || node.link === undefined || node.link === '') return undefined;
        done.pop();
        const target = node.link.split('/').filter((x) => x !== '');
        if (node.link.startsWith('/')) done.length = 0;
        todo = [...target, ...todo];
        continue;
      }
      if (node.t !== 'd' && todo.length > 0) return undefined;
    }
    const at = this.#at(done);
    if (!at.node) return undefined;
    return { path: `/${done.join('/')}`, node: at.node, mount: at.mount, rel: at.rel };
  }
}

/** What the launch check keeps of a run image: its listing, loader config, and which package owns a file. */
export interface RunImageIndex {
  readonly v: 1;
  readonly nodes: readonly [string, FsKind, string?][];
  /** The directories /etc/ld.so.conf (with its includes) names. */
  readonly ldConf: readonly string[];
  /** Whether /etc/ld.so.cache exists (without it the loader never reads the ld.so.conf dirs). */
  readonly ldCache: boolean;
  /** Image path (no leading slash) → Debian package, from the image's dpkg data. */
  readonly packages: Readonly<Record<string, string>>;
}

/** Files whose content the index needs (the loader's config and the dpkg file lists). */
const CAPTURED = [
  /^etc\/ld\.so\.conf$/,
  /^etc\/ld\.so\.conf\.d\/[^/]+$/,
  /^var\/lib\/dpkg\/status\.d\/[^/]+\.md5sums$/,
  /^var\/lib\/dpkg\/info\/[^/]+\.(list|md5sums)$/,
];
const MAX_CAPTURED = 4 * 1024 * 1024;
/** All captured files together (a full Debian image's dpkg lists are a few MB). */
const MAX_CAPTURED_TOTAL = 64 * 1024 * 1024;

/**
 * indexImage reads an image's layers (bottom first, whiteouts applied) into a RunImageIndex. The
 * image is the run image the stack or the user chose: untrusted, so paths that escape are dropped
 * and captured files are bounded.
 */
export async function indexImage(image: Image): Promise<RunImageIndex> {
  const nodes = new Map<string, FsNode>();
  const texts = new Map<string, string>();
  let captured = 0;
  for (const layer of await image.layers()) {
    const added = new Set<string>();
    for await (const e of readTar(await layer.uncompressed())) {
      const p = normalEntryPath(e.header.path);
      if (p === undefined || p === '') continue;
      const base = path.posix.basename(p);
      if (base.startsWith('.wh.')) {
        const dir = path.posix.dirname(p);
        const gone =
          base === '.wh..wh..opq'
            ? (k: string) => k.startsWith(`${dir === '.' ? '' : `${dir}/`}`) && !added.has(k)
            : (k: string) => {
                const t = path.posix.join(dir, base.slice(4));
                return k === t || k.startsWith(`${t}/`);
              };
        for (const m of [nodes, texts]) for (const k of [...m.keys()]) if (gone(k)) m.delete(k);
        continue;
      }
      added.add(p);
      const t = kindOf(e.header.type, e.header.mode);
      nodes.set(p, t === 'l' ? { t, link: e.header.linkname } : { t });
      const size = e.header.size;
      if (
        e.header.type === 'file' &&
        size <= MAX_CAPTURED &&
        captured + size <= MAX_CAPTURED_TOTAL &&
        CAPTURED.some((r) => r.test(p))
      ) {
        captured += size;
        const chunks: Buffer[] = [];
        for await (const c of e.body) chunks.push(Buffer.from(c));
        texts.set(p, Buffer.concat(chunks).toString('utf8'));
      }
    }
  }
  const tree = new ListedTree([]);
  for (const [p, n] of nodes) tree.set(p, n);
  return {
    v: 1,
    nodes: tree.entries(),
    ldConf: ldSoConf(texts),
    ldCache: nodes.has('etc/ld.so.cache'),
    packages: dpkgOwners(texts),
  };
}

/** ldSoConf reads /etc/ld.so.conf and its `include` globs (a `*` in the file name part). */
function ldSoConf(texts: ReadonlyMap<string, string>): string[] {
  const dirs: string[] = [];
  const seen = new Set<string>();
  const read = (file: string, depth: number) => {
    if (depth > 8 || seen.has(file)) return;
    seen.add(file);
    for (const raw of (texts.get(file) ?? '').split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      const inc = /^include\s+(\S+)$/.exec(line);
      if (inc) {
        const pat = normalEntryPath(inc[1]!) ?? '';
        const dir = path.posix.dirname(pat);
        const re = new RegExp(
          `^${path.posix
            .basename(pat)
            .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')}$`,
        );
        const files = [...texts.keys()].filter(
          (k) => path.posix.dirname(k) === dir && re.test(path.posix.basename(k)),
        );
        for (const f of files.sort()) read(f, depth + 1);
      } else if (line.startsWith('/')) dirs.push(line);
    }
  };
  read('etc/ld.so.conf', 0);
  return dirs;
}

/** dpkgOwners maps each file a package lists (dpkg info lists, status.d md5sums) to the package. */
function dpkgOwners(texts: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, text] of texts) {
    const m = /^var\/lib\/dpkg\/(?:status\.d|info)\/([^/:]+)(?::[^/]+)?\.(list|md5sums)$/.exec(file);
    if (!m) continue;
    for (const line of text.split('\n')) {
      const p = m[2] === 'list' ? line.trim() : line.replace(/^[0-9a-f]+\s+/, '').trim();
      const n = normalEntryPath(p);
      if (n) out[n] = m[1]!;
    }
  }
  return out;
}
