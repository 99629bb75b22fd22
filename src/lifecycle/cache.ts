import { createReadStream, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type CacheMetadata, CacheMetadataSchema, parseCacheMetadata } from '../cnb/lifecycle-metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { acquireLock, type LockOptions } from '../internal/lock.ts';
import { oneLine } from '../internal/one-line.ts';
import { ensureOwnedDir } from '../internal/owned-dir.ts';
import { pidAlive } from '../internal/process.ts';
import { isAbandonedTemp, tempOwner, tempSibling } from '../internal/temp-name.ts';
import type { DirListings } from '../layers/walk.ts';
import { BlobStore, DigestVerifier } from '../layout/blob-store.ts';
import { type Digest, isDigest } from '../oci/digest.ts';

// The volume cache: `cache = true` layers of earlier builds, kept as the same compressed blobs the
// image carries (so a launch+cache layer is stored once and never compressed twice), keyed by
// diffID, plus the metadata document the reference lifecycle keeps next to them.
//
//   <dir>/lock                      exclusive lock (see src/internal/lock.ts), held only while reading
//                                   the committed state and while committing a new one
//   <dir>/cache.json                committed state: metadata + diffID -> blob + fingerprints
//   <dir>/blobs/sha256/<hex>        layer blobs (content-addressed, never rewritten)
//   <dir>/warm/<hex>/ + <hex>.json  the last build's unpacked copy of a layer (by diffID) and its
//                                   fingerprint: an accelerator, claimed by rename, never shared
//
// Crash safety: a commit first places every new blob, then replaces cache.json by rename, and only
// then deletes blobs the new state no longer names. Killed at any point, the directory holds either
// the old state with all its blobs or the new one with all of its blobs; strays are swept by the
// next commit. Readers open blob files while holding the lock, so a concurrent commit's prune (an
// unlink) never pulls content from under an extraction.

/** CachedLayer records one stored layer blob. */
/** The cache's state file is there but broken: the build says so (and how to start afresh). */
export class CacheStateError extends KilnError {
  readonly path: string;
  constructor(file: string, cause: unknown) {
    super(
      `${file}: not a valid cache state (${oneLine((cause as Error).message ?? String(cause))}): rebuild with --clear-cache`,
      { cause },
    );
    this.name = 'CacheStateError';
    this.path = file;
  }
}

