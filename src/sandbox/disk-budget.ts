/**
 * DiskBudget bounds what a build's sandboxes write to the host directories mounted writable into
 * them (`/layers`, `/workspace`, the build HOME): while a sandboxed process runs, the trees are
 * walked and their allocated bytes summed (lstat, st_blocks; never following a link), and the
 * process is stopped when the sum passes the budget; when it has ended, a last check fails the run
 * if the trees are over budget. The host filesystem's free space (statfs) is
 * watched too, so that neither the budget nor a deleted-but-open file can fill the host: below the
 * reserve the run is stopped, and a run is not started at all.
 *
 * Why a watcher and not a hard limit (README.md, "Limits"): the host is ext4 without quotas, and a
 * loop-mounted filesystem per build would need root, a loop device and a copy of the restored
 * layers into it on every build (a no-op rebuild must stay under a second). The cost is an
 * overshoot while a process runs: at most one poll interval (100 ms) times the write rate, since a
 * growth of the filesystem that could put the trees over budget triggers a walk at the next poll.
 */
import { lstatSync, readdirSync, type Stats, statfsSync } from 'node:fs';
import path from 'node:path';
import { freeSpace, inodeReserve } from '../internal/disk-space.ts';
import { limitMessages } from './limits.ts';

/** One watched tree: the host directory and what the sandbox calls it (for messages). */
export interface WatchedRoot {
  readonly host: string;
  readonly name: string;
}

export interface DiskBudgetOptions {
  readonly roots: readonly WatchedRoot[];
  /** Bytes the trees may hold together (allocated blocks). Undefined: only the reserve is watched. */
  readonly budgetBytes?: number;
  /** Free bytes to keep on each root's filesystem. */
  readonly reserveBytes?: number;
}

/** Shortest time between two walks (and between two statfs checks). */
export const POLL_MS = 100;
/** A walk may take this share of the time at most (interval = walk time / share). */
const WALK_SHARE = 0.1;
/**
 * Entries the trees may hold: far above real builds (a large node_modules has ~100k), low enough
 * that a walk stays seconds, not minutes; a build that makes more is stopped like a disk filler.
 */
export const MAX_ENTRIES = 2_000_000;

/**
 * treeBytes sums the allocated bytes (st_blocks × 512) of everything under `roots`, counting a
 * hard-linked file once, never following symlinks and never leaving the filesystem of each root
 * (a directory swapped for a mount or a link mid-walk cannot send the walk across the host).
 */
export async function treeBytes(roots: readonly string[]): Promise<number> {
  return (await treeUsage(roots)).bytes;
}

/**
 * Entries a walk looks at between two yields to the event loop. The walk uses synchronous calls in
 * slices: an lstat through the thread pool and a promise per entry cost 3-5x the CPU (135-280 ms
 * vs 45 ms for 7k entries, a Node.js app's layers), and a run that ends waits for a walk underway.
 */
const WALK_SLICE = 512;

