import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { SOURCE_OPEN_FLAGS, type TarEntry, tarChunks } from '../layers/tar-writer.ts';
import { type DirListings, scan, type WalkOptions, walk } from '../layers/walk.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Compression } from '../oci/media-types.ts';

// "Never redo work": deciding, for each layer the exporter or the cache phase needs, whether its
// bytes already exist somewhere, in increasing order of cost:
//   1. fingerprint hit: the directory's listing (paths, types, modes, sizes, link targets, file
//      mtimes, ctimes and inodes) is one we have tarred before (or restored from a known layer) -> its diffID is
//      known without reading a byte of content;
//   2. tar-and-hash (no compression) when there is a candidate to match (the previous image's layer
//      of the same name): equal diffID -> reuse;
//   3. only then the single-pass tar+compress into the blob store (from the tar step 2 kept in
//      memory when it was small enough: a changed layer is never read and tarred twice).
// A no-op rebuild therefore compresses nothing. The fingerprint is git's index check: besides the
// listing it covers each file's mtime, ctime and inode. A buildpack can set mtimes (tar does when
// it unpacks) but not ctimes: any write, chmod or replacement of a file changes its ctime, so a
// changed file is never taken for the one fingerprinted. The flip side: fingerprints only match the
// same files on disk, i.e. within one build (restore -> export -> cache) or an untouched directory.

/** A layer's content as tar entries plus a fingerprint of the listing that produced them. */
export interface LayerContent {
  /**
   * Its tar entries. Content known by fingerprint (see dirCheck) lists them only when asked: a
   * layer found by its fingerprint never needs them.
   */
  entries(): Promise<readonly TarEntry[]>;
  /** sha256 over the listing, the tar options, and file stat data; '' when not fingerprintable. */
  readonly fingerprint: string;
  /** The directory listings the walk read or confirmed (for a later walk of the same tree). */
  readonly dirs?: DirListings;
}

/** Tar settings that change a layer's bytes (part of every fingerprint). */
export interface TarSettings {
  readonly epoch: number;
  readonly compression: Compression;
  readonly level?: number;
}

/**
 * Version of the fingerprint format: fingerprints are persisted next to warm layer dirs in the
 * cache (warm/<hex>.json), so a format change must change this, which makes old warm dirs simply
 * fail their check (and get extracted from their blobs) instead of matching by accident.
 */
const FINGERPRINT_VERSION = 'kiln-fp-3';

/**
 * A sha256 fed in chunks of a few dozen kB: one update per entry costs more than the hashing, and
 * nothing per entry outlives the chunk (trees of thousands of files are fingerprinted on every
 * no-op rebuild, with a small young generation).
 */
class ChunkedHash {
  readonly #h = createHash('sha256');
  #chunk = '';
  add(s: string): void {
    this.#chunk += s;
    if (this.#chunk.length > 65536) {
      this.#h.update(this.#chunk);
      this.#chunk = '';
    }
  }
  digest(): string {
    this.#h.update(this.#chunk);
    return `sha256:${this.#h.digest('hex')}`;
  }
}

function settingsLine(settings: TarSettings): string {
  return `${FINGERPRINT_VERSION}\0${settings.epoch}\0${settings.compression}\0${settings.level ?? ''}\n`;
}

/**
 * dirFingerprinter hashes what a walk of a layer dir reports (see walk's onEntry): everything the
 * tar is made of, plus, per file, git's index check: mtime and ctime in nanoseconds, device and
 * inode. A buildpack can set an mtime back, never a ctime: any write, chmod, chown or replacement
 * of a file changes it, so a changed file is never taken for the one fingerprinted. The entries
 * come in an order fixed by the tree (not the tar's), and hard links show as files sharing dev and
 * inode, from which the tar's choice of link and target follows.
 */
function dirFingerprinter(walkOpts: WalkOptions, settings: TarSettings) {
  const h = new ChunkedHash();
  h.add(settingsLine(settings));
  h.add(
    `${walkOpts.prefix ?? ''}\0${walkOpts.uid ?? ''}\0${walkOpts.gid ?? ''}\0${walkOpts.parentMode ?? ''}${walkOpts.runUserModes ? '\0run-user-modes' : ''}\n`,
  );
  const onEntry: NonNullable<WalkOptions['onEntry']> = (rel, kind, st, linkname) => {
    const stamp = kind === 'file' ? `${st.size}\0${st.mtimeNs}/${st.ctimeNs}/${st.dev}/${st.ino}` : '';
    h.add(`${rel}\0${kind}\0${st.mode}\0${st.uid}\0${st.gid}\0${linkname ?? ''}\0${stamp}\n`);
    walkOpts.onEntry?.(rel, kind, st, linkname);
  };
  return { onEntry, digest: () => h.digest() };
}

/**
 * dirContent walks `dir` into tar entries (see layers/walk) and fingerprints them from the same
 * lstat of each entry that gave its tar header (so what is fingerprinted is what is tarred).
 * `walkOpts.knownDirs` (listings of an earlier walk of the tree) spares reading unchanged
 * directories; the result's `dirs` are this walk's listings.
 */
