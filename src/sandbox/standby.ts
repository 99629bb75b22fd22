/**
 * Standby: the next sandbox run's first process, started and placed in its cgroup ahead of need.
 *
 * Every run gets a cgroup of its own (memory and pids bounds, run-guard.ts), and its first process
 * must be inside before anything forks. Moving a process into a cgroup (a write to cgroup.procs)
 * takes the kernel's cgroup threadgroup lock for writing, which waits for an RCU grace period:
 * 11-24 ms per run measured on this 2-core host (cgroup v1 memory), a third of a no-op rebuild's
 * sandbox cost. So while one run goes on, the next one's first process is made ahead: a fresh
 * cgroup with the same limits, `kiln-gate` (gate/gate.c) spawned with the same identity, working
 * directory, environment and stdio layout as the run's command, its OOM score set and moved into
 * the cgroup in the background. The next run whose spawn facts are the same takes it and sends
 * the command through the gate pipe, once the move is complete; nothing runs before. Each run
 * still has its own cgroup (created fresh, never reused) and the same process chain, limits and
 * namespaces as a run started on its own path: only the waiting moved.
 *
 * Only for runs whose first process starts as kiln itself (the isolated network, the default: its
 * nsenter drops to the sandbox's ids), never one that would wait as a sandbox's host ids.
 *
 * They are made when asked (Executor.prepare): a build prepares one for its first build process
 * after restore, and one for the next buildpack when it starts each one but the last, so none is
 * made for nothing. At most two wait at a time. One that waits longer than IDLE_MS is discarded
 * (its gate closed empty: kiln-gate exits 125 without running anything; its cgroup removed), as
 * are those still waiting at settleCgroups (cgroup.ts), at CLI exit and in tests.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, statSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { beforeSettling, type CgroupLimits, SandboxCgroup } from './cgroup.ts';

/** The repository's build of gate/gate.c (scripts/build.d/gate.sh). */
export const DEFAULT_GATE = fileURLToPath(new URL('../../dist/gate/kiln-gate', import.meta.url));

/** A standby unused this long is discarded (a build's runs follow each other within seconds). */
export const IDLE_MS = 30_000;

/** What a run's first process is spawned with: a standby fits a run only when all of it is equal. */
export interface SpawnFacts {
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | undefined;
  readonly uid: number | undefined;
  readonly gid: number | undefined;
  /** The child's fds: 'pipe' | 'inherit' | 'ignore', or an open host fd (the filter, kiln-init). */
  readonly stdio: readonly ('pipe' | 'inherit' | 'ignore' | number)[];
  /** The fd the gate pipe is on (the last one). */
  readonly gateFd: number;
  readonly limits: CgroupLimits;
}

/**
 * keyOf identifies spawn facts: host fds by the file they are open on (device, inode, size and
 * change time), since a later run opens the same files again under other numbers.
 */
function keyOf(f: SpawnFacts): string | undefined {
  const stdio: string[] = [];
  for (const s of f.stdio) {
    if (typeof s !== 'number') {
      stdio.push(s);
      continue;
    }
    try {
      const st = fstatSync(s);
      stdio.push(`fd:${st.dev}:${st.ino}:${st.size}:${st.ctimeMs}`);
    } catch {
      // A probe: an fd that cannot be identified gets no standby.
      return undefined;
    }
  }
  const { env, cwd, uid, gid, gateFd, limits } = f;
  return JSON.stringify({ env, cwd, uid, gid, stdio, gateFd, limits });
}

