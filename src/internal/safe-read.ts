import {
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  type Stats,
} from 'node:fs';
import { parse } from 'smol-toml';
import { KilnError } from './errors.ts';

// The one way kiln (running as root on the host) reads a tree that untrusted parties wrote or
// shipped: a buildpack's layers, the app directory, an unpacked builder or stack root filesystem,
// restored cache content, a pulled image. A path is resolved *inside* its root one component at a
// time, as openat(2) with O_NOFOLLOW would: each component is opened relative to the directory fd
// of the one before through `/proc/self/fd/<dirfd>/<name>` (the magic link resolves to exactly
// the open directory, so nothing is looked up again by path), and its fstat says what it is. No
// symlink is ever followed by the kernel, so no check can be raced by a writer: a link is either
// refused (the default, for every CNB metadata file) or, in `follow: 'in-root'` mode, read and
// resolved by this module against the root (openat2 RESOLVE_IN_ROOT semantics: absolute targets
// and `..` stay clamped to the root). A link's target is never opened on the host, so errors are
// the same whether the host path it names exists or not, and never show the target.

/** O_PATH (Linux, the same value on x86_64 and arm64): an fd that names a file without opening it. */
const O_PATH = 0o10000000;
const { O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY } = constants;

/** Most symlinks one in-root resolution follows (Linux's own limit, MAXSYMLINKS). */
export const MAX_LINK_HOPS = 40;

/** Largest untrusted file read into memory unless the caller says otherwise (TOML, env files). */
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

/** Why a read was refused. */
export type UntrustedFileReason =
  | 'symlink'
  | 'not-regular'
  | 'not-directory'
  | 'missing'
  | 'too-large'
  | 'too-many-links'
  | 'bad-path'
  | 'invalid-toml'
  | 'unreadable';

/**
 * UntrustedFileError is a file in an untrusted tree that kiln refused to read. Its message is one
 * line naming the file as seen inside its root (never a link target, never content) and what was
 * expected, e.g. `layers/bp/store.toml is a symbolic link: expected a regular file inside the
 * buildpack's layers directory`.
 */
export class UntrustedFileError extends KilnError {
  /** The file as shown in the message (relative to its root, with the root's display prefix). */
  readonly file: string;
  readonly reason: UntrustedFileReason;
  /** The tree is the user's input (the app's project.toml, a --buildpack package): a usage error. */
  readonly userInput: boolean;
  constructor(file: string, reason: UntrustedFileReason, message: string, userInput = false) {
    super(message);
    this.userInput = userInput;
    this.name = 'UntrustedFileError';
    this.file = file;
    this.reason = reason;
  }
}

/** How symlinks inside the tree are treated. */
export type FollowMode = 'never' | 'in-root';

export interface InRootOptions {
  /** What the root is, for messages: "the buildpack's layers directory", "the builder's root filesystem". */
  readonly what?: string;
  /** How the root is shown before the relative path: `layers` → `layers/bp/store.toml`, `/` → `/cnb/run.toml`. */
  readonly shown?: string;
  /** `never` (default): any symlink is refused. `in-root`: links resolve inside the root. */
  readonly follow?: FollowMode;
  /** Files larger than this are refused (the size is counted while reading, not trusted from stat). */
  readonly maxBytes?: number;
  /** The tree is the user's input (the app, a --buildpack package): what it holds is a usage error. */
  readonly userInput?: boolean;
}

type Want = 'file' | 'dir' | 'any';

function display(rel: string, o: InRootOptions): string {
  const clean = rel.replace(/^\/+/, '');
  if (o.shown === undefined || o.shown === '') return clean;
  if (o.shown === '/') return `/${clean}`;
  return clean === '' ? o.shown : `${o.shown}/${clean}`;
}

/**
 * refuse throws the one-line error. `part` names the component at fault when it is not the file
 * itself (`layers/bp/store.toml: layers/bp is a symbolic link: expected a directory inside …`).
 */
