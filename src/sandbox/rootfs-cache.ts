/**
 * RootfsCache keeps one unpacked root filesystem per image manifest digest under
 * `<dir>/<algorithm>-<hex>/`, shared read-only by every build that uses that image (the sandbox
 * mounts it with --ro-bind; after it is published nothing writes into it but addMountPoint, which
 * only adds empty root-owned directories or files where a build mounts something the image lacks).
 *
 * Publication is atomic: layers are unpacked into a temporary sibling (mode 0700: no other user
 * reaches a half-made tree), the tree is made inert, the sandbox mount points are created, and
 * only then is it renamed into place — a directory at the final name is always complete, and an
 * interrupted unpack leaves only a temporary directory that is never used (and is swept on a later
 * call once its owner is gone). Concurrent callers for the same digest serialise on a lock file
 * (src/internal/lock.ts: a lock whose owner is gone is taken over), so the image is unpacked once.
 *
 * Inert: the cache must be reachable by the sandbox's host uids, so it is searchable by every host
 * user; what a hostile image puts in it must therefore grant nothing on the host. Whatever the
 * unpacker did, makeInert() then removes device nodes, fifos and sockets, drops setuid/setgid bits
 * and group/other write bits, and (kiln as root) gives every entry to root — a non-root owner's
 * read/execute bits go to everyone instead, so the image's users still read their files. No host
 * user can run a setuid file from it, open a device through it, or change a tree later builds use.
 * A stamp `<entry>.json` (written before the rename) records the tree's size and that it is inert;
 * an entry without one (unpacked by an older kiln, which kept those bits) is never handed out: it
 * is replaced, and prune() removes it.
 *
 * Pruning: prune() removes entries by age (last use: the entry's mtime, set by every ensure()) and
 * by total size (least recently used first), or all of them; an entry in use is never removed.
 * In use means a live process holds a lease (`<entry>.use-<pid>`, written by ensure() before it
 * looks for the entry, so a concurrent prune always sees it) or the entry's lock (being unpacked
 * or pruned). ensure() applies the cache's bound after each new unpack.
 */