export interface CachedLayer {
  readonly diffID: Digest;
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** A layer fingerprint entry: what a directory with this fingerprint tarred to last time. */
export type FingerprintEntry = CachedLayer;

interface CacheState {
  schemaVersion: 1;
  metadata: CacheMetadata;
  /** diffID -> stored blob. */
  layers: Record<string, Omit<CachedLayer, 'diffID'>>;
  /** directory fingerprint -> layer it produced (see export's fingerprinting). */
  fingerprints: Record<string, CachedLayer>;
}

const STATE_FILE = 'cache.json';

function emptyState(): CacheState {
  return { schemaVersion: 1, metadata: CacheMetadataSchema.parse({}), layers: {}, fingerprints: {} };
}

/**
 * CacheSnapshot is the committed state of a cache at one moment, with its blobs held open: reading
 * from it stays valid even if another build commits (and prunes) meanwhile. Close it when done.
 */
export interface CacheSnapshot {
  readonly metadata: CacheMetadata;
  readonly fingerprints: Readonly<Record<string, CachedLayer>>;
  layer(diffID: string): CachedLayer | undefined;
  /** The stored (compressed) blob of `diffID`, verified against its digest as it is read. */
  open(diffID: string): Promise<Readable>;
  /**
   * claimWarm moves the unpacked directory of `diffID` kept by an earlier build to `dest`, when
   * there is one and `fingerprint(dir)` still gives what it had when kept (nothing touched it),
   * and returns that fingerprint (a rename of the directory keeps it). Returns undefined otherwise
   * (then extract from the blob). `known` is the directory's listings as kept with it, which spare
   * the check reading unchanged directories (see walk's knownDirs). Optional: only a volume cache
   * has it.
   */
  claimWarm?(
    diffID: string,
    dest: string,
    fingerprint: (dir: string, known?: DirListings) => Promise<string>,
  ): Promise<string | undefined>;
  close(): Promise<void>;
}

/** An unpacked layer directory a build hands to the cache to keep for the next build. */
export interface WarmDir {
  readonly diffID: string;
  readonly dir: string;
  /** Its fingerprint now (see layer-reuse), checked again before it is handed out. */
  readonly fingerprint: string;
  /** Its directory listings now (kept with it, see claimWarm's `known`). */
  readonly dirs?: DirListings;
}

/** A blob a CacheEntry producer wrote. */
export interface ProducedBlob extends CachedLayer {
  readonly file: string;
}

/** A layer to keep in the cache at commit. */
export interface CacheEntry extends CachedLayer {
  /**
   * Where the blob can be copied from when the cache does not hold it yet: a file (hard-linked when
   * on the same file system) or a producer that writes it and returns the file it wrote — or, when
   * it may produce other bytes than `digest` names (same content, other compression), the file and
   * the record of what it wrote, which the cache then keeps instead.
   */
  readonly source?: string | (() => Promise<string | ProducedBlob>);
}

/** Options of a commit. */
export interface CommitInput {
  readonly metadata: CacheMetadata;
  readonly layers: readonly CacheEntry[];
  /**
   * Unpacked layer dirs to keep next to the blobs (moved, never copied; skipped when on another
   * file system), so the next build renames them into place instead of extracting.
   */
  readonly warm?: readonly WarmDir[];
  /** Fingerprints to remember (merged over the committed ones, bounded). */
  readonly fingerprints?: Readonly<Record<string, CachedLayer>>;
}

/** What a commit did, for the build log. */
export interface CommitResult {
  readonly added: number;
  readonly reused: number;
  readonly pruned: number;
}

const MAX_FINGERPRINTS = 512;

/** Test seams of a cache (fault-injection tests kill the process at these points). */
export interface CacheHooks {
  /**
   * Called under the lock once new blobs are placed and the new state is written, before it
   * replaces the old one (not called when the new state is the committed one: nothing is replaced).
   */
  readonly beforeCommit?: () => void | Promise<void>;
}

/** LayerCache is where `cache = true` layers live between builds: a directory or a registry image. */
export interface LayerCache {
  /** What the log calls it. */
  readonly name: string;
  /** The committed state (empty with `clear`). */
  snapshot(opts?: { clear?: boolean }): Promise<CacheSnapshot>;
  /** Replaces the state with `input`. */
  commit(input: CommitInput): Promise<CommitResult>;
}

/**
 * VolumeCache is a cache directory shared by builds of one image (or by whoever points at it). All
 * mutation goes through commit(); all reading through snapshot().
 */
export class VolumeCache implements LayerCache {
  readonly dir: string;
  readonly blobs: BlobStore;
  readonly #lockOpts: LockOptions;

  readonly #hooks: CacheHooks;

  constructor(dir: string, lockOpts: LockOptions = {}, hooks: CacheHooks = {}) {
    this.dir = path.resolve(dir);
    this.blobs = new BlobStore(this.dir);
    this.#lockOpts = lockOpts;
    this.#hooks = hooks;
  }

  /** name is what the log calls this cache. */
  get name(): string {
    return this.dir;
  }

