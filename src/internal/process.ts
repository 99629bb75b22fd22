import { readFileSync } from 'node:fs';

// Temp names, staging dirs and lock files carry the pid of the kiln process that made them; what a
// dead process left behind may be removed. These are the one liveness test they all use.

/**
 * pidAlive tells whether process `pid` exists on this machine: signal 0 reaches it, or it exists
 * but belongs to another user (EPERM).
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * processStart is the start time of process `pid` in clock ticks since boot (field 22 of
 * `/proc/<pid>/stat`), or '' when it cannot be read. A pid and its start time together name one
 * process: a recycled pid has a later start time.
 */
export function processStart(pid: number): string {
  try {
    // The comm field (2) may contain spaces and parentheses, so count from the last ')'.
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    // A probe: a process that is gone has no start time.
    return '';
  }
}

/**
 * sameProcessAlive tells whether the process that recorded (`pid`, `start`) still runs: the pid
 * exists and, when both start times are known, it started at the recorded time (not a new process
 * that was given the same pid).
 */
export function sameProcessAlive(pid: number, start: string): boolean {
  if (!pidAlive(pid)) return false;
  const now = processStart(pid);
  return now === '' || start === '' || now === start;
}