import fsSync from 'node:fs';
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { KilnError } from '../internal/errors.ts';
import { exists, lstatIfExists, statIfExists } from '../internal/fs.ts';
import { acquireLock, tryLock } from '../internal/lock.ts';
import { ensureOwnedDir } from '../internal/owned-dir.ts';
import { pidAlive } from '../internal/process.ts';
import { tempSibling } from '../internal/temp-name.ts';
import { inertMode } from '../layers/extract.ts';
import { ExtractBudget, type ExtractLimits, ROOTFS_LIMITS } from '../layers/extract-limits.ts';
import { algorithmOf, type Digest, hexOf, parseDigest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { MOUNT_POINTS, NETWORK_FILES } from './executor.ts';

/** Unpacks an image's layers, bottom first, into an empty directory (whiteouts applied). */
export type Unpacker = (dest: string) => Promise<void>;

/** Which entries prune() removes (entries in use are always kept). */
export interface PrunePolicy {
  /** Remove every entry not in use. */
  readonly all?: boolean;
  /** Keep at most this many bytes, least recently used removed first (docker's --keep-storage). */
  readonly maxBytes?: number;
  /** Remove entries not used for longer than this (docker's --filter until=). */
  readonly maxAgeMs?: number;
  /** Only report what would be removed. */
  readonly dryRun?: boolean;
}

/** Default bound of the rootfs cache: about 15 builders of 530 MB; a month unused. */
export const DEFAULT_ROOTFS_BOUND: PrunePolicy = { maxBytes: 8 * 1024 ** 3, maxAgeMs: 30 * 86_400_000 };

/** One entry prune() removed (or would remove, with dryRun). */
export interface PrunedEntry {
  readonly path: string;
  readonly bytes: number;
  readonly lastUsed: Date;
  /** Why: every entry asked for, unused too long, over the size bound, or made by an older kiln. */
  readonly reason: 'all' | 'age' | 'size' | 'legacy';
}

/** What prune() did. */
export interface PruneReport {
  readonly removed: readonly PrunedEntry[];
  /** Entries prune() would have removed but that are in use. */
  readonly inUse: readonly string[];
  /** Bytes of the entries left in the cache. */
  readonly keptBytes: number;
}

/** Options of RootfsCache. */
export interface RootfsCacheOptions {
  /** How long to wait for another process unpacking the same image (default 10 minutes). */
  readonly lockTimeoutMs?: number;
  /** Extra mount points to create besides MOUNT_POINTS. */
  readonly mountPoints?: readonly string[];
  /** Applied with prune() after each new unpack (default DEFAULT_ROOTFS_BOUND). */
  readonly bound?: PrunePolicy;
  /** Told about each entry the automatic bound removed. */
  readonly onPruned?: (e: PrunedEntry) => void;
  /** What one image may unpack to, all layers together (default ROOTFS_LIMITS). */
  readonly limits?: ExtractLimits;
}

const ENTRY = /^sha(256|512)-[0-9a-f]+$/;
const LEASE = /^(sha(?:256|512)-[0-9a-f]+)\.use-(\d+)$/;

/** Entries this process holds a lease on (a lease lasts as long as the process, or until release()). */
const leased = new Set<string>();

/** The content-addressed cache of unpacked root filesystems. */
export class RootfsCache {
  readonly dir: string;
  readonly #opts: RootfsCacheOptions;

  constructor(dir: string, opts: RootfsCacheOptions = {}) {
    this.dir = dir;
    this.#opts = opts;
  }

  /** The directory an image's rootfs lives in once unpacked. */
  pathFor(digest: Digest | string): string {
    const d = parseDigest(String(digest), 'image digest');
    return path.join(this.dir, `${algorithmOf(d)}-${hexOf(d)}`);
  }

  /**
   * ensure returns the rootfs directory for `digest`, calling `unpack` (once, across processes)
   * when it is not cached yet. The calling process holds a lease on it from then on: prune()
   * leaves it alone while the process lives.
   */
  async ensure(digest: Digest | string, unpack: Unpacker): Promise<string> {
    const final = this.pathFor(digest);
    // The sandbox user must be able to reach the cache (bwrap runs as the build uid); no other
    // user may write it (a planted entry would be mounted as a builder's root).
    ensureOwnedDir(this.dir, { what: 'the rootfs cache', mode: 0o755 });
    await this.#lease(final);
    if (await isReady(final)) return this.#touch(final);
    try {
      return await this.#ensureLocked(final, unpack);
    } catch (e) {
      await this.release(digest);
      throw e;
    }
  }

  async #ensureLocked(final: string, unpack: Unpacker): Promise<string> {
    // Concurrent callers for one digest wait here; the first unpacks, the others find it ready.
    const held = await acquireLock(`${final}.lock`, {
      timeoutMs: this.#opts.lockTimeoutMs ?? 10 * 60_000,
    });
    let unpacked = false;
    try {
      if (!(await isReady(final))) {
        // An entry without a stamp was unpacked by an older kiln that kept setuid bits: replace it.
        if (await exists(final)) await discard(final);
        await this.#sweep();
        await this.#unpackInto(final, unpack);
        unpacked = true;
      }
    } finally {
      await held.release();
    }
    await this.#touch(final);
    if (unpacked) {
      // The new entry is leased by this process, so the bound never removes it.
      const report = await this.prune({ ...(this.#opts.bound ?? DEFAULT_ROOTFS_BOUND), dryRun: false });
      for (const e of report.removed) this.#opts.onPruned?.(e);
    }
    return final;
  }

  /** release ends this process's lease on an entry (a lease otherwise lasts until the process exits). */
  async release(digest: Digest | string): Promise<void> {
    const final = this.pathFor(digest);
    await rm(`${final}.use-${process.pid}`, { force: true });
    leased.delete(final);
  }

  /**
   * ensureImage: ensure() for an Image, unpacking its layers with `extractLayer`, which must pass
   * `limits` to extract(): one budget for all the image's layers (a hit leaves nothing behind:
   * the unpack directory is removed).
   */
  async ensureImage(
    image: Image,
    extractLayer: (tar: Readable, dest: string, limits: ExtractBudget) => Promise<void>,
  ): Promise<string> {
    const digest = await image.digest();
    return this.ensure(digest, async (dest) => {
      const budget = new ExtractBudget(
        `image ${digest}`,
        this.#opts.limits ?? ROOTFS_LIMITS,
        'max-image-size / max-image-entries in [rootfs-cache] of the kiln config',
      );
      for (const layer of await image.layers()) {
        budget.layer = String(await layer.digest());
        await extractLayer(await layer.uncompressed(), dest, budget);
      }
    });
  }

  /**
   * prune removes entries the policy names (everything with `all`; unused longer than `maxAgeMs`;
   * beyond `maxBytes` counting from the most recently used) and entries made by an older kiln,
   * skipping those in use. It also sweeps what dead processes left (temp dirs, leases).
   */
  async prune(policy: PrunePolicy): Promise<PruneReport> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    if (!policy.dryRun) await this.#sweep(names);
    const entries: { path: string; used: number; bytes: number; legacy: boolean }[] = [];
    for (const name of names) {
      if (!ENTRY.test(name)) continue;
      const p = path.join(this.dir, name);
      const st = await lstatIfExists(p);
      if (!st?.isDirectory()) continue;
      const stamp = await readStamp(p);
      entries.push({ path: p, used: st.mtimeMs, bytes: stamp?.bytes ?? treeBytes(p), legacy: !stamp });
    }
    entries.sort((a, b) => b.used - a.used);
    const now = Date.now();
    const removed: PrunedEntry[] = [];
    const inUse: string[] = [];
    let kept = 0;
    for (const e of entries) {
      const reason: PrunedEntry['reason'] | undefined = policy.all
        ? 'all'
        : e.legacy
          ? 'legacy'
          : policy.maxAgeMs !== undefined && now - e.used > policy.maxAgeMs
            ? 'age'
            : policy.maxBytes !== undefined && kept + e.bytes > policy.maxBytes
              ? 'size'
              : undefined;
      const gone = { path: e.path, bytes: e.bytes, lastUsed: new Date(e.used) };
      if (reason === undefined) kept += e.bytes;
      else if (await this.#inUse(e.path)) {
        inUse.push(e.path);
        kept += e.bytes;
      } else if (policy.dryRun || (await this.#remove(e.path))) removed.push({ ...gone, reason });
      else {
        inUse.push(e.path);
        kept += e.bytes;
      }
    }
    return { removed, inUse, keptBytes: kept };
  }

  /** Records that this process uses `final` (before it is looked up, so prune() sees it first). */
  async #lease(final: string): Promise<void> {
    if (leased.has(final)) return;
    await writeFile(`${final}.use-${process.pid}`, '', { mode: 0o644 });
    if (leased.size === 0) process.once('exit', dropLeases);
    leased.add(final);
  }

  /** True when a live process holds a lease on `final` or its lock (unpacking or pruning it). */
  async #inUse(final: string): Promise<boolean> {
    const base = path.basename(final);
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const m = LEASE.exec(name);
      if (m?.[1] === base && pidAlive(Number(m[2]))) return true;
    }
    return false;
  }

  /**
   * Removes one entry under its lock (busy: kept). It is renamed aside first, so an ensure() never
   * sees a half-deleted tree, and put back if a lease appeared meanwhile.
   */
  async #remove(final: string): Promise<boolean> {
    const held = await tryLock(`${final}.lock`);
    if (!held) return false;
    try {
      if (await this.#inUse(final)) return false;
      const doomed = tempSibling(final);
      await rename(final, doomed);
      if (await this.#inUse(final)) {
        await rename(doomed, final);
        return false;
      }
      await rm(`${final}.json`, { force: true });
      await rm(doomed, { recursive: true, force: true });
      return true;
    } finally {
      await held.release();
    }
  }

  /** Marks a rootfs as used now (its directory mtime), for prune(). */
  async #touch(final: string): Promise<string> {
    const now = new Date();
    // Best-effort: the mtime only orders prune(); a rootfs it cannot touch is pruned earlier, never misused.
    await utimes(final, now, now).catch(() => {});
    return final;
  }

  async #unpackInto(final: string, unpack: Unpacker): Promise<void> {
    const temp = tempSibling(final);
    // 0700 until published: no other host user reaches a tree that is not inert yet.
    await mkdir(temp, { mode: 0o700 });
    try {
      await unpack(temp);
      const { bytes } = makeInert(temp);
      await this.#ensureMountPoints(temp);
      await writeFile(`${final}.json`, `${JSON.stringify({ inert: true, bytes })}\n`, { mode: 0o644 });
      // The root of the tree: readable and searchable by the sandbox user whatever the layers said.
      await chmod(temp, 0o755);
      try {
        await rename(temp, final);
      } catch (e) {
        // Someone else published it first (two takers of one stale lock): theirs is complete too.
        const code = (e as NodeJS.ErrnoException).code;
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(final))) {
          await rm(temp, { recursive: true, force: true });
          return;
        }
        throw e;
      }
    } catch (e) {
      await rm(temp, { recursive: true, force: true });
      throw e;
    }
  }

  async #ensureMountPoints(root: string): Promise<void> {
    for (const f of NETWORK_FILES) {
      const file = path.join(root, f);
      // A probe: a missing or unreadable parent means there is no mount point to prepare.
      const dir = await lstat(path.dirname(file)).catch(() => undefined);
      if (dir?.isDirectory() && !(await exists(file))) {
        await writeFile(file, '');
        await chmod(file, 0o644);
      }
    }
    for (const p of [...MOUNT_POINTS, ...(this.#opts.mountPoints ?? [])]) {
      const parts = p.split('/').filter(Boolean);
      let cur = root;
      for (const part of parts) {
        cur = path.join(cur, part);
        const st = await lstatIfExists(cur);
        if (st?.isSymbolicLink()) {
          // e.g. /tmp -> /var/tmp in some images: bwrap follows it inside the rootfs; leave it.
          break;
        }
        if (!st) {
          await mkdir(cur);
          // Explicit chmod: mkdir's mode is filtered by the umask. 0755 for /tmp too: the sandbox
          // mounts its own tmpfs there, and a world-writable directory in the cache would let any
          // host user plant files in it.
          await chmod(cur, 0o755);
        } else if (!st.isDirectory()) {
          throw new KilnError(
            `rootfs: ${p} is not a directory in the image, so the sandbox cannot mount on it`,
          );
        }
      }
    }
  }

  /** Removes temp dirs of unpacks and leases whose process is gone, and stamps of removed entries. */
  async #sweep(names?: readonly string[]): Promise<void> {
    const all = names ?? (await readdir(this.dir));
    const present = new Set(all);
    for (const name of all) {
      const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name) ?? /\.use-(\d+)$/.exec(name);
      const p = path.join(this.dir, name);
      if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1])))
        await rm(p, { recursive: true, force: true });
      const stamp = /^(.+)\.json$/.exec(name);
      if (stamp && ENTRY.test(stamp[1]!) && !present.has(stamp[1]!) && !present.has(`${stamp[1]}.lock`))
        await rm(p, { force: true });
    }
  }
}