/** treeUsage is treeBytes plus the number of entries; the walk stops past MAX_ENTRIES. */
export async function treeUsage(roots: readonly string[]): Promise<{ bytes: number; entries: number }> {
  const seen = new Set<string>();
  let total = 0;
  let entries = 0;
  let sliceLeft = WALK_SLICE;
  for (const root of roots) {
    let st: Stats | undefined;
    try {
      st = lstatSync(root, { throwIfNoEntry: false });
    } catch {
      // Unreachable (ENOTDIR, EACCES): as a root that no longer exists, it holds nothing to budget.
      continue;
    }
    // A root that no longer exists holds nothing to budget.
    if (!st?.isDirectory()) continue;
    const dev = st.dev;
    total += st.blocks * 512;
    const stack: string[] = [root];
    seen.add(`${st.dev}:${st.ino}`);
    while (stack.length > 0) {
      const dir = stack.pop()!;
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue; // Removed or replaced while walking.
      }
      for (let i = 0; i < names.length; i++) {
        if (--sliceLeft <= 0) {
          sliceLeft = WALK_SLICE;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        let s: Stats | undefined;
        try {
          s = lstatSync(path.join(dir, names[i]!), { throwIfNoEntry: false });
        } catch {
          // Removed or replaced while walking (ENOTDIR: a parent became a file).
          continue;
        }
        if (!s || s.dev !== dev) continue;
        if (++entries > MAX_ENTRIES) return { bytes: total, entries };
        if (s.isDirectory() || s.nlink > 1) {
          const key = `${s.dev}:${s.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        total += s.blocks * 512;
        if (s.isDirectory()) stack.push(path.join(dir, names[i]!));
      }
    }
  }
  return { bytes: total, entries };
}

/**
 * preflight says why a run must not start (the host filesystem is already below the reserve), or
 * undefined.
 */
export function preflight(o: DiskBudgetOptions): string | undefined {
  for (const r of o.roots) {
    let f: ReturnType<typeof freeSpace>;
    try {
      f = freeSpace(r.host);
    } catch {
      // A probe: a file system whose free space cannot be read is not budgeted.
      continue;
    }
    if (o.reserveBytes !== undefined && f.bytes < o.reserveBytes)
      return limitMessages.reserve(r.name, f.bytes, o.reserveBytes);
    if (f.inodes < inodeReserve(f.totalInodes)) return limitMessages.inodes(r.name, f.inodes);
  }
  return undefined;
}

/** A watch in progress. */
export interface DiskWatch {
  /** Ends the watch; after a final check, resolves to the reason the trees are over budget, if so. */
  stop(): Promise<string | undefined>;
}

/**
 * Per set of roots: the tree size last measured (unknown until a walk) and the filesystems' use at
 * that moment (or when the roots were first watched). Growth since then accumulates across runs,
 * so many short runs cannot each add a little unnoticed.
 */
const measured = new Map<string, { tree: number | undefined; usedAtWalk: number; watchedMs: number }>();
/** Even when free space says nothing grew, walk at least this often (frees elsewhere can mask growth). */
// Deletions elsewhere on the same filesystem (a concurrent build removing its work dir) hide growth from
// the statfs check; this walk is what then bounds the overshoot.
const SAFETY_WALK_MS = 1000;

/**
 * watch polls the free space and, when it could matter, the trees while a run goes on, and calls
 * `onExceeded` once, with the one-line reason, when the budget or the reserve is crossed.
 *
 * Cheap by construction: every POLL_MS one statfs per root. A walk happens only when the
 * filesystem grew enough since the last walk that the trees could be over budget, or after every
 * SAFETY_WALK_MS of watched run time (stretched so walks take at most 10% of it). A no-op rebuild whose
 * buildpacks write nothing walks nothing.
 */
export function watch(o: DiskBudgetOptions, onExceeded: (why: string) => void): DiskWatch {
  let stopped = false;
  let tripped = false;
  let timer: NodeJS.Timeout | undefined;
  const hosts = o.roots.map((r) => r.host);
  const key = hosts.join('\0');
  let state = measured.get(key);
  if (!state) {
    state = { tree: undefined, usedAtWalk: usedBytes(hosts), watchedMs: 0 };
    measured.set(key, state);
  }
  const m = state;
  let walkEvery = SAFETY_WALK_MS;
  let seenAt = Date.now();
  let busy: Promise<void> | undefined;

  const check = async (final: boolean): Promise<string | undefined> => {
    for (const r of o.roots) {
      try {
        // statfs is a few microseconds: sync, so a busy threadpool cannot delay the check.
        const s = statfsSync(r.host);
        const free = s.bavail * s.bsize;
        if (o.reserveBytes !== undefined && free < o.reserveBytes)
          return limitMessages.reserve(r.name, free, o.reserveBytes);
        if (s.ffree < inodeReserve(s.files)) return limitMessages.inodes(r.name, s.ffree);
      } catch {
        // The root went away: nothing to watch there.
      }
    }
    if (o.budgetBytes === undefined) return undefined;
    const usedNow = usedBytes(hosts);
    const mayBeOver = (m.tree ?? 0) + (usedNow - m.usedAtWalk) > o.budgetBytes;
    // Time counts only while a watched run goes on: between runs no sandboxed process exists to
    // write (each sandbox's processes end with it), so kiln's own work between buildpacks on a
    // loaded host does not bring the next walk closer.
    const now = Date.now();
    m.watchedMs += now - seenAt;
    seenAt = now;
    if (!mayBeOver && (final || m.watchedMs < walkEvery)) return undefined;
    const t0 = performance.now();
    const { bytes: used, entries } = await treeUsage(hosts);
    const took = performance.now() - t0;
    m.tree = used;
    m.usedAtWalk = usedNow;
    m.watchedMs = 0;
    walkEvery = Math.max(SAFETY_WALK_MS, took / WALK_SHARE);
    const names = o.roots.map((r) => r.name);
    if (entries > MAX_ENTRIES) return limitMessages.entries(MAX_ENTRIES, names);
    return used > o.budgetBytes
      ? limitMessages.disk(
          used,
          o.budgetBytes,
          o.roots.map((r) => r.name),
        )
      : undefined;
  };
  const tick = (): void => {
    if (stopped) return;
    busy = check(false).then((why) => {
      busy = undefined;
      if (why !== undefined && !stopped && !tripped) {
        tripped = true;
        onExceeded(why);
        return;
      }
      if (!stopped && !tripped) {
        timer = setTimeout(tick, POLL_MS);
        timer.unref();
      }
    });
  };
  timer = setTimeout(tick, POLL_MS);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await busy;
      if (tripped) return undefined;
      return check(true);
    },
  };
}

/** usedBytes sums the used space of the distinct filesystems holding `paths` (0 where unreadable). */
function usedBytes(paths: readonly string[]): number {
  const seen = new Set<string>();
  let total = 0;
  for (const p of paths) {
    try {
      const s = statfsSync(p);
      // Same numbers means (almost surely) the same filesystem: count it once.
      const id = `${s.type}:${s.blocks}:${s.files}`;
      if (seen.has(id)) continue;
      seen.add(id);
      total += (s.blocks - s.bfree) * s.bsize;
    } catch {
      // Gone: contributes nothing.
    }
  }
  return total;
}