function refuse(
  rel: string,
  o: InRootOptions,
  reason: UntrustedFileReason,
  what: string,
  want: Want,
  part?: string,
): never {
  const file = display(rel, o);
  const inside = o.what ?? 'its root';
  const expected =
    want === 'dir' ? 'a directory' : want === 'file' ? 'a regular file' : 'a file or directory';
  const subject = part === undefined ? file : `${file}: ${display(part, o)}`;
  const message =
    reason === 'invalid-toml' || reason === 'too-large' || reason === 'unreadable'
      ? `${subject} ${what}`
      : `${subject} ${what}: expected ${expected} inside ${inside}`;
  throw new UntrustedFileError(file, reason, message, o.userInput);
}

function kindOf(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFile()) return 'a regular file';
  return 'not a regular file';
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // an fd this module opened; nothing useful to do if closing it fails
  }
}

interface Resolved {
  /** An O_PATH fd of the entry (the caller closes it). */
  readonly fd: number;
  readonly st: Stats;
}

/**
 * resolve walks `rel` inside `root` and returns an O_PATH fd of what it names, or undefined when
 * a component does not exist. `followLast` false gives lstat semantics for the final component
 * (a symlink there is returned, not refused or followed).
 */
function resolve(
  root: string,
  rel: string,
  o: InRootOptions,
  want: Want,
  followLast: boolean,
): Resolved | undefined {
  if (rel.includes('\0')) refuse(rel, o, 'bad-path', 'is not a valid path', want);
  const inRoot = o.follow === 'in-root';
  // The root itself is kiln's choice (a temp dir, a cache entry): it is opened by path.
  const rootFd = openSync(root, O_PATH | O_DIRECTORY);
  const stack: number[] = [rootFd];
  let todo = rel.split('/');
  let hops = 0;
  let shownSoFar = '';
  try {
    while (todo.length > 0) {
      const name = todo.shift()!;
      if (name === '' || name === '.') continue;
      if (name === '..') {
        // Callers never ask for `..`; only a link's target (in-root mode) may hold one, and there
        // it stops at the root like RESOLVE_IN_ROOT.
        if (!inRoot) refuse(rel, o, 'bad-path', 'leaves its root (`..`)', want);
        if (stack.length > 1) closeQuietly(stack.pop()!);
        continue;
      }
      const last = todo.every((n) => n === '' || n === '.');
      if (!inRoot) shownSoFar = shownSoFar === '' ? name : `${shownSoFar}/${name}`;
      let fd: number;
      try {
        fd = openSync(`/proc/self/fd/${stack.at(-1)}/${name}`, O_PATH | O_NOFOLLOW);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return undefined;
        if (code === 'ENAMETOOLONG') refuse(rel, o, 'bad-path', 'is not a valid path (name too long)', want);
        refuse(rel, o, 'unreadable', `cannot be read (${code})`, want);
      }
      const st = fstatSync(fd);
      if (st.isSymbolicLink() && (!last || followLast)) {
        if (!inRoot) {
          closeQuietly(fd);
          if (last) refuse(rel, o, 'symlink', 'is a symbolic link', want);
          refuse(rel, o, 'symlink', 'is a symbolic link', 'dir', shownSoFar);
        }
        if (++hops > MAX_LINK_HOPS) {
          closeQuietly(fd);
          refuse(rel, o, 'too-many-links', `has more than ${MAX_LINK_HOPS} levels of symbolic links`, want);
        }
        // The link is read from its directory fd (the final component is not followed by
        // readlink), and only ever resolved here, against the root.
        let target: string;
        try {
          target = readlinkSync(`/proc/self/fd/${stack.at(-1)}/${name}`);
        } finally {
          closeQuietly(fd);
        }
        if (target.startsWith('/')) while (stack.length > 1) closeQuietly(stack.pop()!);
        todo = [...target.split('/'), ...todo];
        continue;
      }
      if (!last && !st.isDirectory()) {
        closeQuietly(fd);
        refuse(rel, o, 'not-directory', `is ${kindOf(st)}`, 'dir', inRoot ? undefined : shownSoFar);
      }
      stack.push(fd);
    }
    // What the path names is on top of the stack (the root itself for "" or "a/..").
    const top = stack.length > 1 ? stack.pop()! : openSync(root, O_PATH | O_DIRECTORY);
    return { fd: top, st: fstatSync(top) };
  } finally {
    for (const fd of stack) closeQuietly(fd);
  }
}

