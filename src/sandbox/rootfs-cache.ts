/**
 * RootfsCache keeps one unpacked root filesystem per image manifest digest under
 * `<dir>/<algorithm>-<hex>/`, shared read-only by every build that uses that image (the sandbox
 * mounts it with --ro-bind; nothing ever writes into it after it is published).
 *
 * Publication is atomic: layers are unpacked into a temporary sibling, the sandbox mount points are
 * created, and only then is it renamed into place — a directory at the final name is always
 * complete, and an interrupted unpack leaves only a temporary directory that is never used (and is
 * swept on a later call once its owner is gone). Concurrent callers for the same digest serialise
 * on a lock file (`O_EXCL`, holding the owner's pid; a lock whose pid is dead is taken over), so
 * the image is unpacked once.
 */
import { randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import { pidAlive } from '../layout/pid.ts';
import { algorithmOf, type Digest, hexOf, parseDigest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { MOUNT_POINTS, NETWORK_FILES } from './executor.ts';

/** Unpacks an image's layers, bottom first, into an empty directory (whiteouts applied). */
export type Unpacker = (dest: string) => Promise<void>;

/** Options of RootfsCache. */
export interface RootfsCacheOptions {
  /** How long to wait for another process unpacking the same image (default 10 minutes). */
  readonly lockTimeoutMs?: number;
  /** Extra mount points to create besides MOUNT_POINTS. */
  readonly mountPoints?: readonly string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
   * when it is not cached yet.
   */
  async ensure(digest: Digest | string, unpack: Unpacker): Promise<string> {
    const final = this.pathFor(digest);
    if (await exists(final)) return this.#touch(final);
    // The sandbox user must be able to reach the cache (bwrap runs as the build uid).
    await mkdir(this.dir, { recursive: true, mode: 0o755 });
    const lock = `${final}.lock`;
    const deadline = Date.now() + (this.#opts.lockTimeoutMs ?? 10 * 60_000);
    for (;;) {
      const handle = await open(lock, 'wx').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EEXIST') return undefined;
        throw e;
      });
      if (handle) {
        try {
          await handle.writeFile(String(process.pid));
          await handle.close();
          if (await exists(final)) return this.#touch(final); // another process finished meanwhile
          await this.#sweep();
          await this.#unpackInto(final, unpack);
          return this.#touch(final);
        } finally {
          await rm(lock, { force: true });
        }
      }
      if (await exists(final)) return this.#touch(final);
      const owner = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
        // Its owner died mid-unpack: the lock is stale (its temp dir is swept by whoever takes over).
        await rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new KilnError(
          `rootfs cache: timed out waiting for process ${owner} to unpack ${path.basename(final)} (lock ${lock})`,
          ExitCode.Failed,
        );
      }
      await sleep(100);
    }
  }

  /** ensureImage: ensure() for an Image, unpacking its layers with `extractLayer`. */
  async ensureImage(
    image: Image,
    extractLayer: (tar: Readable, dest: string) => Promise<void>,
  ): Promise<string> {
    const digest = await image.digest();
    return this.ensure(digest, async (dest) => {
      for (const layer of await image.layers()) await extractLayer(await layer.uncompressed(), dest);
    });
  }

  /**
   * prune removes the least recently used root filesystems beyond `keep`, never one used within
   * `minIdleMs` (default 1 hour: a build may still have it mounted). Returns the removed paths.
   */
  async prune(keep: number, minIdleMs = 60 * 60_000): Promise<string[]> {
    const entries: { path: string; used: number }[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (!/^sha(256|512)-[0-9a-f]+$/.test(name)) continue;
      const p = path.join(this.dir, name);
      const st = await stat(p).catch(() => undefined);
      if (st?.isDirectory()) entries.push({ path: p, used: st.mtimeMs });
    }
    entries.sort((a, b) => b.used - a.used);
    const removed: string[] = [];
    for (const e of entries.slice(Math.max(0, keep))) {
      if (Date.now() - e.used < minIdleMs) continue;
      // Rename first so a concurrent ensure() never sees a half-deleted tree at the final name.
      const doomed = `${e.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      await rename(e.path, doomed);
      await rm(doomed, { recursive: true, force: true });
      removed.push(e.path);
    }
    return removed;
  }

  /** Marks a rootfs as used now (its directory mtime), for prune(). */
  async #touch(final: string): Promise<string> {
    const now = new Date();
    await utimes(final, now, now).catch(() => {});
    return final;
  }

  async #unpackInto(final: string, unpack: Unpacker): Promise<void> {
    const temp = `${final}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await mkdir(temp, { mode: 0o755 });
    try {
      await unpack(temp);
      await this.#ensureMountPoints(temp);
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
        const st = await lstat(cur).catch(() => undefined);
        if (st?.isSymbolicLink()) {
          // e.g. /tmp -> /var/tmp in some images: bwrap follows it inside the rootfs; leave it.
          break;
        }
        if (!st) {
          await mkdir(cur);
          // Explicit chmod: mkdir's mode is filtered by the umask.
          await chmod(cur, p === '/tmp' && part === 'tmp' ? 0o1777 : 0o755);
        } else if (!st.isDirectory()) {
          throw new KilnError(
            `rootfs: ${p} is not a directory in the image, so the sandbox cannot mount on it`,
          );
        }
      }
    }
  }

  /** Removes temp dirs of unpacks whose process is gone. */
  async #sweep(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
      if (m && !pidAlive(Number(m[1]))) await rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
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
    const st = await stat(cur).catch(() => undefined);
    if (st && (st.mode & 0o001) === 0) return false;
    const parent = path.dirname(cur);
    if (parent === cur) return true;
    cur = parent;
  }
}
