import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, chown, mkdir, mkdtemp, readdir, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../internal/errors.ts';
import { isDirInRoot, readTextInRootIfExists, UntrustedFileError } from '../internal/safe-read.ts';
import type { SourceListing } from '../layers/source-listing.ts';
import { chownTree } from '../lifecycle/restore.ts';
import type { Mount } from '../sandbox/executor.ts';
import type { HostIds } from '../sandbox/identity.ts';
import { copyAppSource } from './app-source.ts';
import { BUILDER } from './builder-facts.ts';
import { type SourceFilter, sourceFilter } from './source-filter.ts';

// The build's workspace on the host: a temp dir per build (`kiln-build-<host>-<pid>-*`, removed at
// the end whatever happens; a later build removes those of dead pids) holding the app copy,
// `<layers>`, `<platform>` and the build user's HOME, each with an explicit mode (never the umask)
// and owned by the build user where it writes. In place (`--executor host`) the real CNB
// directories are used instead.

/** The platform's directories on the host (the spec's `/workspace`, `/layers`, `/platform`, `/cnb/buildpacks`). */
export interface HostDirs {
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly buildpacks: string;
}

/** Who kiln is and who the build user is on the host. */
export interface WorkspaceIdentity {
  /** kiln runs as root (it can chown, and must give the build user what it writes). */
  readonly root: boolean;
  readonly owner: HostIds;
}

/** One build's directories. */
export interface Workspace {
  /** The temp dir of this build (removed by `remove`). */
  readonly work: string;
  readonly appDir: string;
  readonly layersDir: string;
  readonly platformDir: string;
  remove(): Promise<void>;
}

/** A short tag of a host, so temp dirs of builds on other hosts sharing the dir are left alone. */
function hostTag(hostName: string): string {
  return createHash('sha256').update(hostName).digest('hex').slice(0, 8);
}

/** Removes temp build dirs of this host's builds whose process is gone (SIGKILL leaves them behind). */
async function sweepDeadWorkDirs(tmpDir: string, tag: string): Promise<void> {
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    // Only this host's (pid namespace's) builds: another container's pids mean nothing here.
    const m = /^kiln-build-([0-9a-f]{8})-(\d+)-/.exec(name);
    if (!m || m[1] !== tag || Number(m[2]) === process.pid) continue;
    try {
      process.kill(Number(m[2]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH')
        await rm(path.join(tmpDir, name), { recursive: true, force: true });
    }
  }
}

/** mkdirMode makes one directory with exactly `mode` (mkdir's own mode is filtered by the umask). */
async function mkdirMode(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { mode });
  await chmod(dir, mode);
}

/**
 * openWorkspace makes this build's temp dir under `tmpDir` (named after `hostName` and kiln's pid)
 * with `<app>`, `<layers>` and `<platform>` in it, or uses `hostDirs` in place.
 */
