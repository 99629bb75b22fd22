// Temp files, staging dirs and lock files carry the pid of the kiln process that made them
// (`.tmp-<pid>-…`, `run-<pid>-…`, a lock holding the pid); what a dead process left behind may
// be removed. This is the one liveness test they all use.

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