function resolveExpecting(root: string, rel: string, o: InRootOptions, want: Want): Resolved | undefined {
  const r = resolve(root, rel, o, want, true);
  if (!r) return undefined;
  const ok =
    want === 'any'
      ? r.st.isFile() || r.st.isDirectory()
      : want === 'dir'
        ? r.st.isDirectory()
        : r.st.isFile();
  if (!ok) {
    closeQuietly(r.fd);
    refuse(rel, o, want === 'dir' ? 'not-directory' : 'not-regular', `is ${kindOf(r.st)}`, want);
  }
  return r;
}

/**
 * openFileInRootIfExists opens a regular file inside `root` for reading and returns its fd (the
 * caller closes it), or undefined when it does not exist. Links, FIFOs, sockets and devices are
 * refused without being opened: the entry is first named by an O_PATH fd, and only a regular file
 * is reopened for reading. Synchronous on purpose: a few microsecond syscalls per component,
 * where a thread-pool hop each would cost more than the work on the no-op rebuild path.
 */
export function openFileInRootIfExists(root: string, rel: string, o: InRootOptions = {}): number | undefined {
  const r = resolveExpecting(root, rel, o, 'file');
  if (!r) return undefined;
  let fd: number;
  try {
    // Reopening the O_PATH fd through its magic link opens exactly the inode checked above (the
    // magic link is not a path walk; O_NOFOLLOW would refuse the magic link itself).
    fd = openSync(`/proc/self/fd/${r.fd}`, O_RDONLY | O_NONBLOCK);
  } catch (e) {
    refuse(rel, o, 'unreadable', `cannot be read (${(e as NodeJS.ErrnoException).code})`, 'file');
  } finally {
    closeQuietly(r.fd);
  }
  const st = fstatSync(fd);
  if (!st.isFile() || st.ino !== r.st.ino || st.dev !== r.st.dev) {
    closeQuietly(fd);
    refuse(rel, o, 'not-regular', `is ${kindOf(st)}`, 'file');
  }
  return fd;
}

/**
 * readFileInRootIfExists reads a regular file inside `root` (see openFileInRootIfExists);
 * undefined when it does not exist. More than `maxBytes` is refused, counted while reading.
 */
export function readFileInRootIfExists(root: string, rel: string, o: InRootOptions = {}): Buffer | undefined {
  const fd = openFileInRootIfExists(root, rel, o);
  if (fd === undefined) return undefined;
  const max = o.maxBytes ?? DEFAULT_MAX_BYTES;
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    // Never trust st.size: read until EOF, stopping one byte past the cap.
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(64 * 1024, max + 1 - total));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
      total += n;
      if (total > max)
        refuse(rel, o, 'too-large', `is larger than ${max} bytes, the most kiln reads`, 'file');
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } finally {
    closeQuietly(fd);
  }
}

/** readFileInRoot is readFileInRootIfExists where a missing file is an error naming it. */
export function readFileInRoot(root: string, rel: string, o: InRootOptions = {}): Buffer {
  const b = readFileInRootIfExists(root, rel, o);
  if (b === undefined) refuse(rel, o, 'missing', 'does not exist', 'file');
  return b;
}

/** readTextInRootIfExists reads a file as UTF-8 text (see readFileInRootIfExists). */
export function readTextInRootIfExists(root: string, rel: string, o: InRootOptions = {}): string | undefined {
  return readFileInRootIfExists(root, rel, o)?.toString('utf8');
}

/** readTextInRoot reads a file as UTF-8 text; a missing file is an error naming it. */
export function readTextInRoot(root: string, rel: string, o: InRootOptions = {}): string {
  return readFileInRoot(root, rel, o).toString('utf8');
}

/**
 * parseUntrustedToml parses TOML from an untrusted file. A syntax error names the file and the
 * line and column only: the parser's own message quotes the offending text, and that text may be
 * a host file's if anything upstream went wrong, so no content is echoed.
 */
