import path from 'node:path';
import { readdirInRootIfExists, readTextInRootIfExists } from '../internal/safe-read.ts';
import type { Image } from '../oci/image.ts';
import type { LaunchCheckCache } from './launch-cache.ts';
import { ImageView, indexImage, ListedTree, type RunImageIndex } from './launch-fs.ts';

// What a launch-check miss says: the process, the file, what it needs and, where the stack knows
// it, the Debian package that provides it (from a run image's dpkg data, else the build image's
// dpkg file lists: both images come from the stack's one package index) and the run-image flavour
// that has it. Looked up only when the check failed.

/** One thing a process cannot load or run. */
export interface Miss {
  /** `process "web"` or `launch layer <bp>:<layer>`. */
  readonly subject: string;
  /** The file that needs it (image path), or `executable "node"` for a command not found. */
  readonly file: string;
  /** A library name, an interpreter path, or a command name. */
  readonly needs: string;
  readonly kind: 'library' | 'interpreter' | 'command';
  /** An ELF file's PT_INTERP (the dynamic loader), not a script's interpreter. */
  readonly loader?: boolean;
  /** For a command: the `env` that looks it up, and the PATH searched. */
  readonly via?: string;
  readonly searched?: readonly string[];
}

/** Where hints come from besides the run image: the builder's other run images and the build image. */
export interface HintSources {
  /** The builder's run images (every flavour), opened on demand. */
  readonly runImages?: () => Promise<readonly { readonly name: string; readonly image: Image }[]>;
  /** The build image's root filesystem (its dpkg database lists every file of every package). */
  readonly buildRootfs?: string;
}

/** What the hints found. */
export interface Hints {
  readonly runImage: string;
  readonly shellFree: boolean;
  readonly pkg?: string;
  readonly flavour?: string;
}

const FLAVOUR_LABEL = 'io.kiln.stack.flavour';

function isIndex(v: unknown): v is RunImageIndex {
  const i = v as RunImageIndex;
  return (
    typeof v === 'object' &&
    v !== null &&
    i.v === 1 &&
    Array.isArray(i.nodes) &&
    Array.isArray(i.ldConf) &&
    typeof i.ldCache === 'boolean' &&
    typeof i.packages === 'object' &&
    i.packages !== null
  );
}

/** runImageIndex is an image's index, cached by its digest (read from its layers once). */
export async function runImageIndex(image: Image, cache: LaunchCheckCache): Promise<RunImageIndex> {
  const key = (await image.digest()).replace(/^sha256:/, '');
  const cached = await cache.get('run-image', key, isIndex);
  if (cached) return cached;
  const index = await indexImage(image);
  await cache.put('run-image', key, index);
  return index;
}

/** ownerOf is the package listing a path (either side of the /usr merge). */
function ownerOf(index: RunImageIndex, p: string): string | undefined {
  const rel = p.replace(/^\/+/, '');
  const alt = rel.startsWith('usr/') ? rel.slice(4) : `usr/${rel}`;
  return index.packages[rel] ?? index.packages[alt];
}

/**
 * findIn looks for what a miss needs in an image (no layers): its path, or the library in the
 * loader's dirs. It returns the path asked for and the file it resolves to (dpkg lists the latter
 * when the former is a link the package does not list).
 */
function findIn(index: RunImageIndex, m: Miss, triplet: string): readonly string[] | undefined {
  const view = new ImageView(new ListedTree(index.nodes), new Map());
  const at = (p: string) => {
    const r = view.resolve(p);
    return r && r.node.t !== 'd' ? [p, r.path] : undefined;
  };
  if (m.kind === 'interpreter') return at(m.needs);
  if (m.needs.includes('/')) return undefined;
  const dirs =
    m.kind === 'library'
      ? [...(index.ldCache ? index.ldConf : []), `/lib/${triplet}`, `/usr/lib/${triplet}`, '/lib', '/usr/lib']
      : ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    const found = at(path.posix.join(d, m.needs));
    if (found) return found;
  }
  return undefined;
}

