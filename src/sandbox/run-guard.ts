/**
 * RunGuard applies the limits that need kiln's help while a sandboxed process runs (those the
 * kernel enforces on its own, RLIMIT_*, are prlimit's job in _child.ts):
 *
 * - memory and process count: a cgroup per run (cgroup.ts). The process must be inside before the
 *   command can fork, so the command is started behind a gate, `/bin/sh -c 'read <&N; exec …'`:
 *   kiln writes its pid to cgroup.procs, then opens the gate; everything that follows (prlimit,
 *   bwrap, the buildpack) inherits the cgroup. Where no cgroup can be made, memory falls back to
 *   RLIMIT_DATA (prlimit --data) and processes to RLIMIT_NPROC alone.
 * - disk: the writable host directories are watched (disk-budget.ts); a run over the budget or
 *   below the host's free-space reserve is SIGKILLed, and a run is refused when the host is below
 *   the reserve before it starts.
 *
 * The guard reports at most one `limit` (the reason kiln stopped the run, one line naming the
 * limit and how to raise it) plus notes.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { KilnError } from '../internal/errors.ts';
import { type HostCommand, nextFd, stdioFor } from './_child.ts';
import { SandboxCgroup } from './cgroup.ts';
import { type DiskWatch, preflight, type WatchedRoot, watch } from './disk-budget.ts';
import type { RunSpec } from './executor.ts';
import { limitMessages } from './limits.ts';
import { prepareStandby, type SpawnFacts, type Standby, takeStandby } from './standby.ts';

/** The gate's fd: after everything else the command places (see _child.ts). */
function gateFdOf(cmd: HostCommand): number {
  return nextFd(cmd);
}

/** The spawn facts of `cmd` behind a gate (the stdio layout runChild makes, see _child.ts). */
function spawnFactsOf(cmd: HostCommand, spec: RunSpec, limits: SpawnFacts['limits']): SpawnFacts {
  const gateFd = gateFdOf(cmd);
  const stdio: SpawnFacts['stdio'][number][] = [
    spec.stdin === 'inherit' ? 'inherit' : 'ignore',
    stdioFor(spec.stdout),
    stdioFor(spec.stderr),
    cmd.infoFd ? 'pipe' : 'ignore',
    ...(cmd.extraFds ?? []),
    ...(cmd.dataFds ?? []).map(() => 'pipe' as const),
  ];
  stdio[gateFd] = 'pipe';
  return { env: cmd.env, cwd: cmd.cwd, uid: cmd.uid, gid: cmd.gid, stdio, gateFd, limits };
}

/** Whether a run of `cmd` can have a standby: no id map, no argument the gate message cannot carry. */
function standbyFits(cmd: HostCommand): boolean {
  return !cmd.idMap && ![cmd.file, ...cmd.args].some((a) => a.includes('\0'));
}

/** cgroupLimitsOf: what a run's cgroup bounds. */
function cgroupLimitsOf(spec: RunSpec): SpawnFacts['limits'] {
  const l = spec.limits ?? {};
  return {
    ...(l.memoryBytes !== undefined ? { memoryBytes: l.memoryBytes } : {}),
    ...(l.processes !== undefined ? { processes: l.processes } : {}),
  };
}

/**
 * prepareRun starts the standby (standby.ts) a later run of a command like `cmd` for `spec` will
 * take: same spawn facts, a fresh cgroup with the same limits. Best effort. The host fds of
 * `cmd.extraFds` must be open while it is called (the standby gets its own copies).
 */
export function prepareRun(cmd: HostCommand, spec: RunSpec): void {
  if (standbyFits(cmd)) prepareStandby(spawnFactsOf(cmd, spec, cgroupLimitsOf(spec)));
}

export class RunGuard {
  /** The command to spawn (wrapped with the gate and/or prlimit --data when needed). */
  readonly cmd: HostCommand;
  /** stdio index of the gate pipe, when the command waits behind one. */
  readonly gateFd: number | undefined;
  /** Why the run must not start at all (host disk below the reserve). */
  readonly refused: string | undefined;
  /** The run's process already started and being placed (standby.ts), when one fitted. */
  readonly standby: Standby | undefined;
  /** What this run's first process is spawned with (undefined: no standby can stand in for it). */
  readonly facts: SpawnFacts | undefined;
  readonly #spec: RunSpec;
  readonly #cgroup: SandboxCgroup | undefined;
  readonly #roots: readonly WatchedRoot[];
  #watch: DiskWatch | undefined;
  #limit: string | undefined;

