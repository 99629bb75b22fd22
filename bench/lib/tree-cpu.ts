import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/**
 * CPU time of a whole process tree, sandboxed processes included.
 *
 * `/usr/bin/time` (and any rusage figure) counts only descendants that were waited for, all the
 * way up. bubblewrap with `--unshare-pid` and without `--as-pid-1` runs the command under an init
 * of its own and exits with the command's status without waiting for that init: nothing that ran
 * in the sandbox reaches the monitor's rusage (`/usr/bin/time bwrap --unshare-pid … sh -c LOOP`
 * reports 0.00 s; with `--as-pid-1` the loop's 0.19 s). A kiln that starts its sandboxes one way
 * and a kiln that starts them the other way cannot be compared by rusage. `perf stat -e
 * task-clock` folds every descendant's count into the parent's when the descendant exits, waited
 * for or not, so it sees the whole tree.
 */
const PERF = ((): string | undefined => {
  const r = spawnSync('perf', ['stat', '-x,', '-e', 'task-clock', '--', 'true'], { encoding: 'utf8' });
  return r.status === 0 && /task-clock/.test(r.stderr) ? 'perf' : undefined;
})();

/** Whether whole-tree CPU is measured (perf usable here); else only rusage figures exist. */
export const treeCpuAvailable = PERF !== undefined;

/** treeCpuArgv wraps `argv` so that its whole tree's CPU time is written to `outFile`. */
export function treeCpuArgv(argv: readonly string[], outFile: string): string[] {
  if (PERF === undefined) return [...argv];
  return [PERF, 'stat', '-x,', '-e', 'task-clock', '-o', outFile, '--', ...argv];
}

/** treeCpuMs reads what treeCpuArgv's wrapper wrote (undefined when perf is not usable). */
export async function treeCpuMs(outFile: string): Promise<number | undefined> {
  if (PERF === undefined) return undefined;
  const text = await readFile(outFile, 'utf8');
  // CSV: "<msec>,msec,task-clock,..." (comment lines start with '#').
  const line = text.split('\n').find((l) => /,task-clock/.test(l));
  const ms = Number(line?.split(',')[0]);
  return Number.isFinite(ms) ? ms : undefined;
}
