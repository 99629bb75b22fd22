import { readFileSync } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';

// An exclusive lock file, created with O_EXCL ('wx'), holding the owner's pid, its start time
// (from /proc, so a recycled pid is not mistaken for the owner) and the host name. A lock whose
// owner is gone (SIGKILL, power loss) is stale and is broken by the next taker. Breaking goes
// through a second 'wx' file so that two waiters never both delete: one could otherwise remove
// the fresh lock the other just took.

/** LockOwner is what a lock file records. */
interface LockOwner {
  pid: number;
  start: string;
  host: string;
}

/** A held lock; `release()` removes it (idempotent). */
export interface HeldLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Options of acquireLock. */
export interface LockOptions {
  /** Give up after this many milliseconds (default 10 minutes: a concurrent build may be exporting). */
  timeoutMs?: number;
  /** Called once when the lock is busy, so the CLI can say what it waits for. */
  onWait?: (owner: string) => void;
}

function processStart(pid: number): string {
  try {
    // Field 22 of /proc/<pid>/stat is the start time in clock ticks; the comm field (2) may
    // contain spaces, so count from the last ')'.
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function alive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true; // cannot tell: assume alive
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  const start = processStart(owner.pid);
  return start === '' || owner.start === '' || start === owner.start;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as LockOwner;
    if (typeof o.pid === 'number') return o;
  } catch {}
  return undefined;
}

async function tryCreate(file: string, content: string): Promise<boolean> {
  try {
    const fh = await open(file, 'wx', 0o644);
    try {
      await fh.writeFile(content);
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** isStale tells whether the lock at `file` belongs to a process that no longer exists. */
async function isStale(file: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const owner = parseOwner(text);
  if (owner) return !alive(owner);
  // Empty or torn content: the owner died between create and write, or is writing right now.
  // Give a writer a moment before calling it stale.
  const st = await stat(file).catch(() => undefined);
  return st !== undefined && Date.now() - st.mtimeMs > 5000;
}

async function breakStale(file: string): Promise<void> {
  const breaker = `${file}.break`;
  const me = JSON.stringify({ pid: process.pid, start: processStart(process.pid), host: hostname() });
  if (!(await tryCreate(breaker, me))) {
    // Another waiter is breaking it; if that waiter died too, its breaker file is stale.
    if (await isStale(breaker)) await rm(breaker, { force: true });
    return;
  }
  try {
    // Re-check under the breaker: the lock may have been released and retaken meanwhile.
    if (await isStale(file)) {
      const aside = `${file}.stale.${process.pid}`;
      await rename(file, aside).catch(() => {});
      await rm(aside, { force: true });
    }
  } finally {
    await rm(breaker, { force: true });
  }
}

/**
 * tryLock takes the lock file `file` if it is free or its owner is gone (breaking the stale lock),
 * and returns undefined without waiting when a live process holds it.
 */
export async function tryLock(file: string): Promise<HeldLock | undefined> {
  const me = JSON.stringify({ pid: process.pid, start: processStart(process.pid), host: hostname() });
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await tryCreate(file, me)) {
      let released = false;
      return {
        path: file,
        async release() {
          if (released) return;
          released = true;
          await rm(file, { force: true });
        },
      };
    }
    if (!(await isStale(file))) return undefined;
    await breakStale(file);
  }
  return undefined;
}

/**
 * acquireLock takes the exclusive lock file `file`, waiting (polling with backoff) while another
 * live process holds it and breaking it when its owner is gone. Throws a KilnError after the
 * timeout naming the owner.
 */
export async function acquireLock(file: string, opts: LockOptions = {}): Promise<HeldLock> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  let told = false;
  for (;;) {
    const held = await tryLock(file);
    if (held) return held;
    if (Date.now() > deadline) {
      const owner = await readFile(file, 'utf8').catch(() => '?');
      throw new KilnError(`timed out waiting for lock ${file}: held by ${owner}`, ExitCode.Failed);
    }
    if (!told) {
      told = true;
      opts.onWait?.(await readFile(file, 'utf8').catch(() => '?'));
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 250);
  }
}
