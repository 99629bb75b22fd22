/**
 * SandboxCgroup is one control group per sandboxed process tree: a memory bound (swap included)
 * and a pids bound that, unlike RLIMIT_NPROC, counts only this sandbox's processes, whatever uid
 * they run as. kiln creates it below its own cgroup (as root, or where the hierarchy is delegated
 * to kiln's uid), puts the sandbox in before the command runs (run-guard.ts), reads afterwards
 * whether the kernel OOM-killed something or refused a fork, and removes it.
 *
 * Both hierarchies are handled: cgroup v1 (`memory.limit_in_bytes` + `memory.memsw.limit_in_bytes`,
 * `pids.max`) and cgroup v2 where kiln's own cgroup delegates the controllers to children
 * (`memory.max` + `memory.swap.max`, `pids.max`; a v2 child cannot be used otherwise because of
 * the no-internal-processes rule). Where neither works, `available()` says so and the caller falls
 * back to rlimits (README.md, "Limits").
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** What to bound. */
export interface CgroupLimits {
  readonly memoryBytes?: number;
  readonly processes?: number;
}

/** What the kernel did to the process tree while it ran. */
export interface CgroupReport {
  /** The memory bound was reached and the OOM killer killed a process of the sandbox. */
  readonly oomKilled: boolean;
  /** A fork or clone was refused because pids.max was reached. */
  readonly processLimitHit: boolean;
}

type Controller = 'memory' | 'pids';

/** Where a controller's hierarchy lets kiln create children: the parent dir and its version. */
interface Hierarchy {
  readonly dir: string;
  readonly v2: boolean;
}

const PREFIX = 'kiln-';
let discovered: Map<Controller, Hierarchy> | undefined;
let seq = 0;

/**
 * hierarchies finds, once per process, the directory of kiln's own cgroup for each controller in
 * which kiln can create a child; stale children of dead kiln processes are removed on the way.
 */
function hierarchies(): Map<Controller, Hierarchy> {
  if (discovered) return discovered;
  discovered = new Map();
  let selfCg: string;
  let mountinfo: string;
  try {
    selfCg = readFileSync('/proc/self/cgroup', 'utf8');
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    // A probe: without these files there is no cgroup to discover.
    return discovered;
  }
  // v1: "4:memory:/some/path"; v2: "0::/some/path".
  const own = new Map<string, string>();
  for (const line of selfCg.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of (m[1] ?? '').split(',')) own.set(c, m[2] ?? '/');
  }
  // mountinfo: "id parent major:minor root mountpoint opts ... - fstype source superopts".
  const mounts: { root: string; point: string; fstype: string; superOpts: string[] }[] = [];
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    const g = post.split(' ');
    mounts.push({
      root: unescapeMountinfo(f[3] ?? '/'),
      point: unescapeMountinfo(f[4] ?? ''),
      fstype: g[0] ?? '',
      superOpts: (g[2] ?? '').split(','),
    });
  }
  const inside = (mount: { root: string; point: string }, cg: string): string => {
    const rel = mount.root !== '/' && cg.startsWith(mount.root) ? cg.slice(mount.root.length) : cg;
    return path.join(mount.point, rel);
  };
  for (const c of ['memory', 'pids'] as const) {
    const v1 = mounts.find((m) => m.fstype === 'cgroup' && m.superOpts.includes(c));
    const v1Path = own.get(c);
    if (v1 && v1Path !== undefined) {
      const dir = inside(v1, v1Path);
      if (usable(dir)) discovered.set(c, { dir, v2: false });
      continue;
    }
    const v2 = mounts.find((m) => m.fstype === 'cgroup2');
    const v2Path = own.get('');
    if (!v2 || v2Path === undefined) continue;
    const dir = inside(v2, v2Path);
    try {
      // Delegated means kiln's cgroup already hands the controller to its children.
      const delegated = readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/);
      if (delegated.includes(c) && usable(dir)) discovered.set(c, { dir, v2: true });
    } catch {
      // No v2 hierarchy for this controller.
    }
  }
  return discovered;
}

/** unescapeMountinfo decodes mountinfo's octal escapes (`\040` for a space). */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** usable tries to create (and removes) a child, and sweeps children left by dead kiln processes. */
function usable(dir: string): boolean {
  const probe = path.join(dir, `${PREFIX}${process.pid}-probe`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
  } catch {
    // A probe: failing to make the test directory means the cgroup is not writable.
    return false;
  }
  for (const name of safeReaddir(dir)) {
    const m = /^kiln-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    try {
      rmdirSync(path.join(dir, name));
    } catch {
      // Still has processes (kill them first) or gone already: left for the next sweep.
    }
  }
  return true;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    // A probe: an unreadable cgroup dir lists nothing.
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function readCounter(file: string, key: string): number {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    // A probe: a counter the kernel does not expose reads as 0.
    return 0;
  }
}