export async function openWorkspace(
  tmpDir: string,
  hostName: string,
  hostDirs?: HostDirs,
): Promise<Workspace> {
  await mkdir(tmpDir, { recursive: true });
  const tag = hostTag(hostName);
  await sweepDeadWorkDirs(tmpDir, tag);
  // The pid in the name lets a later build remove what a killed one left behind.
  const work = await mkdtemp(path.join(tmpDir, `kiln-build-${tag}-${process.pid}-`));
  const remove = () => rm(work, { recursive: true, force: true });
  try {
    // Explicit modes: the umask must not leak into layers (and the build user must reach them).
    await chmod(work, 0o755);
    const layersDir = hostDirs?.layers ?? path.join(work, 'layers');
    const appDir = hostDirs?.app ?? path.join(work, 'workspace');
    const platformDir = hostDirs?.platform ?? path.join(work, 'platform');
    if (!hostDirs) for (const d of [layersDir, appDir, platformDir]) await mkdirMode(d, 0o755);
    return { work, appDir, layersDir, platformDir, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}

/**
 * copyApp puts the app into `<app>`, owned by the build user, and returns the copy's listing
 * (for the detect memo). `--path` already the app dir (a CI job checked out into /workspace) is
 * built in place (undefined listing): the build user must own it, as the CNB prepare step does.
 */
export async function copyApp(
  w: Workspace,
  from: string,
  filter: SourceFilter | undefined,
  id: WorkspaceIdentity,
  inPlace: boolean,
): Promise<SourceListing | undefined> {
  const { owner, root } = id;
  if (inPlace && (await realpath(from)) === (await realpath(w.appDir))) {
    if (root) await chownTree(w.appDir, owner.uid, owner.gid);
    return undefined;
  }
  const copied = await copyAppSource(
    from,
    w.appDir,
    filter ?? sourceFilter(undefined, undefined),
    root ? { uid: owner.uid, gid: owner.gid } : {},
  );
  await chmod(w.appDir, 0o755);
  if (root) await chown(w.appDir, owner.uid, owner.gid);
  return copied.listing;
}

/**
 * buildHome gives buildpacks the build user's HOME as a container runtime (and so the reference
 * lifecycle's build container) does: the image's HOME, else the user's /etc/passwd entry. The spec
 * requires a writable HOME of build images, and buildpacks keep settings and caches under `~`;
 * in the sandbox the image is read-only, so an empty per-build directory owned by the build user
 * is bound over it (discarded with the build, never exported). Paths that leave the rootfs
 * through symlinks are ignored. Without mounts (`mount` false) HOME is only named.
 */
export async function buildHome(
  rootfs: string,
  env: Readonly<Record<string, string>>,
  uid: number,
  id: WorkspaceIdentity,
  work: string,
  mount: boolean,
): Promise<{ home?: string; mount?: Mount }> {
  // The image's files are the builder's: /etc/passwd is read inside the rootfs with in-root link
  // resolution (images link it legitimately), and HOME must be a directory inside the rootfs.
  const image = { what: "the build image's root filesystem", shown: '/', follow: 'in-root' } as const;
  let home = env.HOME;
  if (home === undefined) {
    const passwd = readTextInRootIfExists(rootfs, 'etc/passwd', image);
    const line = passwd?.split('\n').find((l) => l.split(':')[2] === String(uid));
    home = line?.split(':')[5] || '/';
  }
  // A HOME reached through a link is not bound over: the bind would land elsewhere.
  const homeIsDir = () => {
    try {
      return isDirInRoot(rootfs, home, BUILDER);
    } catch (e) {
      if (e instanceof UntrustedFileError) return false;
      throw e;
    }
  };
  if (!mount || !home.startsWith('/') || path.normalize(home) === '/' || !homeIsDir()) return { home };
  const dir = path.join(work, 'home');
  await mkdirMode(dir, 0o755);
  if (id.root) await chown(dir, id.owner.uid, id.owner.gid);
  return { home, mount: { src: dir, dst: path.normalize(home), readonly: false } };
}

/**
 * checkHostDirs refuses, in one line naming the directory, CNB directories the in-place build
 * cannot use: app, layers and platform must be writable directories, buildpacks a directory.
 */
export async function checkHostDirs(d: HostDirs): Promise<void> {
  const dirs = [
    [d.app, 'CNB_APP_DIR', true],
    [d.layers, 'CNB_LAYERS_DIR', true],
    [d.platform, 'CNB_PLATFORM_DIR', true],
    [d.buildpacks, 'CNB_BUILDPACKS_DIR', false],
  ] as const;
  for (const [dir, name, writable] of dirs) {
    let why: string | undefined;
    try {
      if (!(await stat(dir)).isDirectory()) why = 'not a directory';
      else if (writable) await access(dir, constants.W_OK);
    } catch (e) {
      why =
        (e as NodeJS.ErrnoException).code === 'ENOENT'
          ? 'does not exist'
          : `not writable (${(e as NodeJS.ErrnoException).code})`;
    }
    if (why)
      throw new UsageError(
        `--executor host: ${dir} (${name}) ${why}: kiln builds in place inside the build image and needs ${writable ? 'a writable directory' : "the builder's buildpacks"} there (set ${name} to another one)`,
      );
  }
}
