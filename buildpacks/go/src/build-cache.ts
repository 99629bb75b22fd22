import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

// Go's build cache (GOCACHE) in two cache layers. `go-cache` holds what builds keep needing (the
// standard library and the modules, compiled: tens of MB in about a thousand files); a rebuild
// after an edit adds only a few small entries (the app's changed packages and their link). Were
// those written into `go-cache`, the whole layer would be tarred, hashed and compressed again on
// every build. So they live in the small `go-cache-recent` layer: moved into GOCACHE for the build
// and moved out again after it (renames: the files of `go-cache` keep their inodes and times, so
// the platform recognises the layer unchanged by its fingerprint and stores nothing). When the
// recent entries outgrow RECENT_LIMIT they are merged into `go-cache` (one rewrite of it).

/** Above this many bytes of recent entries, they join `go-cache` (which is then stored anew). */
export const RECENT_LIMIT = 8 * 1024 * 1024;

/** Go's cache keeps its entries in 256 directories named by the entry's first hash byte. */
const BUCKET = /^[0-9a-f]{2}$/;
/** Entry file names: `<sha256 hex>-a` (action) or `-d` (output). */
const ENTRY = /^[0-9a-f]{64}-[ad]$/;

/** entries lists the cache entries under `dir` as `<bucket>/<name>` (regular files only). */
export function entries(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  let buckets: string[];
  try {
    buckets = readdirSync(dir);
  } catch {
    return out;
  }
  for (const b of buckets) {
    if (!BUCKET.test(b)) continue;
    let names: string[];
    try {
      names = readdirSync(join(dir, b));
    } catch {
      continue; // not a directory
    }
    for (const n of names) {
      if (!ENTRY.test(n)) continue;
      const st = lstatSync(join(dir, b, n), { throwIfNoEntry: false });
      if (st?.isFile()) out.set(`${b}/${n}`, st.size);
    }
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
}

/**
 * beforeBuild moves the recent entries (`recentDir`) into GOCACHE (`cacheDir`) for the build and
 * returns what GOCACHE held before.
 */
export function beforeBuild(cacheDir: string, recentDir: string): CacheSplit {
  const base = new Set(entries(cacheDir).keys());
  for (const rel of entries(recentDir).keys()) {
    if (base.has(rel)) continue;
    try {
      move(recentDir, cacheDir, rel);
    } catch {
      // A recent entry that cannot be moved is only a cache miss.
    }
  }
  return { base, fresh: base.size === 0 };
}

/**
 * afterBuild moves every entry GOCACHE did not hold before the build (the recent ones and this
 * build's) out to `recentDir`, unless the cache was empty or they add up to more than `limit`
 * bytes: then they stay in GOCACHE (merged) and `recentDir` is emptied. Returns what it did.
 */
export function afterBuild(
  cacheDir: string,
  recentDir: string,
  split: CacheSplit,
  limit = RECENT_LIMIT,
): { readonly recent: number; readonly merged: number } {
  const added = [...entries(cacheDir)].filter(([rel]) => !split.base.has(rel));
  const bytes = added.reduce((n, [, size]) => n + size, 0);
  rmSync(recentDir, { recursive: true, force: true });
  mkdirSync(recentDir, { recursive: true });
  if (split.fresh || bytes > limit) return { recent: 0, merged: added.length };
  let moved = 0;
  for (const [rel] of added) {
    try {
      move(cacheDir, recentDir, rel);
      moved++;
    } catch {
      // Left in GOCACHE: merged, which costs a rewrite of go-cache and nothing else.
    }
  }
  return { recent: moved, merged: added.length - moved };
}
