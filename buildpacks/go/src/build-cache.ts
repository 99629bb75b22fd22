import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

// Go's build cache (GOCACHE) in two cache layers. `go-cache` holds what builds keep needing (the
// standard library and the modules, compiled: tens of MB in about a thousand files); a rebuild
// after an edit adds only a few small entries (the app's changed packages and their link). Were
// those written into `go-cache`, the whole layer would be tarred, hashed and compressed again on
// every build. So they live in the small `go-cache-recent` layer: moved into GOCACHE for the build
// and moved out again after it (renames: the files of `go-cache` keep their inodes and times, so
// the platform recognises the layer unchanged by its fingerprint and stores nothing). Recent
// entries this build did not use are dropped (they belong to source that changed since): they go
// in dated two hours back, and Go re-dates every entry it reads that is older than an hour. When
// the recent entries outgrow RECENT_LIMIT or RECENT_ENTRIES (a new toolchain, new modules) they
// are merged into `go-cache` instead (one rewrite of it).

/** Above this many bytes of recent entries, they join `go-cache` (which is then stored anew). */
export const RECENT_LIMIT = 8 * 1024 * 1024;
/** Above this many recent entries (each costs two renames a build), they join `go-cache`. */
export const RECENT_ENTRIES = 128;
/** How far back recent entries are dated: past Go's one-hour threshold for re-dating what it reads. */
const UNUSED_AGE_MS = 2 * 60 * 60 * 1000;

/** Go's cache keeps its entries in 256 directories named by the entry's first hash byte. */
const BUCKET = /^[0-9a-f]{2}$/;
/** Entry file names: `<sha256 hex>-a` (action) or `-d` (output). */
const ENTRY = /^[0-9a-f]{64}-[ad]$/;

/** names lists the cache entries under `dir` as `<bucket>/<name>` (regular files only, no stat). */
export function names(dir: string): Set<string> {
  const out = new Set<string>();
  let buckets: string[];
  try {
    buckets = readdirSync(dir);
  } catch {
    return out;
  }
  for (const b of buckets) {
    if (!BUCKET.test(b)) continue;
    try {
      for (const d of readdirSync(join(dir, b), { withFileTypes: true }))
        if (d.isFile() && ENTRY.test(d.name)) out.add(`${b}/${d.name}`);
    } catch {
      // not a directory
    }
  }
  return out;
}

/** entries is `names` with each entry's size and mtime, leaving out those in `skip` (not stat'ed). */
export function entries(
  dir: string,
  skip: ReadonlySet<string> = new Set(),
): Map<string, { readonly size: number; readonly mtimeMs: number }> {
  const out = new Map<string, { size: number; mtimeMs: number }>();
  for (const rel of names(dir)) {
    if (skip.has(rel)) continue;
    const st = lstatSync(join(dir, rel), { throwIfNoEntry: false });
    if (st?.isFile()) out.set(rel, { size: st.size, mtimeMs: st.mtimeMs });
  }
  return out;
}

function move(from: string, to: string, rel: string): void {
  mkdirSync(join(to, rel.slice(0, 2)), { recursive: true });
  renameSync(join(from, rel), join(to, rel));
}

/** The split of one build: what `go-cache` held before it, and the recent entries moved in. */
export interface CacheSplit {
  readonly base: ReadonlySet<string>;
  /** True when `go-cache` was empty: this build's entries all stay in it. */
  readonly fresh: boolean;
  /** Entries that came from `go-cache-recent`, dated UNUSED_AGE_MS back. */
  readonly moved: ReadonlySet<string>;
  /** Any entry dated at or after this (ms) was written or read by the build. */
  readonly since: number;
}

/**
 * beforeBuild moves the recent entries (`recentDir`) into GOCACHE (`cacheDir`) for the build and
 * returns what GOCACHE held before.
 */
export function beforeBuild(cacheDir: string, recentDir: string, now = Date.now()): CacheSplit {
  const base = names(cacheDir);
  const moved = new Set<string>();
  const past = new Date(now - UNUSED_AGE_MS);
  for (const rel of names(recentDir)) {
    if (base.has(rel)) continue;
    try {
      utimesSync(join(recentDir, rel), past, past);
      move(recentDir, cacheDir, rel);
      moved.add(rel);
    } catch {
      // A recent entry that cannot be moved is only a cache miss.
    }
  }
  // A minute's slack: clocks with coarse timestamps, and the entries are dated two hours back.
  return { base, fresh: base.size === 0, moved, since: now - 60_000 };
}

/**
 * afterBuild moves the entries GOCACHE did not hold before the build out to `recentDir`: this
 * build's, and the recent ones it used (the others are deleted). When the cache was empty, or
 * these add up to more than `limit` bytes or `maxEntries` entries, they all stay in GOCACHE
 * (merged) and `recentDir` is emptied. Returns what it did.
 */
export function afterBuild(
  cacheDir: string,
  recentDir: string,
  split: CacheSplit,
  limit = RECENT_LIMIT,
  maxEntries = RECENT_ENTRIES,
): { readonly recent: number; readonly merged: number; readonly dropped: number } {
  const added = [...entries(cacheDir, split.base)];
  const unused = (rel: string, mtimeMs: number) => split.moved.has(rel) && mtimeMs < split.since;
  const kept = added.filter(([rel, e]) => !unused(rel, e.mtimeMs));
  const bytes = kept.reduce((n, [, e]) => n + e.size, 0);
  rmSync(recentDir, { recursive: true, force: true });
  mkdirSync(recentDir, { recursive: true });
  if (split.fresh || bytes > limit || kept.length > maxEntries)
    return { recent: 0, merged: added.length, dropped: 0 };
  let moved = 0;
  for (const [rel] of kept) {
    try {
      move(cacheDir, recentDir, rel);
      moved++;
    } catch {
      // Left in GOCACHE: merged, which costs a rewrite of go-cache and nothing else.
    }
  }
  for (const [rel, e] of added) if (unused(rel, e.mtimeMs)) rmSync(join(cacheDir, rel), { force: true });
  return { recent: moved, merged: kept.length - moved, dropped: added.length - kept.length };
}
