/**
 * The sandbox's view of its own mounts, without host paths.
 *
 * Inside a bwrap sandbox, /proc/self/mountinfo shows, for each bind mount, its "root": the path of
 * the source *within the source's filesystem* (e.g. `/var/cache/kiln/rootfs/sha256-…`,
 * `/tmp/kiln-build-…/layers`, a user name under /home). No bind can hide it: it is the path of the
 * mounted dentry. A mount that is the root of its own filesystem shows `/`. So before bwrap
 * starts, a small wrapper (`unshare --user --map-root-user --mount`, as the sandbox's host uid)
 * mounts, in a mount namespace of its own, an overlayfs over every directory the sandbox binds:
 *
 * - read-only sources: `lowerdir=.:/proc/self/fd/9` (cwd = the source; fd 9 an empty tmpfs
 *   mounted in the wrapper's namespace only), mounted on the source path itself;
 * - writable sources: `lowerdir=/proc/self/fd/9,upperdir=.,workdir=../.kiln-ovl-RAND`: every
 *   write goes straight to the real directory (the upper layer), owned as before.
 *
 * bwrap then binds exactly the same paths, now overlay roots: mountinfo shows `/` (or a path inside
 * the rootfs for a source below another, e.g. `/cnb/buildpacks`), and overlayfs's options show the
 * strings given (`.`, `/proc/self/fd/9`, `../.kiln-ovl-…`), never a host path. A source whose
 * overlay cannot be mounted (an upper filesystem overlayfs refuses) keeps the plain bind: the build
 * works, only that path shows. Sources that are files (resolv.conf, a CA bundle) keep their paths.
 *
 * bwrap's own options go through `--args FD` (a pipe): /proc/1/cmdline in the sandbox is bwrap's
 * argv, which would otherwise list every host path it binds. Measured cost: see bench/sandbox.ts.
 */
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { statIfExists } from '../internal/fs.ts';
import { type HostCommand, nextFd } from './_child.ts';
import { beforeSettling } from './cgroup.ts';
import { searchableByOthers } from './rootfs-cache.ts';

/** bwrap options by how many values follow them (bubblewrap 0.8); anything else: left as is. */
const ARITY: Readonly<Record<string, number>> = Object.fromEntries([
  ...[
    '--unshare-all',
    '--share-net',
    '--unshare-user',
    '--unshare-user-try',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-net',
    '--unshare-uts',
    '--unshare-cgroup',
    '--unshare-cgroup-try',
    '--disable-userns',
    '--assert-userns-disabled',
    '--clearenv',
    '--new-session',
    '--die-with-parent',
    '--as-pid-1',
  ].map((o) => [o, 0]),
  ...[
    '--userns',
    '--userns2',
    '--pidns',
    '--uid',
    '--gid',
    '--hostname',
    '--chdir',
    '--unsetenv',
    '--lock-file',
    '--sync-fd',
    '--remount-ro',
    '--exec-label',
    '--file-label',
    '--proc',
    '--dev',
    '--tmpfs',
    '--mqueue',
    '--dir',
    '--seccomp',
    '--add-seccomp-fd',
    '--block-fd',
    '--userns-block-fd',
    '--info-fd',
    '--json-status-fd',
    '--cap-add',
    '--cap-drop',
    '--perms',
    '--size',
  ].map((o) => [o, 1]),
  ...[
    '--setenv',
    '--bind',
    '--bind-try',
    '--dev-bind',
    '--dev-bind-try',
    '--ro-bind',
    '--ro-bind-try',
    '--bind-fd',
    '--ro-bind-fd',
    '--file',
    '--bind-data',
    '--ro-bind-data',
    '--symlink',
    '--chmod',
  ].map((o) => [o, 2]),
]);

/** Candidates for the empty lower layer's mount point (only in the wrapper's mount namespace). */
const EMPTY_AT = ['/dev/shm', '/mnt', '/media', '/srv', '/run'];

const WRITABLE_BINDS = new Set(['--bind', '--bind-try']);
const READONLY_BINDS = new Set(['--ro-bind', '--ro-bind-try']);

/** A command ready to run, and what to remove after it ran. */
export interface ViewPlan {
  readonly cmd: HostCommand;
  cleanup(): Promise<void>;
}

// The wrapper: $1 is where to mount the empty lower layer (a tmpfs over a directory no source is
// under, in this private mount namespace only; overlayfs refuses a detached one), $2 how many
// (mode, source, workdir) triples follow, then the command. Every failure falls back to the plain
// bind. fd 9 is closed before bwrap starts (no host directory fd reaches the sandbox), and the
// shell's PWD/OLDPWD are dropped (bwrap's environment is readable in the sandbox as /proc/1/environ).
const SCRIPT = [
  'mount -t tmpfs -o size=4k,mode=0555 kiln "$1" && exec 9<"$1"',
  'n=$2; shift 2',
  'while [ "$n" -gt 0 ]; do',
  '  if cd -- "$2" 2>/dev/null; then',
  '    if [ "$1" = rw ]; then o="lowerdir=/proc/self/fd/9,upperdir=.,workdir=../$3"; else o="ro,lowerdir=.:/proc/self/fd/9"; fi',
  '    mount -t overlay overlay -o "$o" -- "$2" 2>/dev/null',
  '  fi',
  '  shift 3; n=$((n-1))',
  'done',
  'cd / && exec 9<&-',
  'unset OLDPWD PWD',
  'exec "$@"',
].join('\n');