export function parseUntrustedToml(
  text: string,
  rel: string,
  o: InRootOptions = {},
): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (e) {
    const { line, column } = e as { line?: unknown; column?: unknown };
    const at =
      typeof line === 'number' && typeof column === 'number' ? ` (line ${line}, column ${column})` : '';
    refuse(rel, o, 'invalid-toml', `is not valid TOML${at}`, 'file');
  }
}

/** readTomlInRootIfExists reads and parses a TOML file inside `root`; undefined when absent. */
export function readTomlInRootIfExists(
  root: string,
  rel: string,
  o: InRootOptions = {},
): Record<string, unknown> | undefined {
  const text = readTextInRootIfExists(root, rel, o);
  return text === undefined ? undefined : parseUntrustedToml(text, rel, o);
}

/** readTomlInRoot reads and parses a TOML file inside `root`; a missing file is an error. */
export function readTomlInRoot(root: string, rel: string, o: InRootOptions = {}): Record<string, unknown> {
  return parseUntrustedToml(readTextInRoot(root, rel, o), rel, o);
}

/**
 * statInRoot stats what `rel` names (links per `follow`: refused by default); undefined when
 * absent. Any kind of entry is returned; callers check the kind they need.
 */
export function statInRoot(root: string, rel: string, o: InRootOptions = {}): Stats | undefined {
  const r = resolve(root, rel, o, 'any', true);
  if (!r) return undefined;
  closeQuietly(r.fd);
  return r.st;
}

/**
 * lstatInRoot is statInRoot that does not follow (or refuse) a link in the final component; links
 * in the components before it are still refused (or, in-root mode, resolved inside the root).
 */
export function lstatInRoot(root: string, rel: string, o: InRootOptions = {}): Stats | undefined {
  const r = resolve(root, rel, o, 'any', false);
  if (!r) return undefined;
  closeQuietly(r.fd);
  return r.st;
}

/** existsInRoot tells whether `rel` names an entry (the final component is not followed). */
export function existsInRoot(root: string, rel: string, o: InRootOptions = {}): boolean {
  return lstatInRoot(root, rel, o) !== undefined;
}

/** isDirInRoot tells whether `rel` is a directory; a link there is refused (or resolved in-root). */
export function isDirInRoot(root: string, rel: string, o: InRootOptions = {}): boolean {
  const r = resolve(root, rel, o, 'dir', true);
  if (!r) return false;
  closeQuietly(r.fd);
  return r.st.isDirectory();
}

/**
 * readdirInRootIfExists lists a directory inside `root` (entries typed from the directory itself:
 * a symlink entry is reported as one, never followed); undefined when it does not exist.
 */
export function readdirInRootIfExists(
  root: string,
  rel: string,
  o: InRootOptions = {},
): Dirent[] | undefined {
  const r = resolveExpecting(root, rel, o, 'dir');
  if (!r) return undefined;
  try {
    return readdirSync(`/proc/self/fd/${r.fd}`, { withFileTypes: true });
  } finally {
    closeQuietly(r.fd);
  }
}

/** readdirInRoot is readdirInRootIfExists where a missing directory is an error naming it. */
export function readdirInRoot(root: string, rel: string, o: InRootOptions = {}): Dirent[] {
  const d = readdirInRootIfExists(root, rel, o);
  if (d === undefined) refuse(rel, o, 'missing', 'does not exist', 'dir');
  return d;
}

/** InRootFile names a file inside an untrusted tree, with how to read it and how to name it. */
export interface InRootFile extends InRootOptions {
  readonly root: string;
  readonly rel: string;
}

/** inRoot makes an InRootFile: `rel` inside `root`, read with `o`. */
export function inRoot(root: string, rel: string, o: InRootOptions = {}): InRootFile {
  return { ...o, root, rel };
}

/** childOf names `name` (one or more components) below an InRootFile. */
export function childOf(f: InRootFile, name: string): InRootFile {
  return { ...f, rel: f.rel === '' ? name : `${f.rel}/${name}` };
}

/** shownPath is how messages name an InRootFile (`layers/bp/store.toml`, `/cnb/order.toml`). */
export function shownPath(f: InRootFile): string {
  return display(f.rel, f);
}