/** Removals still in progress (a run's processes are reaped by the kernel after its init exits). */
const removing = new Set<Promise<void>>();

/**
 * What settleCgroups does too: standby.ts discards a waiting standby (whose cgroup is then
 * removed), mount-view.ts waits for the removal of overlay work dirs.
 */
const settling = new Set<() => void | Promise<void>>();

/** beforeSettling registers `f` to run (and be waited for) in every settleCgroups. */
export function beforeSettling(f: () => void | Promise<void>): void {
  settling.add(f);
}

/**
 * settleCgroups waits for every cgroup removal started so far: runs do not wait for theirs (the
 * kernel reaping a sandbox's last processes took ~10 ms of every buildpack process), so whoever
 * needs them gone (a test, a process about to exit) waits here. Also for what other sandbox
 * parts left to finish in the background (beforeSettling).
 */
export async function settleCgroups(): Promise<void> {
  await Promise.all([...settling].map((f) => f()));
  while (removing.size > 0) await Promise.all([...removing]);
}

export class SandboxCgroup {
  /** The controller directories of this sandbox's cgroup (one per v1 hierarchy; v2 may share). */
  readonly #dirs: ReadonlyMap<Controller, { dir: string; v2: boolean }>;
  readonly limits: CgroupLimits;

  private constructor(dirs: Map<Controller, { dir: string; v2: boolean }>, limits: CgroupLimits) {
    this.#dirs = dirs;
    this.limits = limits;
  }

  /**
   * Set to stop using cgroups in this process (the rlimit fallback then applies everywhere): for
   * hosts whose cgroups kiln must not touch, and for tests of the fallback.
   */
  static disabled = false;

  /** Which controllers kiln can use on this host (memory, pids). */
  static available(): { memory: boolean; pids: boolean } {
    if (SandboxCgroup.disabled) return { memory: false, pids: false };
    const h = hierarchies();
    return { memory: h.has('memory'), pids: h.has('pids') };
  }

  /**
   * create makes the cgroup for one run with the limits given; controllers kiln cannot use are
   * left out (see `available()`), and undefined means there is nothing to bound with a cgroup.
   * Throws when a controller that is available refuses the limit (never silently unbounded).
   */
  static create(limits: CgroupLimits): SandboxCgroup | undefined {
    const p = SandboxCgroup.#plan(limits);
    if (p === undefined) return undefined;
    try {
      for (const step of p.steps) {
        if (step.mkdir) mkdirSync(step.path);
        else if (!step.ifExists || existsSync(step.path)) writeFileSync(step.path, step.value);
      }
    } catch (e) {
      void p.cgroup.remove();
      throw e;
    }
    return p.cgroup;
  }

  /**
   * createInBackground is create() through the thread pool: making a memory cgroup took 10-35 ms
   * of kiln's main thread on a loaded host. The cgroup (what it bounds is known from the plan) is
   * returned at once; `made` settles once its directories and limits are written (and rejects,
   * having removed what was made, when they could not be). Undefined: nothing to bound.
   */
  static createInBackground(
    limits: CgroupLimits,
  ): { cgroup: SandboxCgroup; made: Promise<void> } | undefined {
    const p = SandboxCgroup.#plan(limits);
    if (p === undefined) return undefined;
    const made = (async () => {
      try {
        for (const step of p.steps) {
          if (step.mkdir) await mkdir(step.path);
          else if (
            !step.ifExists ||
            (await access(step.path).then(
              () => true,
              () => false,
            ))
          )
            await writeFile(step.path, step.value);
        }
      } catch (e) {
        void p.cgroup.remove();
        throw e;
      }
    })();
    made.catch(() => {});
    return { cgroup: p.cgroup, made };
  }