/**
 * makeInert makes the tree at `root` safe to leave where other host users can reach it (see the
 * module comment): device nodes, fifos and sockets removed, setuid/setgid and group/other write
 * bits dropped, and (as root) every entry given to root. Never follows a symlink. Returns the
 * bytes of its regular files (each hard-linked file once) and what it removed (relative paths).
 */
export function makeInert(root: string): { bytes: number; removed: string[] } {
  const asRoot = process.getuid?.() === 0;
  const removed: string[] = [];
  const seen = new Set<number>();
  let bytes = 0;
  // Synchronous on purpose, like extract: tens of thousands of small calls.
  const visit = (dir: string): void => {
    for (const name of fsSync.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = fsSync.lstatSync(p);
      if (st.isSymbolicLink()) {
        if (asRoot && (st.uid !== 0 || st.gid !== 0)) fsSync.lchownSync(p, 0, 0);
        continue;
      }
      if (!st.isFile() && !st.isDirectory()) {
        fsSync.unlinkSync(p);
        removed.push(path.relative(root, p));
        continue;
      }
      const owner = asRoot ? st.uid : 0;
      if (asRoot && (st.uid !== 0 || st.gid !== 0)) fsSync.lchownSync(p, 0, 0);
      const mode = inertMode(st.mode, owner);
      if (st.isDirectory()) {
        // Not root: the owner needs rwx to look inside and remove entries; the mode is set after.
        if (!asRoot && (st.mode & 0o700) !== 0o700) fsSync.chmodSync(p, (st.mode & 0o7777) | 0o700);
        visit(p);
        if (mode !== (st.mode & 0o7777) || !asRoot) fsSync.chmodSync(p, mode);
        continue;
      }
      // chown by root clears setuid bits already; chmod anyway when anything is left to drop.
      if (mode !== (st.mode & 0o7777) || (asRoot && owner !== 0)) fsSync.chmodSync(p, mode);
      if (st.nlink > 1) {
        if (seen.has(st.ino)) continue;
        seen.add(st.ino);
      }
      bytes += st.size;
    }
  };
  visit(root);
  return { bytes, removed };
}

