import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, open, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { KilnError } from './errors.ts';
import { pidAlive, processStart, sameProcessAlive } from './process.ts';
import { tempSibling } from './temp-name.ts';

// An exclusive lock file shared by processes on one machine. It records its owner: pid, the
// process's start time (so a recycled pid is not mistaken for the owner), host name, when it was
// taken, and a random nonce that names this one holding.
//
// Taking: the record is written to a temp file first and then hard-linked to the lock's name;
// link() fails with EEXIST when the name exists, and the file appears complete (never empty or
// half written), unlike create-then-write.
//
// Breaking a stale lock (its owner is gone: SIGKILL, power loss) must let exactly one of the
// processes that found it stale remove it, and must never remove a lock someone has taken since.
// A breaker first hard-links the stale lock to `<lock>.break-<nonce>`: only one process can create
// that name, and while it exists the stale file's inode stays alive, so "the lock file is still
// the stale one" is a check of inode numbers. The holder of that name checks that the lock is
// still that inode and moves it aside. Nobody else can remove the lock in the meantime: its owner
// is dead, other breakers cannot create the same break name, and takers fail on link() while it
// exists. Everyone then races on link() again, and exactly one wins.
//
// Limit: a breaker killed during the break (a few system calls) leaves its break name behind; it
// is cleared once it is ABANDONED_MS old.

/** A held lock; `release()` removes it (idempotent). */
export interface HeldLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Options of acquireLock. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 10 minutes: a concurrent build may be exporting). */
  timeoutMs?: number;
  /** Called once when the lock is busy, with a description of its holder, so the CLI can say what it waits for. */
  onWait?: (holder: string) => void;
}

/** What a lock file records. Older kiln versions wrote only a pid (as text) or no nonce. */
interface Owner {
  readonly pid: number;
  readonly start: string;
  readonly host: string;
  readonly nonce?: string;
  readonly since?: string;
}

/** One look at a lock file: its content and inode read through one descriptor. */
interface Seen {
  readonly ino: bigint;
  readonly ctimeMs: number;
  /** Names this holding: the nonce, or (old formats) the inode and its modification time (link() changes the ctime). */
  readonly key: string;
  readonly owner: Owner | undefined;
  readonly alive: boolean;
}

/** A break name older than this was left by a breaker that died mid-break (a break takes milliseconds). */
const ABANDONED_MS = 30_000;
/** An unreadable record is given this long to be a writer's (older kiln: create, then write) before it counts as stale. */
const TORN_MS = 5_000;

function parseOwner(text: string): Owner | undefined {
  if (/^\s*\d+\s*$/.test(text)) return { pid: Number(text), start: '', host: hostname() };
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    if (typeof o.pid === 'number' && Number.isInteger(o.pid) && o.pid > 0)
      return {
        pid: o.pid,
        start: typeof o.start === 'string' ? o.start : '',
        host: typeof o.host === 'string' ? o.host : hostname(),
        ...(typeof o.nonce === 'string' && /^[0-9a-f]{8,64}$/.test(o.nonce) ? { nonce: o.nonce } : {}),
        ...(typeof o.since === 'string' ? { since: o.since } : {}),
      };
  } catch {
    // A torn record (a writer mid-write) or a foreign one names no owner; TORN_MS decides when it is stale.
  }
  return undefined;
}

function ownerAlive(o: Owner): boolean {
  if (o.host !== hostname()) return true; // another machine's process: cannot tell, so assume alive
  // Our own pid counts too: with the start time, a lock left by an earlier process that had this
  // pid (pid 1 in a container, say) is seen as stale rather than as held by us forever.
  return o.start === '' ? pidAlive(o.pid) : sameProcessAlive(o.pid, o.start);
}

/** describe names a lock's holder for messages: `pid 123 (host h, since 2026-…)`. */
function describe(seen: Seen | undefined): string {
  const o = seen?.owner;
  if (!o) return 'an unknown process';
  const extra = [o.host !== hostname() ? `host ${o.host}` : '', o.since ? `since ${o.since}` : '']
    .filter(Boolean)
    .join(', ');
  return `pid ${o.pid}${extra ? ` (${extra})` : ''}`;
}