/** One started, not yet used first process of a run (see above). */
export class Standby {
  readonly child: ChildProcess;
  /** Its cgroup, once made (in the background: making a memory cgroup can take tens of ms). */
  cgroup: SandboxCgroup | undefined;
  readonly gateFd: number;
  readonly key: string;
  /** Resolves once the process is in its cgroup; rejects when it could not be placed. */
  readonly placed: Promise<void>;
  #failed = false;
  #discarded = false;
  /** Its cgroup's directories exist. */
  #made = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(child: ChildProcess, limits: CgroupLimits, gateFd: number, key: string) {
    this.child = child;
    this.gateFd = gateFd;
    this.key = key;
    child.on('error', () => {
      this.#failed = true;
    });
    this.#gate()?.on('error', () => {});
    const pid = child.pid;
    if (pid !== undefined) {
      try {
        // As on the run's own path (run-guard.ts): the OOM killer picks the sandbox first.
        writeFileSync(`/proc/${pid}/oom_score_adj`, '1000');
      } catch {
        // Gone already, or not permitted: the cgroup still bounds it.
      }
    }
    const planned = SandboxCgroup.createInBackground(limits);
    this.cgroup = planned?.cgroup;
    this.placed = (async () => {
      if (pid === undefined) throw new Error('no pid');
      if (planned === undefined) throw new Error('no cgroup for these limits');
      await planned.made;
      this.#made = true;
      // Discarded meanwhile: discard() left the directories being made to this.
      if (this.#discarded) planned.cgroup.removeLater();
      else await planned.cgroup.joinInBackground(pid);
    })();
    this.placed.catch(() => {
      this.#failed = true;
    });
    // Idle, it keeps neither kiln's event loop nor kiln alive.
    this.#handles(false);
    this.#timer = setTimeout(() => {
      dropSpare(this);
      this.discard();
    }, IDLE_MS);
    this.#timer.unref();
  }

  /** Failed to start or be placed, or exited: of no use any more. */
  get broken(): boolean {
    return this.#failed || this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /**
   * It has a cgroup: made and moved in, or still being made or moved in (the run that takes it
   * sends its command once `placed` settles, so it waits for the kernel there, off the main thread).
   */
  get ready(): boolean {
    return !this.broken && this.cgroup !== undefined;
  }

  #gate(): Writable | null | undefined {
    return this.child.stdio[this.gateFd] as Writable | null | undefined;
  }

  #handles(ref: boolean): void {
    if (ref) this.child.ref();
    else this.child.unref();
    for (const s of this.child.stdio) {
      const sock = s as Partial<Socket> | null;
      if (ref) sock?.ref?.();
      else sock?.unref?.();
    }
  }

  /** take makes it the run's process (kiln waits for it again as for any child). */
  take(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#handles(true);
  }

  /**
   * start sends the command (its argv; no argument may contain a NUL byte): kiln-gate applies the
   * wrappers it can do itself (gateMessage) and execs the rest.
   */
  start(argv: readonly string[]): void {
    this.#gate()?.end(
      Buffer.from(
        gateMessage(argv)
          .map((a) => `${a}\0`)
          .join(''),
      ),
    );
  }

  /** discard closes the gate empty (kiln-gate exits 125 running nothing) and removes the cgroup. */
  discard(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#discarded = true;
    this.#gate()?.end();
    // Kills what is left once the process has had a moment to exit, then removes the directory
    // (once made: the placing removes one still being made).
    if (this.#made) this.cgroup?.removeLater();
  }
}

const RLIMIT_OPTION = /^--(nproc|nofile|fsize|data|as)=(\d+):(\d+)$/;

/** A leading `prlimit --RES=SOFT:HARD… --` (as _child.ts and run-guard.ts write it) as directives. */
function prlimitDirectives(argv: readonly string[]): { directives: string[]; rest: string[] } | undefined {
  if (argv[0] !== 'prlimit' && argv[0] !== '/usr/bin/prlimit') return undefined;
  const directives: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return directives.length > 0 ? { directives, rest: argv.slice(i + 1) } : undefined;
    const m = RLIMIT_OPTION.exec(a);
    if (!m) return undefined;
    directives.push(`+rlimit=${m[1]}:${m[2]}:${m[3]}`);
  }
  return undefined;
}

/** A leading `nsenter --net=PATH -S UID -G GID --` (network.ts enterPrefix, as root) as directives. */
function nsenterDirectives(argv: readonly string[]): { directives: string[]; rest: string[] } | undefined {
  const [cmd, net, s, uid, g, gid, end] = argv;
  if (cmd !== 'nsenter' || !net?.startsWith('--net=/') || s !== '-S' || g !== '-G' || end !== '--')
    return undefined;
  if (!/^[1-9]\d*$/.test(uid ?? '') || !/^[1-9]\d*$/.test(gid ?? '')) return undefined;
  return { directives: [`+netns=${net.slice('--net='.length)}`, `+ids=${uid}:${gid}`], rest: argv.slice(7) };
}

/**
 * gateMessage is what kiln-gate gets for a run's command line: the leading wrappers it does itself
 * (gate.c: `prlimit` becomes `+rlimit=…`, `nsenter --net=… -S U -G G` becomes `+netns=…` and
 * `+ids=U:G`), in their order, then the rest as it is. The same limits, namespace and identity as
 * exec'ing the wrappers, two execs fewer per sandboxed process. Anything it does not recognise
 * exactly is left to exec as before.
 */
export function gateMessage(argv: readonly string[]): string[] {
  const directives: string[] = [];
  let rest = [...argv];
  for (;;) {
    const step = prlimitDirectives(rest) ?? nsenterDirectives(rest);
    if (!step) break;
    directives.push(...step.directives);
    rest = step.rest;
  }
  return [...directives, ...rest];
}