/** Removes this process's lease files as it exits (one killed outright leaves them to prune()). */
function dropLeases(): void {
  for (const final of leased) fsSync.rmSync(`${final}.use-${process.pid}`, { force: true });
}

/** A published entry: the directory and its stamp. */
async function isReady(final: string): Promise<boolean> {
  const [dir, stamp] = await Promise.all([lstatIfExists(final), lstatIfExists(`${final}.json`)]);
  return dir?.isDirectory() === true && stamp?.isFile() === true;
}

async function readStamp(final: string): Promise<{ bytes: number } | undefined> {
  // The stamp is a cache marker: without a readable one the rootfs is built again.
  const text = await readFile(`${final}.json`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as { inert?: unknown; bytes?: unknown };
    return v.inert === true && typeof v.bytes === 'number' ? { bytes: v.bytes } : undefined;
  } catch {
    // A corrupt stamp means the same as none: the rootfs is rebuilt.
    return undefined;
  }
}

/** Bytes of the regular files under `dir` (for entries without a stamp). */
function treeBytes(dir: string): number {
  let n = 0;
  const visit = (d: string): void => {
    for (const e of fsSync.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile()) n += fsSync.lstatSync(p).size;
    }
  };
  try {
    visit(dir);
  } catch {
    // Unreadable parts count as nothing: the entry is removed anyway.
  }
  return n;
}