  async #withLock<T>(fn: () => Promise<T>): Promise<T> {
    // kiln trusts what it finds here (warm directories by fingerprint): no other user may write it.
    ensureOwnedDir(this.dir, { what: 'the build cache' });
    const lock = await acquireLock(path.join(this.dir, 'lock'), this.#lockOpts);
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  async #readState(): Promise<CacheState> {
    return (await this.#readStateText()).state;
  }

  /**
   * The committed state and the text it was parsed from ('' when there is none). Only an absent
   * state file is an empty cache; a broken one is a CacheStateError naming it (unless
   * `brokenIsEmpty`: commit replaces the state anyway).
   */
  async #readStateText(brokenIsEmpty = false): Promise<{ state: CacheState; text: string }> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.dir, STATE_FILE), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: emptyState(), text: '' };
      throw e;
    }
    try {
      const raw = JSON.parse(text) as Partial<CacheState>;
      const layers: CacheState['layers'] = {};
      for (const [k, v] of Object.entries(raw.layers ?? {}))
        if (isDigest(k) && isDigest(v.digest)) layers[k] = v;
      const state: CacheState = {
        schemaVersion: 1,
        metadata: parseCacheMetadata(JSON.stringify(raw.metadata ?? {})),
        layers,
        fingerprints: raw.fingerprints ?? {},
      };
      return { state, text };
    } catch (e) {
      if (brokenIsEmpty) return { state: emptyState(), text: '' };
      throw new CacheStateError(path.join(this.dir, STATE_FILE), e);
    }
  }