  constructor(cmd: HostCommand, spec: RunSpec) {
    this.#spec = spec;
    const l = spec.limits ?? {};
    // Writable host directories: what the sandbox can make grow on the host.
    this.#roots = spec.mounts.filter((m) => !m.readonly).map((m) => ({ host: m.src, name: m.dst }));
    const disk = { roots: this.#roots, budgetBytes: l.diskBytes, reserveBytes: l.diskReserveBytes };
    this.refused = this.#roots.length > 0 ? preflight(disk) : undefined;
    if (this.refused !== undefined) {
      this.cmd = cmd;
      this.gateFd = undefined;
      this.#cgroup = undefined;
      this.standby = undefined;
      this.facts = undefined;
      return;
    }
    const cgLimits = cgroupLimitsOf(spec);
    // The run's first process, started and placed in a fresh cgroup ahead of need (standby.ts),
    // when one with these spawn facts is waiting.
    this.facts = standbyFits(cmd) ? spawnFactsOf(cmd, spec, cgLimits) : undefined;
    this.standby = this.facts ? takeStandby(this.facts) : undefined;
    try {
      this.#cgroup = this.standby?.cgroup ?? SandboxCgroup.create(cgLimits);
    } catch (e) {
      // The hierarchy is usable but refused this cgroup: fail rather than run unbounded.
      throw new KilnError(
        `sandbox: cannot create the cgroup that bounds memory and processes (${(e as Error).message})`,
      );
    }
    let wrapped = cmd;
    if (l.memoryBytes !== undefined && !this.#cgroup?.boundsMemory) {
      // No memory cgroup: RLIMIT_DATA bounds each process's heap and private writable mappings
      // (not V8's PROT_NONE reservations, so Node.js still starts; RLIMIT_AS would not).
      wrapped = {
        ...wrapped,
        file: '/usr/bin/prlimit',
        args: [`--data=${l.memoryBytes}:${l.memoryBytes}`, '--', wrapped.file, ...wrapped.args],
      };
    }
    if (this.standby) {
      // kiln-gate is the gate: it gets the command through the gate pipe once it is placed.
      this.gateFd = this.standby.gateFd;
    } else if (this.#cgroup) {
      const fd = gateFdOf(cmd);
      this.gateFd = fd;
      // dash takes single-digit fds in redirections; the gate fd stays below 10.
      wrapped = {
        ...wrapped,
        file: '/bin/sh',
        args: [
          '-c',
          `read -r _ <&${fd} || exit 125; exec ${fd}<&-; exec "$@"`,
          'kiln-gate',
          wrapped.file,
          ...wrapped.args,
        ],
      };
    } else this.gateFd = undefined;
    this.cmd = wrapped;
  }

  /**
   * started is called right after spawn: joins the cgroup, opens the gate and starts the disk
   * watch. `kill` must end the whole sandbox at once (SIGKILL).
   */
  started(child: ChildProcess, kill: () => void): void {
    const stopAll = (why: string) => {
      this.#limit ??= why;
      this.#cgroup?.kill();
      kill();
    };
    const standby = this.standby;
    // Whatever else holds memory (kiln, the host), the OOM killer picks the sandbox first; children
    // inherit it. Before the gate opens, so nothing escapes it (without a gate: right after spawn).
    if (child.pid !== undefined && !standby) {
      try {
        writeFileSync(`/proc/${child.pid}/oom_score_adj`, '1000');
      } catch {
        // Gone already, or not permitted: the cgroup/rlimit still bound it.
      }
    }
    if (standby) {
      // Placed ahead of need (its OOM score too): the command goes through once the move is done.
      standby.placed.then(
        () => standby.start([this.cmd.file, ...this.cmd.args]),
        (e: Error) => stopAll(`the sandbox could not be placed in its cgroup (${e.message})`),
      );
    } else if (this.#cgroup && this.gateFd !== undefined) {
      const gate = child.stdio[this.gateFd] as Writable | null | undefined;
      gate?.on('error', () => {});
      // Off the main thread: the move waits for an RCU grace period (10-25 ms); the process waits
      // behind its gate meanwhile.
      (child.pid === undefined
        ? Promise.reject(new Error('no pid'))
        : this.#cgroup.joinInBackground(child.pid)
      ).then(
        () => gate?.end('\n'),
        (e: Error) => {
          // Never run unbounded: a process that could not be placed does not start.
          gate?.destroy();
          stopAll(`the sandbox could not be placed in its cgroup (${e.message})`);
        },
      );
    }
    const l = this.#spec.limits ?? {};
    if (this.#roots.length > 0 && (l.diskBytes !== undefined || l.diskReserveBytes !== undefined)) {
      this.#watch = watch(
        { roots: this.#roots, budgetBytes: l.diskBytes, reserveBytes: l.diskReserveBytes },
        stopAll,
      );
    }
  }

  /** kill SIGKILLs every process of the run's cgroup (stopped ones too), if it has one. */
  kill(): void {
    this.#cgroup?.kill();
  }

  /**
   * finished is called once the process has ended: stops the watch (with a last check of the
   * trees), reads the cgroup's counters and removes it. Returns the limit that ended the run and
   * notes on limits it ran into.
   */
  async finished(how: { signal: NodeJS.Signals | null }): Promise<{ limit?: string; notes: string[] }> {
    const notes: string[] = [];
    const overBudget = await this.#watch?.stop();
    this.#limit ??= overBudget;
    const l = this.#spec.limits ?? {};
    if (this.#cgroup) {
      const r = this.#cgroup.report();
      if (r.oomKilled && l.memoryBytes !== undefined) this.#limit ??= limitMessages.memory(l.memoryBytes);
      if (r.processLimitHit && l.processes !== undefined) notes.push(limitMessages.processes(l.processes));
      // The counters are read; the directory goes once the kernel has reaped the last process.
      this.#cgroup.removeLater();
    }
    if (how.signal === 'SIGXFSZ' && l.fileSizeBytes !== undefined)
      notes.push(limitMessages.fileSize(l.fileSizeBytes));
    return { ...(this.#limit !== undefined ? { limit: this.#limit } : {}), notes };
  }
}