  /** The directories and limit files of a new cgroup for `limits`, in the order to make them. */
  static #plan(limits: CgroupLimits):
    | {
        cgroup: SandboxCgroup;
        steps: (
          | { mkdir: true; path: string }
          | { mkdir?: false; path: string; value: string; ifExists?: boolean }
        )[];
      }
    | undefined {
    if (SandboxCgroup.disabled) return undefined;
    const h = hierarchies();
    const wanted: Controller[] = [];
    if (limits.memoryBytes !== undefined && h.has('memory')) wanted.push('memory');
    if (limits.processes !== undefined && h.has('pids')) wanted.push('pids');
    if (wanted.length === 0) return undefined;
    const name = `${PREFIX}${process.pid}-${++seq}`;
    const dirs = new Map<Controller, { dir: string; v2: boolean }>();
    const steps: (
      | { mkdir: true; path: string }
      | { mkdir?: false; path: string; value: string; ifExists?: boolean }
    )[] = [];
    for (const c of wanted) {
      const parent = h.get(c)!;
      const dir = path.join(parent.dir, name);
      if (![...dirs.values()].some((d) => d.dir === dir)) steps.push({ mkdir: true, path: dir });
      dirs.set(c, { dir, v2: parent.v2 });
      if (c === 'memory') {
        const n = String(limits.memoryBytes);
        if (parent.v2) {
          steps.push({ path: path.join(dir, 'memory.max'), value: n });
          // Swap would let the sandbox grow past the bound; and the whole tree dies together.
          steps.push({ path: path.join(dir, 'memory.swap.max'), value: '0', ifExists: true });
          steps.push({ path: path.join(dir, 'memory.oom.group'), value: '1', ifExists: true });
        } else {
          steps.push({ path: path.join(dir, 'memory.limit_in_bytes'), value: n });
          // memory+swap: without it the sandbox could swap out past the bound (when swap exists).
          steps.push({ path: path.join(dir, 'memory.memsw.limit_in_bytes'), value: n, ifExists: true });
        }
      } else {
        steps.push({ path: path.join(dir, 'pids.max'), value: String(limits.processes) });
      }
    }
    return { cgroup: new SandboxCgroup(dirs, limits), steps };
  }

  /** Whether this cgroup bounds memory / processes. */
  get boundsMemory(): boolean {
    return this.#dirs.has('memory');
  }
  get boundsProcesses(): boolean {
    return this.#dirs.has('pids');
  }

  /**
   * joinInBackground moves a process (and so everything it starts afterwards) into the cgroup, off
   * kiln's main thread: the write waits for an RCU grace period in the kernel (10-25 ms), which is
   * why standby.ts places processes ahead of need.
   */
  async joinInBackground(pid: number): Promise<void> {
    const done = new Set<string>();
    for (const { dir } of this.#dirs.values()) {
      if (done.has(dir)) continue;
      await writeFile(path.join(dir, 'cgroup.procs'), String(pid));
      done.add(dir);
    }
  }

  /** pids lists the processes in the cgroup now. */
  pids(): number[] {
    const out = new Set<number>();
    for (const { dir } of this.#dirs.values()) {
      try {
        for (const l of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n'))
          if (l !== '') out.add(Number(l));
      } catch {
        // Removed already.
      }
    }
    return [...out];
  }

  /** kill SIGKILLs every process in the cgroup (stopped ones too: SIGKILL needs no wake-up). */
  kill(): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }

  /** report reads the kernel's counters: OOM kills and refused forks. */
  report(): CgroupReport {
    const mem = this.#dirs.get('memory');
    const pids = this.#dirs.get('pids');
    let oomKilled = false;
    if (mem) {
      oomKilled = mem.v2
        ? readCounter(path.join(mem.dir, 'memory.events'), 'oom_kill') > 0
        : readCounter(path.join(mem.dir, 'memory.oom_control'), 'oom_kill') > 0;
    }
    const processLimitHit = pids ? readCounter(path.join(pids.dir, 'pids.events'), 'max') > 0 : false;
    return { oomKilled, processLimitHit };
  }

  /**
   * remove deletes the cgroup. Processes of a sandbox whose init has exited are being killed by
   * the kernel; wait a little for them, then SIGKILL what is left, then give up quietly (a later
   * kiln sweeps it).
   */
  /** removeLater starts remove() without waiting for it (settleCgroups waits). */
  removeLater(): void {
    const p = this.remove().finally(() => removing.delete(p));
    removing.add(p);
  }

  async remove(): Promise<void> {
    const dirs = [...new Set([...this.#dirs.values()].map((d) => d.dir))];
    for (let attempt = 0; attempt < 50 && dirs.length > 0; attempt++) {
      for (let i = dirs.length - 1; i >= 0; i--) {
        try {
          rmdirSync(dirs[i]!);
          dirs.splice(i, 1);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') dirs.splice(i, 1);
        }
      }
      if (dirs.length === 0) return;
      if (attempt === 5) this.kill();
      await sleep(attempt < 10 ? 2 : 20);
    }
  }
}