  /**
   * snapshot reads the committed state and opens every blob it names, under the lock. With
   * `clear`, the cache reads as empty (`--clear-cache`); the next commit then replaces it.
   */
  async snapshot(opts: { clear?: boolean } = {}): Promise<CacheSnapshot> {
    if (opts.clear) return snapshotOf(emptyState(), new Map(), undefined);
    return this.#withLock(async () => {
      const state = await this.#readState();
      const handles = new Map<string, FileHandle>();
      for (const [diffID, l] of Object.entries(state.layers)) {
        try {
          handles.set(diffID, await fs.open(this.blobs.path(l.digest), 'r'));
        } catch {
          delete state.layers[diffID]; // blob lost (disk cleaner?): treat as not cached
        }
      }
      return snapshotOf(state, handles, path.join(this.dir, 'warm'));
    });
  }

  /**
   * commit makes `input` the cache's state: blobs not yet stored are linked or copied in (or
   * produced), the state file is replaced atomically, and blobs nothing names any more are pruned.
   */
  async commit(input: CommitInput): Promise<CommitResult> {
    return this.#withLock(async () => {
      const { state: old, text: oldText } = await this.#readStateText(true);
      const next = emptyState();
      next.metadata = CacheMetadataSchema.parse(input.metadata);
      let added = 0;
      let reused = 0;
      for (const l of input.layers) {
        if (await this.blobs.has(l.digest)) reused++;
        else {
          if (!l.source)
            throw new Error(
              `cache layer ${l.diffID}: blob ${l.digest} is not in ${this.dir} and has no source`,
            );
          const produced = typeof l.source === 'string' ? l.source : await l.source();
          const blob = typeof produced === 'string' ? { ...l, file: produced } : produced;
          await this.#place(blob.file, blob.digest);
          next.layers[l.diffID] = { digest: blob.digest, size: blob.size, mediaType: blob.mediaType };
          added++;
          continue;
        }
        next.layers[l.diffID] = { digest: l.digest, size: l.size, mediaType: l.mediaType };
      }
      next.fingerprints = boundedMerge(old.fingerprints, input.fingerprints ?? {});
      const body = JSON.stringify(next);
      // A no-op rebuild commits the very state it read, all of whose blobs are present: leave the
      // file alone (no rewrite, no fsync), the directory then stays exactly as committed.
      if (added > 0 || body !== oldText) {
        const tmp = tempSibling(path.join(this.dir, STATE_FILE));
        const fh = await fs.open(tmp, 'w', 0o644);
        try {
          await fh.writeFile(body);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await this.#hooks.beforeCommit?.();
        await fs.rename(tmp, path.join(this.dir, STATE_FILE));
      }
      for (const w of input.warm ?? []) if (next.layers[w.diffID]) await this.#keepWarm(w);
      const pruned = await this.#prune(next);
      return { added, reused, pruned };
    });
  }

  async #keepWarm(w: WarmDir): Promise<void> {
    // Synchronous calls: a few renames and one small file per layer, for which thread-pool round
    // trips cost more than the work (this runs on every build, no-op rebuilds included).
    const warm = path.join(this.dir, 'warm');
    const hex = w.diffID.slice(w.diffID.indexOf(':') + 1);
    const json = path.join(warm, `${hex}.json`);
    mkdirSync(warm, { recursive: true, mode: 0o700 });
    rmSync(path.join(warm, hex), { recursive: true, force: true });
    try {
      // The json first: a dir without one is never handed out (and is pruned). A dir that comes
      // back as it was claimed finds its json (which a claim leaves in place) already right.
      const dirs = w.dirs ? Object.fromEntries([...w.dirs].map(([k, v]) => [k, [v.stamp, ...v.names]])) : {};
      const body = JSON.stringify({ fingerprint: w.fingerprint, dirs });
      let kept: string | undefined;
      try {
        kept = readFileSync(json, 'utf8');
      } catch {
        // Only skips an identical write: anything unreadable is rewritten.
      }
      if (kept !== body) writeFileSync(json, body);
      renameSync(w.dir, path.join(warm, hex));
    } catch {
      // Another file system (EXDEV) or a race: the next build extracts from the blob instead.
      rmSync(json, { force: true });
    }
  }

  async #place(file: string, digest: Digest): Promise<void> {
    const temp = await this.blobs.tempPath();
    let linked = false;
    try {
      await fs.link(file, temp);
      linked = true;
    } catch {
      // Hard links fail across file systems (EXDEV) or where forbidden: copy instead.
      await fs.copyFile(file, temp);
    }
    // A hard link to a blob-store file named by this very digest shares bytes whose digest was
    // computed as they were written; anything else is verified: a corrupt source must not poison
    // later builds.
    if (linked && path.basename(file) === digest.slice(digest.indexOf(':') + 1)) {
      await this.blobs.commit(temp, digest);
      return;
    }
    try {
      await pipeline(
        createReadStream(temp),
        new DigestVerifier(digest, `cache blob from ${file}`),
        new Writable({ write: (_c, _e, cb) => cb() }),
      );
    } catch (e) {
      await fs.rm(temp, { force: true });
      throw e;
    }
    await this.blobs.commit(temp, digest);
  }

  /** Deletes blobs and temp files the state does not name (temp files of live writers are kept). */
  async #prune(state: CacheState): Promise<number> {
    const keep = new Set(Object.values(state.layers).map((l) => l.digest.slice('sha256:'.length)));
    const dir = path.join(this.dir, 'blobs', 'sha256');
    let pruned = 0;
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (keep.has(name)) continue;
      await fs.rm(path.join(dir, name), { force: true });
      pruned++;
    }
    const tmpDir = path.join(this.dir, 'blobs');
    for (const name of await fs.readdir(tmpDir).catch(() => [] as string[])) {
      if (isAbandonedTemp(name)) await fs.rm(path.join(tmpDir, name), { force: true });
    }
    for (const name of await fs.readdir(this.dir)) {
      // `.cache.json.<pid>.<hex>` is what older versions named the temp state file.
      const m = /^\.cache\.json\.(\d+)\./.exec(name);
      if (isAbandonedTemp(name) || (m && !pidAlive(Number(m[1]))))
        await fs.rm(path.join(this.dir, name), { force: true });
    }
    const warm = path.join(this.dir, 'warm');
    const keepDiffs = new Set(Object.keys(state.layers).map((d) => d.slice(d.indexOf(':') + 1)));
    for (const name of await fs.readdir(warm).catch(() => [] as string[])) {
      const hex = name.replace(/\.json$/, '');
      // A claimed directory is a temp name (kept while its process lives); `.claimed-<pid>-` is an older version's.
      const claimed = tempOwner(name) ?? /^\.claimed-(\d+)-/.exec(name)?.[1];
      if (claimed !== undefined ? !pidAlive(Number(claimed)) : !keepDiffs.has(hex))
        await fs.rm(path.join(warm, name), { recursive: true, force: true });
    }
    return pruned;
  }
}