export async function dirContent(
  dir: string,
  walkOpts: WalkOptions,
  settings: TarSettings,
): Promise<LayerContent> {
  const fp = dirFingerprinter(walkOpts, settings);
  const dirs: DirListings = new Map();
  const entries = await walk(dir, { ...walkOpts, recordDirs: dirs, onEntry: fp.onEntry });
  return { entries: async () => entries, fingerprint: fp.digest(), dirs };
}

/**
 * dirCheck is dirContent for a directory that is probably known by its fingerprint (a layer a
 * buildpack kept): it fingerprints it now and lists its entries only when asked (a second walk,
 * which reads no directory the first did not, and fails should the fingerprint have changed since:
 * a layer is never made of other files than the fingerprint names).
 */
export async function dirCheck(
  dir: string,
  walkOpts: WalkOptions,
  settings: TarSettings,
): Promise<LayerContent> {
  const { fingerprint, dirs } = await dirFingerprint(dir, walkOpts, settings);
  let listed: Promise<readonly TarEntry[]> | undefined;
  const list = async () => {
    const c = await dirContent(dir, { ...walkOpts, knownDirs: dirs }, settings);
    if (c.fingerprint !== fingerprint) throw new Error(`layer directory ${dir} changed while being exported`);
    return c.entries();
  };
  return {
    entries: () => {
      listed ??= list();
      return listed;
    },
    fingerprint,
    dirs,
  };
}

/**
 * dirFingerprint is dirContent's fingerprint and listings without the entries (a warm dir's check
 * before it is handed out needs nothing else).
 */
export async function dirFingerprint(
  dir: string,
  walkOpts: WalkOptions,
  settings: TarSettings,
): Promise<{ fingerprint: string; dirs: DirListings }> {
  const fp = dirFingerprinter(walkOpts, settings);
  const dirs: DirListings = new Map();
  await scan(dir, { ...walkOpts, recordDirs: dirs, onEntry: fp.onEntry });
  return { fingerprint: fp.digest(), dirs };
}

/** syntheticContent is content made up by kiln (launcher, process types): fingerprinted by listing. */
export function syntheticContent(
  entries: readonly TarEntry[],
  settings: TarSettings,
  extra = '',
): LayerContent {
  const h = new ChunkedHash();
  h.add(`synthetic\0${settingsLine(settings)}`);
  for (const e of entries)
    h.add(`${e.path}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size ?? ''}\0${e.linkname ?? ''}\n`);
  h.add(`\0${extra}`);
  return { entries: async () => entries, fingerprint: h.digest() };
}

/** Files up to this size are read with one synchronous call when hashing (see diffIDOf). */
const SYNC_READ_MAX = 256 * 1024;

/**
 * diffIDOf tars entries without compressing and returns the tar's digest (the diffID). Small
 * files are read synchronously (microseconds each, against four thread-pool round trips through
 * fs.promises): a layer of a thousand small files hashes in a fraction of the time.
 */
export async function diffIDOf(entries: readonly TarEntry[], epoch: number): Promise<Digest> {
  return (await hashTar(entries, epoch, 0)).diffID;
}

/** A layer's tar as the hash pass saw it: its digest and size, and its bytes when they were kept. */
export interface HashedTar {
  readonly diffID: Digest;
  readonly size: number;
  /** The tar's bytes, when it was no larger than asked (a changed layer is compressed from them). */
  readonly chunks?: readonly Buffer[];
}

/**
 * hashTar is diffIDOf that also keeps the tar's bytes (the chunks tarChunks made, no copy) when
 * the tar is at most `keepBytes` long, so that a layer found changed is compressed from them
 * instead of being read and tarred a second time.
 */
export async function hashTar(
  entries: readonly TarEntry[],
  epoch: number,
  keepBytes: number,
): Promise<HashedTar> {
  const h = createHash('sha256');
  const fast = entries.map((e): TarEntry => {
    const src = e.source;
    if (e.type !== 'file' || !src || e.open || e.read || (e.size ?? 0) > SYNC_READ_MAX) return e;
    return { ...e, read: async () => readFileSync(src, { flag: SOURCE_OPEN_FLAGS }) };
  });
  let kept: Buffer[] | undefined = keepBytes > 0 ? [] : undefined;
  let size = 0;
  for await (const chunk of tarChunks(fast, { epoch })) {
    h.update(chunk);
    size += chunk.length;
    if (kept && size > keepBytes) kept = undefined;
    kept?.push(chunk);
  }
  const diffID: Digest = `sha256:${h.digest('hex')}`;
  return kept ? { diffID, size, chunks: kept } : { diffID, size };
}

/**
 * touchBlob refreshes a store blob's mtime (when the store has it): a store gc spares blobs
 * younger than its grace period, and this one is about to be referenced by an image that is not
 * tagged yet.
 */
export async function touchBlob(blobs: BlobStore, digest: string): Promise<void> {
  const now = new Date();
  // Best-effort: the mtime only orders eviction; a blob it cannot touch is evicted earlier.
  await fs.utimes(blobs.path(digest as Digest), now, now).catch(() => {});
}