/** runImageHints finds the package and flavour for a miss; lookups that fail only leave a hint out. */
export async function runImageHints(
  m: Miss,
  run: { readonly index: RunImageIndex; readonly name: string; readonly arch: string },
  sources: HintSources | undefined,
  cache: LaunchCheckCache,
): Promise<Hints> {
  const shellFree =
    new ImageView(new ListedTree(run.index.nodes), new Map()).resolve('/bin/sh') === undefined;
  let pkg: string | undefined;
  let flavour: string | undefined;
  try {
    for (const r of (await sources?.runImages?.()) ?? []) {
      const label = (await r.image.configFile()).config?.Labels?.[FLAVOUR_LABEL];
      if (typeof label !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(label)) continue;
      const index = await runImageIndex(r.image, cache);
      const found = findIn(index, m, run.arch);
      if (found === undefined) continue;
      flavour = label;
      pkg = found.map((p) => ownerOf(index, p)).find((x) => x !== undefined);
      break;
    }
  } catch {
    // A run image that cannot be read gives no hint; the miss is reported all the same.
  }
  pkg ??= sources?.buildRootfs ? debianOwner(sources.buildRootfs, m, run.arch) : undefined;
  return { runImage: run.name, shellFree, ...(pkg ? { pkg } : {}), ...(flavour ? { flavour } : {}) };
}

const DPKG_INFO = { what: "the build image's dpkg database", maxBytes: 8 * 1024 * 1024 } as const;

/** debianOwner finds the package of the build image's dpkg lists that ships what a miss needs. */
function debianOwner(rootfs: string, m: Miss, triplet: string): string | undefined {
  if (m.kind === 'command' && m.needs.includes('/')) return undefined;
  const libDirs = new Set([
    `/lib/${triplet}`,
    `/usr/lib/${triplet}`,
    '/lib',
    '/usr/lib',
    '/lib64',
    '/usr/lib64',
  ]);
  const binDirs = new Set(['/bin', '/usr/bin', '/sbin', '/usr/sbin']);
  const wanted = (line: string): boolean => {
    if (m.kind === 'interpreter')
      return line === m.needs || line === `/usr${m.needs}` || `/usr${line}` === m.needs;
    if (path.posix.basename(line) !== m.needs) return false;
    return (m.kind === 'library' ? libDirs : binDirs).has(path.posix.dirname(line));
  };
  try {
    const names = (readdirInRootIfExists(rootfs, 'var/lib/dpkg/info', DPKG_INFO) ?? [])
      .map((e) => e.name)
      .filter((n) => n.endsWith('.list'))
      .sort();
    for (const n of names) {
      const text = readTextInRootIfExists(rootfs, `var/lib/dpkg/info/${n}`, DPKG_INFO) ?? '';
      if (text.split('\n').some((l) => wanted(l.trim())))
        return n.slice(0, -'.list'.length).replace(/:.*$/, '');
    }
  } catch {
    // An unreadable database gives no hint.
  }
  return undefined;
}

/** missLine is the one line a failed check prints. */
export function missLine(m: Miss, h: Hints): string {
  // A program missing from a shell-free image is the common case: the flavour is the news there.
  const program = m.kind !== 'library' && !m.loader;
  const image = h.shellFree && program ? 'shell-free run image' : `run image ${h.runImage}`;
  const pkg = h.pkg ? ` (Debian package ${h.pkg})` : '';
  const flavour = h.flavour ? `; the "${h.flavour}" flavour has it: --run-image ${h.flavour}` : '';
  if (m.kind === 'command') {
    const where = `the launch PATH${m.searched?.length ? ` (${m.searched.join(':')})` : ''}`;
    const lacks = `neither a launch layer nor the ${image} has it${flavour}${pkg}`;
    if (m.via) return `${m.subject}: ${m.file} needs "${m.needs}" (through ${m.via}) on ${where}: ${lacks}`;
    return `${m.subject}: ${m.file} is on no directory of ${where}: ${lacks}`;
  }
  return `${m.subject}: ${m.file} needs ${m.needs}, which the ${image} lacks${flavour}${pkg}`;
}