function boundedMerge(
  old: Record<string, CachedLayer>,
  fresh: Readonly<Record<string, CachedLayer>>,
): Record<string, CachedLayer> {
  // Newest last: fresh entries are re-inserted so that trimming drops the oldest.
  const merged: Record<string, CachedLayer> = {};
  for (const [k, v] of Object.entries(old)) if (!(k in fresh)) merged[k] = v;
  for (const [k, v] of Object.entries(fresh)) merged[k] = v;
  const keys = Object.keys(merged);
  for (const k of keys.slice(0, Math.max(0, keys.length - MAX_FINGERPRINTS))) delete merged[k];
  return merged;
}

/** Kept listings as written by keepWarm (`{ rel: [stamp, ...names] }`); anything else: none. */
function listingsOf(raw: unknown): DirListings | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const out: DirListings = new Map();
  for (const [rel, v] of Object.entries(raw)) {
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string')) return undefined;
    const [stamp, ...names] = v as string[];
    out.set(rel, { stamp: stamp!, names });
  }
  return out;
}

function snapshotOf(
  state: CacheState,
  handles: Map<string, FileHandle>,
  warmDir: string | undefined,
): CacheSnapshot {
  const layerOf = (diffID: string): CachedLayer | undefined => {
    const l = state.layers[diffID];
    return l && handles.has(diffID) ? { diffID: diffID as Digest, ...l } : undefined;
  };
  return {
    metadata: state.metadata,
    fingerprints: state.fingerprints,
    layer: layerOf,
    async open(diffID: string): Promise<Readable> {
      const l = layerOf(diffID);
      const h = handles.get(diffID);
      if (!l || !h) throw new Error(`layer ${diffID} is not in the cache`);
      // Each open reads from offset 0 independently of earlier reads of the same handle.
      const s = h.createReadStream({ start: 0, autoClose: false });
      const v = new DigestVerifier(l.digest, `cached layer ${diffID}`, l.size);
      s.on('error', (e) => v.destroy(e));
      return s.pipe(v);
    },
    ...(warmDir
      ? {
          async claimWarm(
            diffID: string,
            dest: string,
            fingerprint: (dir: string, known?: DirListings) => Promise<string>,
          ): Promise<string | undefined> {
            if (!layerOf(diffID)) return undefined;
            const hex = diffID.slice(diffID.indexOf(':') + 1);
            const claimed = tempSibling(path.join(warmDir, hex));
            let expected: string;
            let known: DirListings | undefined;
            // Synchronous calls for the json and the renames (small, and on every build).
            try {
              const kept = JSON.parse(readFileSync(path.join(warmDir, `${hex}.json`), 'utf8')) as {
                fingerprint: string;
                dirs?: unknown;
              };
              expected = kept.fingerprint;
              known = listingsOf(kept.dirs);
              // rename is the claim: of two builds, one gets the directory, the other ENOENT.
              renameSync(path.join(warmDir, hex), claimed);
            } catch {
              return undefined;
            }
            let handedOut = false;
            try {
              if ((await fingerprint(claimed, known)) !== expected) return undefined;
              renameSync(claimed, dest);
              handedOut = true;
              return expected;
            } catch {
              // A warm copy that changed or cannot be moved into place is not used: the layer comes from its blob.
              return undefined;
            } finally {
              if (!handedOut) await fs.rm(claimed, { recursive: true, force: true });
            }
          },
        }
      : {}),
    async close() {
      // Closing read handles at the end: a close error changes nothing already read.
      for (const h of handles.values()) await h.close().catch(() => {});
      handles.clear();
    },
  };
}