/** Renames an entry aside and deletes it (an ensure() never sees a half-deleted tree). */
async function discard(final: string): Promise<void> {
  const doomed = tempSibling(final);
  await rename(final, doomed);
  await rm(doomed, { recursive: true, force: true });
}

/**
 * sandboxCacheDir picks where the rootfs cache lives: `<cacheDir>/rootfs`, unless kiln runs as
 * root and that path is not searchable by other users (e.g. under /root, mode 0700) — bwrap is
 * started as the sandbox uid and must reach the rootfs — then `/var/cache/kiln/rootfs`.
 */
export async function sandboxCacheDir(cacheDir: string, hostUid: number): Promise<string> {
  const preferred = path.join(cacheDir, 'rootfs');
  if (hostUid !== 0 || (await searchableByOthers(preferred))) return preferred;
  return '/var/cache/kiln/rootfs';
}

/** True when every existing ancestor of `dir` (and `dir`) is searchable by any user (o+x). */
export async function searchableByOthers(dir: string): Promise<boolean> {
  let cur = path.resolve(dir);
  for (;;) {
    const st = await statIfExists(cur);
    if (st && (st.mode & 0o001) === 0) return false;
    const parent = path.dirname(cur);
    if (parent === cur) return true;
    cur = parent;
  }
}

/**
 * addMountPoint makes `target` (absolute, normalised) exist in the published rootfs `root` as an
 * empty directory (or an empty file, for a file mount) so the sandbox can mount on it: the
 * sandbox's root is read-only, so bwrap cannot create it. Only missing components are made (0755
 * directories, a 0644 file, owned by kiln); a symbolic link or a non-directory on the way is
 * refused (a mount never follows the image's links). What exists already is left as it is.
 */
export async function addMountPoint(root: string, target: string, kind: 'dir' | 'file'): Promise<void> {
  const parts = target.split('/').filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p === '.' || p === '..'))
    throw new KilnError(`mount point ${target}: expected an absolute, normalised path below /`);
  let cur = root;
  for (const [i, part] of parts.entries()) {
    cur = path.join(cur, part);
    const last = i === parts.length - 1;
    const st = await lstatIfExists(cur);
    if (st?.isSymbolicLink())
      throw new KilnError(
        `mount point ${target}: the image has a symbolic link at /${parts.slice(0, i + 1).join('/')}`,
      );
    if (st && !st.isDirectory() && !(last && kind === 'file' && st.isFile()))
      throw new KilnError(
        `mount point ${target}: /${parts.slice(0, i + 1).join('/')} is not a directory in the image`,
      );
    if (st) continue;
    // Explicit chmod: the modes must not depend on kiln's umask. EEXIST: another build made it.
    if (last && kind === 'file') {
      await writeFile(cur, '', { flag: 'wx', mode: 0o644 }).catch(existsAlready);
      await chmod(cur, 0o644);
    } else {
      await mkdir(cur).catch(existsAlready);
      await chmod(cur, 0o755);
    }
  }
}

function existsAlready(e: unknown): void {
  if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
}