/** look reads the lock file at `file`; undefined when there is none. */
async function look(file: string): Promise<Seen | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    // No link is followed and no FIFO blocks the open: a lock is a regular file kiln wrote.
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new KilnError(`lock ${file}: expected a lock file, found a symbolic link`);
    throw e;
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new KilnError(`lock ${file}: expected a lock file, found something else`);
    // A record is a few hundred bytes; never read more from a planted big file.
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const owner = parseOwner(buf.subarray(0, bytesRead).toString('utf8'));
    const key = owner?.nonce ?? `i${st.ino}-${st.mtimeNs}`;
    const alive = owner ? ownerAlive(owner) : Date.now() - Number(st.mtimeMs) <= TORN_MS;
    return { ino: st.ino, ctimeMs: Number(st.ctimeMs), key, owner, alive };
  } finally {
    await fh.close();
  }
}

/**
 * breakStale removes the stale lock `seen` at `file` unless another process is already breaking
 * it or it changed since it was looked at (see the module comment). Returns whether this process
 * removed it; either way the caller looks again.
 */
async function breakStale(file: string, seen: Seen): Promise<boolean> {
  const token = `${file}.break-${seen.key}`;
  try {
    await link(file, token);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false; // released or broken meanwhile
    if (code !== 'EEXIST') throw e;
    // Another breaker has it; clear its name only when that breaker evidently died mid-break.
    const st = await lstat(token).catch(() => undefined);
    if (st && Date.now() - st.ctimeMs > ABANDONED_MS) {
      const aside = tempSibling(token);
      // Another breaker moved the abandoned token first: nothing left to move.
      await rename(token, aside).catch(() => {});
      await rm(aside, { force: true });
    }
    return false;
  }
  try {
    const held = await look(token);
    // The lock was replaced between our look and the link: the name points at a fresh lock.
    if (!held || held.key !== seen.key || held.alive) return false;
    const now = await lstat(file, { bigint: true }).catch(() => undefined);
    if (now?.ino !== held.ino) return false;
    const aside = tempSibling(file);
    await rename(file, aside);
    const moved = await look(aside);
    // Cannot happen while the break name is ours; if it ever did, hand the lock back.
    if (moved && moved.key !== seen.key) await link(aside, file).catch(() => {});
    await rm(aside, { force: true });
    return true;
  } finally {
    await rm(token, { force: true });
  }
}

/** One try: the held lock, or a description of who holds it. */
async function attempt(file: string): Promise<{ held: HeldLock } | { holder: Seen | undefined }> {
  const nonce = randomBytes(12).toString('hex');
  const record: Owner = {
    pid: process.pid,
    start: processStart(process.pid),
    host: hostname(),
    nonce,
    since: new Date().toISOString(),
  };
  const tmp = tempSibling(file);
  await writeFile(tmp, JSON.stringify(record), { flag: 'wx', mode: 0o644 });
  try {
    for (let round = 0; ; round++) {
      try {
        await link(tmp, file);
        return { held: heldLock(file, nonce) };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const seen = await look(file);
      if (!seen) continue; // released between link and look
      if (seen.alive) return { holder: seen };
      if (round >= 50) return { holder: seen }; // a stale lock we keep failing to break: let the caller wait
      if (!(await breakStale(file, seen))) await sleep(2 + Math.floor(Math.random() * 8));
    }
  } finally {
    await rm(tmp, { force: true });
  }
}

function heldLock(file: string, nonce: string): HeldLock {
  let released = false;
  return {
    path: file,
    async release() {
      if (released) return;
      released = true;
      // Remove only our own holding (a lock file replaced behind our back stays its owner's).
      const seen = await look(file);
      if (seen?.key === nonce) await rm(file, { force: true });
    },
  };
}

/**
 * tryLock takes the lock file `file` if it is free or its owner is gone (breaking the stale lock),
 * and returns undefined without waiting when a live process holds it.
 */
export async function tryLock(file: string): Promise<HeldLock | undefined> {
  const r = await attempt(file);
  return 'held' in r ? r.held : undefined;
}

/**
 * acquireLock takes the exclusive lock file `file`, waiting (polling with backoff) while another
 * live process holds it and breaking it when its owner is gone. Throws a KilnError after the
 * timeout naming the holder.
 */
export async function acquireLock(file: string, opts: LockOptions = {}): Promise<HeldLock> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  let told = false;
  for (;;) {
    const r = await attempt(file);
    if ('held' in r) return r.held;
    if (Date.now() > deadline) {
      throw new KilnError(
        `timed out waiting for lock ${file}: held by ${describe(r.holder)} (waited ${Math.round(timeoutMs / 1000)} s)`,
      );
    }
    if (!told) {
      told = true;
      opts.onWait?.(describe(r.holder));
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 250);
  }
}

/** withLock runs `fn` holding the lock file `file` (acquireLock's options apply). */
export async function withLock<T>(file: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const held = await acquireLock(file, opts);
  try {
    return await fn();
  } finally {
    await held.release();
  }
}