/**
 * neutralView wraps the bwrap command in `cmd` as described above. `bwrap` is the binary name in
 * the command line; `owner` the host uid:gid bwrap runs as (writable overlays' work dirs belong
 * to it). Commands it does not understand (no bwrap, an unknown option) are returned unchanged.
 */
export async function neutralView(
  cmd: HostCommand,
  opts: {
    bwrap: string;
    owner?: { uid: number; gid: number };
    unshare?: string;
    /** The compiled helper (default: dist/mountview/kiln-mountview when usable); null: the shell script. */
    helper?: string | null;
  },
): Promise<ViewPlan> {
  const line = [cmd.file, ...cmd.args];
  const at = line.indexOf(opts.bwrap);
  const unchanged: ViewPlan = { cmd, cleanup: async () => {} };
  if (at < 0) return unchanged;
  const bwrapArgs = line.slice(at + 1);
  const sep = optionsEnd(bwrapArgs);
  if (sep === undefined) return unchanged;
  const options = bwrapArgs.slice(0, sep);
  const command = bwrapArgs.slice(sep + 1);

  // Directory sources, shortest first: one below an overlaid source is seen through that overlay.
  const sources = new Map<string, 'ro' | 'rw'>();
  for (let i = 0; i < options.length; i++) {
    const o = options[i]!;
    if (READONLY_BINDS.has(o) || WRITABLE_BINDS.has(o)) {
      const src = path.resolve(options[i + 1]!);
      const mode = WRITABLE_BINDS.has(o) ? 'rw' : 'ro';
      if (sources.get(src) !== 'rw') sources.set(src, mode);
    }
    i += ARITY[o] ?? 0;
  }
  // Where the empty lower layer is mounted: an existing directory that is no source's ancestor.
  const emptyAt = EMPTY_AT.find(
    (c) => existsSync(c) && ![...sources.keys()].some((s) => s === c || s.startsWith(`${c}/`)),
  );
  if (emptyAt === undefined) sources.clear();
  const covered: string[] = [];
  const triples: string[] = [];
  const workDirs: WorkDir[] = [];
  for (const [src, mode] of [...sources].sort((a, b) => a[0].length - b[0].length)) {
    if (src === '/' || covered.some((c) => src.startsWith(`${c}/`))) continue;
    // Synchronous: a few system calls each, cheaper than a round trip through the thread pool
    // on a busy host (this is on every sandboxed process's path).
    if (!statSync(src, { throwIfNoEntry: false })?.isDirectory()) continue;
    let work = '-';
    if (mode === 'rw') {
      // overlayfs needs a work dir on the upper's filesystem, owned by the mounter.
      const taken = takeWorkDir(path.dirname(src), opts.owner);
      // None: that source keeps its plain bind (as when the overlay cannot be mounted).
      if (taken === undefined) continue;
      workDirs.push(taken);
      work = path.basename(taken.dir);
    }
    covered.push(src);
    triples.push(mode, src, work);
  }

  const argsFd = nextFd(cmd);
  // The wrapper's shell addresses single-digit fds only, and uses 9 itself.
  if (argsFd >= 9) triples.length = 0;
  const data = Buffer.from(options.map((a) => `${a}\0`).join(''));
  const bwrapLine = [opts.bwrap, '--args', String(argsFd), '--', ...command];
  const helper = opts.helper === undefined ? await defaultHelper() : opts.helper;
  const wrapped =
    triples.length === 0
      ? bwrapLine
      : helper
        ? [helper, emptyAt ?? '/', String(triples.length / 3), ...triples, ...bwrapLine]
        : [
            opts.unshare ?? 'unshare',
            '--user',
            '--map-root-user',
            '--mount',
            '--',
            '/bin/sh',
            '-c',
            SCRIPT,
            'sh',
            emptyAt ?? '/',
            String(triples.length / 3),
            ...triples,
            ...bwrapLine,
          ];
  const all = [...line.slice(0, at), ...wrapped];
  return {
    cmd: {
      ...cmd,
      file: all[0]!,
      args: all.slice(1),
      dataFds: [...(cmd.dataFds ?? []), data],
    },
    async cleanup() {
      // The run is over (its namespaces, and with them its overlays, are gone): its work dirs
      // serve the next run's overlays of sources beside them (settleCgroups removes them).
      for (const d of workDirs) releaseWorkDir(d);
    },
  };
}

/** An overlay work dir of kiln's: `dir` beside the sources it serves, owned by `owner`. */
interface WorkDir {
  readonly dir: string;
  readonly key: string;
}