/**
 * The standbys waiting, oldest first: at most MAX_WAITING (the one for the next run and the one
 * for the run after it, made while the next one runs).
 */
let spares: Standby[] = [];
const MAX_WAITING = 2;
let taken = 0;

/** How many runs started from a standby in this process (for tests and benchmarks). */
export function standbysTaken(): number {
  return taken;
}
beforeSettling(() => {
  for (const s of spares) s.discard();
  spares = [];
});

/** dropSpare forgets `s` (an idle one discarded by its timer). */
function dropSpare(s: Standby): void {
  spares = spares.filter((x) => x !== s);
}

/**
 * take returns the oldest waiting standby that fits `facts` (made for a run like this one and
 * placed or being placed); unusable ones (exited, failed) are discarded on the way.
 */
export function takeStandby(facts: SpawnFacts): Standby | undefined {
  if (spares.length === 0) return undefined;
  const key = keyOf(facts);
  for (const s of [...spares]) {
    if (s.broken) {
      dropSpare(s);
      s.discard();
      continue;
    }
    if (!s.ready || s.key !== key) continue;
    dropSpare(s);
    s.take();
    taken++;
    return s;
  }
  return undefined;
}

/**
 * prepareStandby starts a standby for a run with `facts` (the oldest waiting one goes when
 * MAX_WAITING wait), unless the helper is not there or no cgroup is made for these limits. Best effort: a failure only means
 * the next run is placed on its own path.
 */
export function prepareStandby(facts: SpawnFacts): void {
  // Only a first process that starts as kiln itself (as root: an isolated network's nsenter drops
  // to the sandbox ids): one waiting as a sandbox's host ids would be a process of that identity
  // outside any sandbox, possibly after its lease has ended.
  if (facts.uid !== undefined || facts.gid !== undefined) return;
  const gate = gateHelper();
  const key = gate === null ? undefined : keyOf(facts);
  if (gate === null || key === undefined) return;
  if (SandboxCgroup.disabled) return;
  const can = SandboxCgroup.available();
  if (
    !(facts.limits.memoryBytes !== undefined && can.memory) &&
    !(facts.limits.processes !== undefined && can.pids)
  )
    return;
  // Its own open file of each host fd: a dup would share the run's file offset, which the run's
  // bwrap moves to the end when it reads its seccomp program.
  const reopened: number[] = [];
  let stdio: StdioOptions;
  try {
    stdio = facts.stdio.map((s) => {
      if (typeof s !== 'number') return s;
      const fd = openSync(`/proc/self/fd/${s}`, 'r');
      reopened.push(fd);
      return fd;
    });
  } catch {
    // A probe: an fd that cannot be opened again gets no standby.
    for (const fd of reopened) closeSync(fd);
    return;
  }
  let child: ChildProcess;
  try {
    child = spawn(gate, [String(facts.gateFd)], {
      env: { ...facts.env },
      ...(facts.cwd !== undefined ? { cwd: facts.cwd } : {}),
      stdio,
      detached: true,
      ...(facts.uid !== undefined ? { uid: facts.uid } : {}),
      ...(facts.gid !== undefined ? { gid: facts.gid } : {}),
    });
  } catch {
    // Not startable now (e.g. out of processes): the run's own path will say so.
    return;
  } finally {
    // The child has its copies.
    for (const fd of reopened) closeSync(fd);
  }
  // The newest are for the runs coming next: the oldest goes when too many wait.
  while (spares.length >= MAX_WAITING) spares.shift()?.discard();
  spares.push(new Standby(child, facts.limits, facts.gateFd, key));
}

let gateProbe: string | null | undefined;

/**
 * The helper when it exists and any uid can run it (it is started as the sandbox's host uid when
 * the network is not isolated); else null: every run is placed on its own path. Synchronous, so
 * that the run's fds are still open when the standby inherits them.
 */
function gateHelper(): string | null {
  if (gateProbe !== undefined) return gateProbe;
  gateProbe = null;
  try {
    const st = statSync(DEFAULT_GATE);
    if (!st.isFile() || (st.mode & 0o001) === 0) return gateProbe;
    for (let dir = path.dirname(DEFAULT_GATE); ; dir = path.dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) return gateProbe;
      if (path.dirname(dir) === dir) break;
    }
  } catch {
    // A probe: a helper that cannot be looked at is not used.
    return gateProbe;
  }
  gateProbe = DEFAULT_GATE;
  return gateProbe;
}