/**
 * Work dirs kept for a run that is known to come (Executor.prepare), by parent directory and owner.
 * A build's buildpack processes mount the same writable sources one after the other (/workspace,
 * the build HOME, and /layers/<id> beside the other buildpacks' layer dirs): the next run reuses
 * the work dirs the previous one released instead of making new ones and removing the old (a mkdir
 * and chown on kiln's main thread before every sandbox, and a recursive removal after it; on ext4
 * without a journal each new inode also scans past the recently deleted ones). Only as many as the
 * prepared runs will take are kept; every other work dir is removed right after its run, as before.
 * overlayfs empties its `work` dir itself at every mount, and a work dir is only ever in one run's
 * hands (taken, then released once that run's processes and namespaces are gone), so no two
 * mounted overlays share one.
 */
const spareWorkDirs = new Map<string, string[]>();
/** How many work dirs per key the prepared runs will take (bounded: a prepared run may never come). */
const expectedWorkDirs = new Map<string, number>();
const MAX_EXPECTED = 16;
/** Work dir removals in progress (cleanup does not wait for them; settleCgroups does). */
const removingWorkDirs = new Set<Promise<void>>();

function workDirKey(parent: string, owner: { uid: number; gid: number } | undefined): string {
  return `${owner ? `${owner.uid}:${owner.gid}` : '-'}\0${parent}`;
}

/**
 * expectWorkDirs notes that a run with these writable mount sources, run as `owner`, is coming
 * (BubblewrapExecutor.prepare): work dirs released meanwhile for the same places are kept for it.
 */
export function expectWorkDirs(
  writableSources: readonly string[],
  owner?: { uid: number; gid: number },
): void {
  for (const src of writableSources) {
    const key = workDirKey(path.dirname(path.resolve(src)), owner);
    expectedWorkDirs.set(key, Math.min(MAX_EXPECTED, (expectedWorkDirs.get(key) ?? 0) + 1));
  }
}

/** takeWorkDir hands out a work dir beside `parent`'s sources for `owner`: a spare one or a new one. */
function takeWorkDir(parent: string, owner: { uid: number; gid: number } | undefined): WorkDir | undefined {
  const key = workDirKey(parent, owner);
  const expected = expectedWorkDirs.get(key) ?? 0;
  if (expected > 1) expectedWorkDirs.set(key, expected - 1);
  else expectedWorkDirs.delete(key);
  const spare = spareWorkDirs.get(key) ?? [];
  for (let dir = spare.pop(); dir !== undefined; dir = spare.pop()) {
    // Still as kiln made it (a build's directory removed since takes its work dirs along).
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (
      st?.isDirectory() &&
      (st.mode & 0o7777) === 0o700 &&
      (owner === undefined || (st.uid === owner.uid && st.gid === owner.gid))
    )
      return { dir, key };
  }
  const dir = path.join(parent, `.kiln-ovl-${randomBytes(6).toString('hex')}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch {
    return undefined;
  }
  if (owner) chownSync(dir, owner.uid, owner.gid);
  return { dir, key };
}

/** releaseWorkDir keeps `w` for a prepared run that will want one there, else removes it. */
function releaseWorkDir(w: WorkDir): void {
  const spare = spareWorkDirs.get(w.key) ?? [];
  if (spare.length < (expectedWorkDirs.get(w.key) ?? 0)) {
    spare.push(w.dir);
    spareWorkDirs.set(w.key, spare);
    return;
  }
  // In the background: right after a sandbox the removal took 1-40 ms on a loaded host (the
  // overlay's teardown), on every buildpack process's path. A failure must not hide a command's
  // result; the directory it is in (a build's work dir) is removed anyway.
  const p = rm(w.dir, { recursive: true, force: true })
    .catch(() => {})
    .finally(() => removingWorkDirs.delete(p));
  removingWorkDirs.add(p);
}

/** settleCgroups removes the spare work dirs and waits for the removals under way. */
beforeSettling(async () => {
  expectedWorkDirs.clear();
  const spare = [...spareWorkDirs.values()].flat();
  spareWorkDirs.clear();
  for (const dir of spare) releaseWorkDir({ dir, key: '' });
  while (removingWorkDirs.size > 0) await Promise.all([...removingWorkDirs]);
});

/** The repository's build of src/sandbox/mountview/mountview.c (scripts/build.d/mountview.sh). */
export const DEFAULT_HELPER = fileURLToPath(new URL('../../dist/mountview/kiln-mountview', import.meta.url));

let helperProbe: Promise<string | null> | undefined;

/**
 * The helper when it exists and the sandbox's host uid can run it (it is started as that uid, so
 * every directory above it must be searchable by others); else null (the shell script is used).
 */
function defaultHelper(): Promise<string | null> {
  helperProbe ??= (async () => {
    const st = await statIfExists(DEFAULT_HELPER);
    if (!st?.isFile() || (st.mode & 0o001) === 0) return null;
    return (await searchableByOthers(path.dirname(DEFAULT_HELPER))) ? DEFAULT_HELPER : null;
  })();
  return helperProbe;
}

/** Index of the `--` ending bwrap's options, or undefined when an option is not known. */
function optionsEnd(args: readonly string[]): number | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return i;
    const n = ARITY[a];
    if (n === undefined) return undefined;
    i += n;
  }
  return undefined;
}
