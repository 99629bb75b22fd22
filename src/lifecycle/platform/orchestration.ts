import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, chown, cp, mkdir, mkdtemp, readdir, realpath, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Order } from '../../cnb/buildpack-toml.ts';
import { readBuildpackToml } from '../../cnb/buildpack-toml.ts';
import { ExitCode, KilnError } from '../../cnb/exit-codes.ts';
import type { GroupElement } from '../../cnb/group-toml.ts';
import { escapeId } from '../../cnb/ids.ts';
import { isDir } from '../../cnb/launch-env.ts';
import type { ProjectMetadata } from '../../cnb/lifecycle-metadata.ts';
import { readOrderToml } from '../../cnb/order-toml.ts';
import { writeReportToml } from '../../cnb/report-toml.ts';
import { readRunToml } from '../../cnb/run-toml.ts';
import type { LauncherInfo } from '../../launcher/index.ts';
import { extract } from '../../layers/extract.ts';
import { BUILDPACKAGE_LIMITS, ExtractBudget, type ExtractLimits } from '../../layers/extract-limits.ts';
import {
  inRoot,
  isDirInRoot,
  lstatInRoot,
  readTextInRootIfExists,
  statInRoot,
  UntrustedFileError,
} from '../../layers/safe-read.ts';
import { type Digest, sha256 } from '../../oci/digest.ts';
import type { Image } from '../../oci/image.ts';
import { copyAppSource } from '../../platform/app-source.ts';
import { writePlatformDir } from '../../platform/platform-dir.ts';
import { type SourceFilter, sourceFilter } from '../../platform/source-filter.ts';
import type { Executor, Limits, Mount } from '../../sandbox/executor.ts';
import { HostExecutor } from '../../sandbox/host.ts';
import { type HostIds, type IdLease, leaseHostIds } from '../../sandbox/identity.ts';
import {
  type AllowedHostPort,
  type NetworkMode,
  type OpenNetwork,
  openNetwork,
} from '../../sandbox/network.ts';
import { type PrunePolicy, RootfsCache } from '../../sandbox/rootfs-cache.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../sbom/cyclonedx.ts';
import { SPDX_MEDIA_TYPE } from '../../sbom/spdx.ts';
import { sbomBytes, sbomsOfImage } from '../../stack/sbom.ts';
import type { ImageStore } from '../../store/store.ts';
import { type Analysis, analyze, analyzedPathIn, type PreviousImage } from '../analyze.ts';
import { build } from '../build.ts';
import { BuildpackStore } from '../buildpack-store.ts';
import { type CacheSnapshot, type LayerCache, VolumeCache } from '../cache.ts';
import { saveCache } from '../cache-save.ts';
import type { Deadline } from '../deadline.ts';
import { detect } from '../detect.ts';
import { DetectMemo } from '../detect-memo.ts';
import { exportImage } from '../export.ts';
import type { ReuseContext, ReuseStats } from '../layer-reuse.ts';
import type { PhaseLogger, PhaseOptions } from '../phase-context.ts';
import { chownTree, restore } from '../restore.ts';
import { resolveRunTarget } from '../target.ts';

// The platform: one `kiln build` from source to image. It runs the phases in the order of
// Platform API 0.7+ (analyze, detect, restore, build, export, cache) in-process, with buildpacks in
// the sandbox, and owns everything around them: the temp workspace (removed at the end whatever
// happens), ownership of the directories the build user writes, the cache lock, and the order of
// writes that keeps the previous image and the cache intact when a build fails or is killed (the
// image is tagged only after all its blobs are written; the cache commits by rename).

/** The log a build writes (the CLI's Logger fits). */
export interface BuildLog extends PhaseLogger {
  phase(name: string): void;
}

/** Where images come from and go to: implemented by the CLI over its transports. */
export interface ImageAccess {
  /** Reads an image; undefined when it does not exist (first build). */
  findImage(name: string): Promise<{ image: Image; reference: string } | undefined>;
  /** Reads the run image (store first, then registry). Throws when it cannot be read. */
  runImage(name: string): Promise<{ image: Image; reference: string }>;
  /** Writes the app image to the destination and every extra tag; returns the names written. */
  writeImage(image: Image): Promise<{ digest: Digest; names: readonly string[] }>;
}

/** The builder to build with. */
export interface BuilderInput {
  readonly image: Image;
  readonly name: string;
}

/** Everything one build needs, resolved by the CLI. */
export interface BuildRequest {
  /** The image name (for the previous image lookup and messages). */
  readonly imageName: string;
  /** `--previous-image`, default the image itself. */
  readonly previousImage?: string;
  readonly appDir: string;
  /** Which app files go into the build (project.toml include/exclude); default all. */
  readonly filter?: SourceFilter;
  readonly builder: BuilderInput;
  /**
   * `--buildpack` values, the group to run instead of the builder's order: `id[@version]` of a
   * buildpack the builder has, a buildpack directory, or (through `openBuildpackage`) a
   * buildpackage image whose layers hold `/cnb/buildpacks/...`.
   */
  readonly buildpacks?: readonly string[];
  /** A buildpacks directory (`<escaped id>/<version>/`) to use instead of the builder's /cnb/buildpacks. */
  readonly extraBuildpacksDir?: string;
  /** project.toml `io.buildpacks.pre.group` / `post.group`: refs as for `buildpacks`, around every group. */
  readonly preBuildpacks?: readonly string[];
  readonly postBuildpacks?: readonly string[];
  /** Opens a buildpackage image named by a `--buildpack` value (undefined: not an image). */
  readonly openBuildpackage?: (ref: string) => Promise<Image | undefined>;
  /** `--run-image`, else the builder's first run image. */
  readonly runImage?: string;
  /** `<platform>/env` files (project.toml env, --env-file, --env). */
  readonly env: Readonly<Record<string, string>>;
  /** Extra process env for detect and build (proxies, CA variables) and mounts (bindings, CA). */
  readonly processEnv?: Readonly<Record<string, string>>;
  readonly extraMounts?: readonly Mount[];
  /**
   * Prepares `<platform>` itself (bindings, CA) when given; default: env files only. `stageDir`
   * is a kiln-private dir of this build (outside anything buildpacks see, exported or cached).
   */
  readonly preparePlatform?: (
    platformDir: string,
    uid: number,
    gid: number,
    rootfs: string,
    stageDir: string,
  ) => Promise<
    { readonly env: Readonly<Record<string, string>>; readonly mounts: readonly Mount[] } | undefined
  >;
  /**
   * Called after the build phase: writes an extra launch layer kiln itself contributes (e.g.
   * `--ca-certs-launch`), laid out like a buildpack's (`<layers>/<escaped id>/<layer>` + toml),
   * and returns that pseudo-buildpack's id; undefined when there is none.
   */
  readonly launchLayer?: (layersDir: string) => Promise<{ readonly id: string } | undefined>;
  readonly cacheDir: string;
  /** A cache to use instead of the directory (e.g. `--cache-image`'s ImageCache). */
  readonly layerCache?: LayerCache;
  readonly clearCache: boolean;
  readonly defaultProcess?: string;
  /** CNB_EXEC_ENV (`--exec-env`, Platform 0.15); default `production`. */
  readonly execEnv?: string;
  /** `isolated` (the default of the CLI), `none`, or `host`; see sandbox/network.ts. */
  readonly network: NetworkMode;
  /** `--allow-host`: host ports an isolated build may reach (nothing else of the host). */
  readonly allowHosts?: readonly AllowedHostPort[];
  readonly sbomOutputDir?: string;
  readonly reportOutputDir?: string;
  readonly project?: ProjectMetadata;
  readonly executor: Executor;
  /** Limits of every buildpack process (memory, disk budget, file size, processes); executor defaults otherwise. */
  readonly limits?: Limits;
  /** The whole build's time limit (`--timeout`), started by the caller; checked between phases too. */
  readonly deadline?: Deadline;
  /**
   * The host ids the build user is on the host (owner of the app, layers, platform and HOME dirs;
   * what its processes run as). Default, when kiln is root and sandboxes with bubblewrap: one
   * leased from kiln's subordinate range for this build (sandbox/identity.ts), so no real account
   * shares it. Otherwise CNB_USER_ID:CNB_GROUP_ID themselves.
   */
  readonly hostIds?: HostIds;
  /**
   * The real CNB directories to build in, in place, with the host executor (kiln runs inside the
   * build image: `/` is the build image, nothing is mounted and sandbox paths are these paths).
   * Undefined: a temp layout that the sandbox maps to the spec's paths.
   */
  readonly hostDirs?: HostDirs;
  /** kiln's cache of unpacked build rootfs trees. */
  readonly rootfsCacheDir: string;
  /** Bound applied to the rootfs cache after the builder is unpacked anew (default DEFAULT_ROOTFS_BOUND). */
  readonly rootfsCacheBound?: PrunePolicy;
  /** What the builder may unpack to (default ROOTFS_LIMITS: 20 GiB, 2M entries). */
  readonly rootfsLimits?: ExtractLimits;
  readonly launcher: LauncherInfo;
  /** Where new layer blobs are written (the local store's blobs). */
  readonly store: ImageStore;
  readonly images: ImageAccess;
  /** SOURCE_DATE_EPOCH or the default. */
  readonly epoch: number;
  readonly compression: 'gzip' | 'zstd';
  /** Parent of the temp build directory. */
  readonly tmpDir: string;
  readonly log: BuildLog;
  /** Test hook: called after each phase (e.g. to kill the process mid-export). */
  readonly onPhase?: (name: string) => void | Promise<void>;
}

/** The platform's directories on the host (the spec's `/workspace`, `/layers`, `/platform`, `/cnb/buildpacks`). */
export interface HostDirs {
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly buildpacks: string;
}

/** What a build produced. */
export interface BuildOutcome {
  readonly digest: Digest;
  readonly names: readonly string[];
  readonly stats: ReuseStats;
  readonly reused: readonly string[];
  readonly added: readonly string[];
  /** Milliseconds per phase, and the buildpacks' own time (detect + build processes). */
  readonly timings: Readonly<Record<string, number>>;
}

function envOf(env: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env ?? []) {
    const i = e.indexOf('=');
    if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

/**
 * buildHome gives buildpacks the build user's HOME as a container runtime (and so the reference
 * lifecycle's build container) does: the image's HOME, else the user's /etc/passwd entry. The spec
 * requires a writable HOME of build images, and buildpacks keep settings and caches under `~`;
 * in the sandbox the image is read-only, so an empty per-build directory owned by the build user
 * is bound over it (discarded with the build, never exported). Paths that leave the rootfs
 * through symlinks are ignored.
 */
async function buildHome(
  rootfs: string,
  env: Readonly<Record<string, string>>,
  uid: number,
  owner: HostIds,
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
  // A HOME reached through a link is not bound over (as before): the bind would land elsewhere.
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
  await mkdir(dir, { mode: 0o755 });
  await chmod(dir, 0o755);
  if (process.getuid?.() === 0) await chown(dir, owner.uid, owner.gid);
  return { home, mount: { src: dir, dst: path.normalize(home), readonly: false } };
}

/**
 * How a builder's own files are named in errors (`/cnb/order.toml`). They are read through
 * layers/safe-read inside the unpacked rootfs: a symlink there is refused, never followed.
 */
const BUILDER = { what: "the builder's root filesystem", shown: '/', exitCode: ExitCode.Failed } as const;

/** rethrowUntrusted lets a refused builder file fail the build; other read errors read as absent. */
function rethrowUntrusted(e: unknown): undefined {
  if (e instanceof UntrustedFileError) throw e;
  return undefined;
}

function parseBuildpackRef(ref: string): { id: string; version?: string } {
  const at = ref.lastIndexOf('@');
  return at > 0 ? { id: ref.slice(0, at), version: ref.slice(at + 1) } : { id: ref };
}

/**
 * resolveBuildpacks turns `--buildpack` values into a group. Ids name the builder's buildpacks;
 * directories and buildpackage images are added to a private copy of the builder's buildpacks
 * (the sandbox mounts one directory at /cnb/buildpacks), so the builder's rootfs stays untouched.
 */
async function resolveBuildpacks(
  r: BuildRequest,
  rootfs: string,
  work: string,
): Promise<{
  root: string;
  group?: { id: string; version?: string }[];
  pre: { id: string; version?: string }[];
  post: { id: string; version?: string }[];
}> {
  const builderRoot = r.extraBuildpacksDir ?? path.join(rootfs, 'cnb', 'buildpacks');
  // The builder's /cnb/buildpacks is mounted and copied below by path: it must be a directory
  // of the rootfs, not a link (to a host directory) that both would follow.
  if (!r.extraBuildpacksDir) statInRoot(rootfs, 'cnb/buildpacks', BUILDER);
  let root = builderRoot;
  const own = async () => {
    if (root !== builderRoot) return root;
    root = path.join(work, 'buildpacks');
    await mkdir(root, { mode: 0o755 });
    if (await isDir(builderRoot)) await cp(builderRoot, root, { recursive: true, verbatimSymlinks: true });
    return root;
  };
  let images = 0;
  const one = async (ref: string): Promise<{ id: string; version?: string }> => {
    if (
      await stat(path.join(ref, 'buildpack.toml')).then(
        () => true,
        () => false,
      )
    ) {
      const toml = await readBuildpackToml(path.join(ref, 'buildpack.toml'));
      const dst = path.join(await own(), escapeId(toml.buildpack.id), toml.buildpack.version);
      await rm(dst, { recursive: true, force: true });
      await cp(path.resolve(ref), dst, { recursive: true, verbatimSymlinks: true });
      await chmodTree(dst);
      return { id: toml.buildpack.id, version: toml.buildpack.version };
    }
    // After a directory: a buildpack the builder has, then a buildpackage image.
    const asId = parseBuildpackRef(ref);
    if (!/^\.\.?$/.test(asId.id) && lstatInRoot(builderRoot, escapeId(asId.id), BUILDER)?.isDirectory())
      return asId;
    const image = await r.openBuildpackage?.(ref);
    if (image) {
      const tmp = path.join(work, `bp-image-${images++}`);
      // Inert: the work dir is reachable by the build user; no setuid file may appear there.
      const limits = new ExtractBudget(`--buildpack ${ref}`, BUILDPACKAGE_LIMITS);
      for (const layer of await image.layers()) {
        limits.layer = String(await layer.digest());
        await extract(await layer.uncompressed(), tmp, { inert: true, special: 'skip', limits }).catch(
          async (e: unknown) => {
            await rm(tmp, { recursive: true, force: true });
            throw e;
          },
        );
      }
      const label = (await image.configFile()).config?.Labels?.['io.buildpacks.buildpackage.metadata'];
      const md = label ? (JSON.parse(label) as { id?: string; version?: string }) : {};
      if (!md.id)
        throw new KilnError(
          `--buildpack ${ref}: not a buildpackage (no io.buildpacks.buildpackage.metadata label)`,
          ExitCode.InvalidArgs,
        );
      // cp follows links on the way to its source: cnb/ or cnb/buildpacks of the package's layers
      // must be directories of the package, not links to a host directory.
      statInRoot(tmp, 'cnb/buildpacks', {
        what: 'the buildpackage',
        shown: ref,
        exitCode: ExitCode.InvalidArgs,
      });
      await cp(path.join(tmp, 'cnb', 'buildpacks'), await own(), { recursive: true, verbatimSymlinks: true });
      await chmodTree(root);
      return { id: md.id, ...(md.version ? { version: md.version } : {}) };
    }
    // A path (not an id) that holds no buildpack: say so now, not as a missing id during detect.
    const isRefDir = await isDir(ref);
    if (isRefDir || /^(\.{0,2}\/|~)/.test(ref)) {
      const what = isRefDir ? `no buildpack.toml in ${ref}` : 'no such directory or buildpackage';
      throw new KilnError(
        `--buildpack ${ref}: ${what} (expected a buildpack directory, id[@version], a .cnb file or a buildpackage image)`,
        ExitCode.InvalidArgs,
      );
    }
    return asId; // detect reports it as not found, naming it
  };
  const all = async (refs: readonly string[] | undefined) => {
    const out: { id: string; version?: string }[] = [];
    for (const ref of refs ?? []) out.push(await one(ref));
    return out;
  };
  const group = r.buildpacks?.length ? await all(r.buildpacks) : undefined;
  const pre = await all(r.preBuildpacks);
  const post = await all(r.postBuildpacks);
  // `root` last: resolving may have switched it to the private copy.
  return { root, ...(group ? { group } : {}), pre, post };
}

/** Buildpack files must be readable (and their dirs searchable) by the build user. */
async function chmodTree(dir: string): Promise<void> {
  const st = await stat(dir);
  await chmod(dir, st.isDirectory() || (st.mode & 0o111) !== 0 ? 0o755 : 0o644);
  if (!st.isDirectory()) return;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isSymbolicLink()) continue;
    await chmodTree(path.join(dir, e.name));
  }
}

/**
 * unpackBuilder unpacks the builder image once per digest (shared, read-only, inert: no setuid
 * bits or device nodes from the builder reach the host) and returns its root; a new unpack
 * applies the cache's bound (`bound`, default DEFAULT_ROOTFS_BOUND).
 */
export async function unpackBuilder(
  image: Image,
  cacheDir: string,
  bound?: PrunePolicy,
  limits?: ExtractLimits,
): Promise<string> {
  return new RootfsCache(cacheDir, {
    ...(bound ? { bound } : {}),
    ...(limits ? { limits } : {}),
  }).ensureImage(image, async (tar, dest, budget) => {
    await extract(tar, dest, { whiteouts: true, inert: true, special: 'skip', limits: budget });
  });
}

/** runBuild runs one build from source to image. */
export async function runBuild(r: BuildRequest): Promise<BuildOutcome> {
  // The host executor mounts nothing: the phase directories must be the real ones, in place.
  // Say so up front, not as a detect error of every buildpack.
  if (r.executor instanceof HostExecutor && !r.hostDirs)
    throw new KilnError(
      'kiln build with the host executor needs the real CNB directories (hostDirs): the temp layout exists only for the bubblewrap sandbox',
      ExitCode.InvalidArgs,
    );
  if (r.hostDirs) await checkHostDirs(r.hostDirs);
  if (r.executor instanceof HostExecutor && r.network === 'isolated')
    throw new KilnError(
      'the host executor cannot isolate the network (kiln already runs inside the build image): use --network host there, or --executor bwrap',
      ExitCode.InvalidArgs,
    );
  const timings: Record<string, number> = {};
  const time = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[name] = (timings[name] ?? 0) + performance.now() - t0;
    }
  };
  const phaseDone = async (name: string) => {
    // The deadline spans every phase: kiln's own steps end the build too once it has passed.
    const code = DEADLINE_EXIT[name];
    if (code !== undefined) r.deadline?.check(name.replace('-layers', ''), code);
    return r.onPhase?.(name);
  };

  const builderCfg = (await r.builder.image.configFile()).config ?? {};
  const builderEnv = envOf(builderCfg.Env);
  const uid = Number(builderEnv.CNB_USER_ID ?? '1000');
  const gid = Number(builderEnv.CNB_GROUP_ID ?? '1000');
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0)
    throw new KilnError(
      `builder ${r.builder.name}: CNB_USER_ID/CNB_GROUP_ID must name a non-root build user (got ${builderEnv.CNB_USER_ID}:${builderEnv.CNB_GROUP_ID})`,
      ExitCode.InvalidArgs,
    );
  // Buildpacks create their layers under the umask they inherit. Like the lifecycle's containers,
  // the build runs under 022 whatever the user's umask is: the same source must give the same image.
  const userUmask = process.umask(0o022);
  // The build user's host identity: leased for this build when kiln is root and sandboxes it.
  let lease: IdLease | undefined;
  try {
    if (!r.hostIds && process.getuid?.() === 0 && !(r.executor instanceof HostExecutor))
      lease = await leaseHostIds();
    const owner: HostIds = r.hostIds ?? lease ?? { uid, gid };
    return await buildWith(r, uid, gid, owner, builderEnv, time, phaseDone, timings);
  } finally {
    process.umask(userUmask);
    await lease?.release();
  }
}

async function buildWith(
  r: BuildRequest,
  uid: number,
  gid: number,
  owner: HostIds,
  builderEnv: Record<string, string>,
  time: <T>(name: string, fn: () => Promise<T>) => Promise<T>,
  phaseDone: (name: string) => Promise<void>,
  timings: Record<string, number>,
): Promise<BuildOutcome> {
  const { log } = r;
  const hostDirs = r.hostDirs;
  // In place, kiln runs inside the build image: its root is the build rootfs.
  const rootfs = hostDirs
    ? '/'
    : await time('builder', () =>
        unpackBuilder(r.builder.image, r.rootfsCacheDir, r.rootfsCacheBound, r.rootfsLimits),
      );

  await mkdir(r.tmpDir, { recursive: true });
  await sweepDeadWorkDirs(r.tmpDir);
  // The pid in the name lets a later build remove what a killed one left behind.
  const work = await mkdtemp(path.join(r.tmpDir, `kiln-build-${HOST_TAG}-${process.pid}-`));
  let snapshot: CacheSnapshot | undefined;
  let net: OpenNetwork | undefined;
  try {
    // Explicit modes: the umask must not leak into layers (and the build user must reach them).
    await chmod(work, 0o755);
    const layersDir = hostDirs?.layers ?? path.join(work, 'layers');
    const appDir = hostDirs?.app ?? path.join(work, 'workspace');
    const platformDir = hostDirs?.platform ?? path.join(work, 'platform');
    if (!hostDirs)
      for (const d of [layersDir, appDir, platformDir]) {
        await mkdir(d, { mode: 0o755 });
        await chmod(d, 0o755);
      }
    // The copied source's listing (undefined when built in place), for the detect memo.
    const appListing = await time('copy-app', async () => {
      const root = process.getuid?.() === 0;
      // `--path` already the app dir (a CI job checked out into /workspace): build it in place.
      // The build user must own it, as it owns a copied app (the CNB prepare step does the same).
      if (hostDirs && (await realpath(r.appDir)) === (await realpath(appDir))) {
        if (root) await chownTree(appDir, owner.uid, owner.gid);
        return undefined;
      }
      const copied = await copyAppSource(
        r.appDir,
        appDir,
        r.filter ?? sourceFilter(undefined, undefined),
        root ? { uid: owner.uid, gid: owner.gid } : {},
      );
      await chmod(appDir, 0o755);
      if (root) await chown(appDir, owner.uid, owner.gid);
      return copied.listing;
    });
    if (process.getuid?.() === 0) await chown(layersDir, owner.uid, owner.gid);
    let platformEnv: Readonly<Record<string, string>> = {};
    let platformMounts: readonly Mount[] = [];
    if (r.preparePlatform) {
      const inputs = await r.preparePlatform(
        platformDir,
        owner.uid,
        owner.gid,
        rootfs,
        path.join(work, 'platform-stage'),
      );
      platformEnv = inputs?.env ?? {};
      platformMounts = inputs?.mounts ?? [];
    } else await writePlatformDir(platformDir, { env: r.env, bindings: [] });
    const extraEnv = { ...platformEnv, ...(r.processEnv ?? {}) };
    const home = await buildHome(rootfs, builderEnv, uid, owner, work, !(r.executor instanceof HostExecutor));
    const extraMounts = [...(r.extraMounts ?? []), ...platformMounts, ...(home.mount ? [home.mount] : [])];
    const moved = hostDirs ? extraMounts.find((m) => m.src !== m.dst) : undefined;
    if (moved)
      throw new KilnError(
        `--executor host: ${moved.dst} would need ${moved.src} mounted over it (extra CA certificates, bindings) and in place kiln mounts nothing: put it in the build image, or use --executor bwrap`,
        ExitCode.InvalidArgs,
      );

    // ANALYZING
    log.phase('ANALYZING');
    let runMirrors: string[] = [];
    const analysis: Analysis = await time('analyze', async () => {
      const prevName = r.previousImage ?? r.imageName;
      let previous: PreviousImage | undefined;
      try {
        previous = await r.images.findImage(prevName);
      } catch (e) {
        log.warn(
          `Previous image ${prevName} could not be read (${(e as Error).message}): building without it`,
        );
      }
      const fromBuilder = r.runImage ? undefined : await defaultRunImage(rootfs, r.builder);
      const runName = r.runImage ?? fromBuilder!.image;
      runMirrors = await mirrorsOf(rootfs, runName);
      let run: { image: Image; reference: string };
      try {
        run = await r.images.runImage(runName);
      } catch (e) {
        throw new KilnError(`run image ${runName}: ${(e as Error).message}`, ExitCode.AnalyzeError, {
          cause: e,
        });
      }
      return analyze({
        ...(previous ? { previous } : {}),
        runImage: { image: run.image, reference: run.reference, name: runName },
        analyzedPath: analyzedPathIn(layersDir),
        log,
      });
    });
    await phaseDone('analyze');

    const resolved = await resolveBuildpacks(
      hostDirs ? { ...r, extraBuildpacksDir: hostDirs.buildpacks } : r,
      rootfs,
      work,
    );
    if (hostDirs && resolved.root !== hostDirs.buildpacks)
      throw new KilnError(
        `--executor host: buildpacks run from ${hostDirs.buildpacks} in place, so --buildpack directories, buildpackages and inline buildpacks cannot be added; use buildpacks the build image has (by id)`,
        ExitCode.InvalidArgs,
      );
    const buildpackStore = new BuildpackStore(resolved.root);
    // One network for every buildpack process of this build (detect and build), torn down below.
    net = await openNetwork(r.network, {
      allow: r.allowHosts ?? [],
      env: extraEnv,
      hostUid: process.getuid?.() ?? 0,
      tmpDir: work,
    });
    log.info(`Network: ${net.description}`);
    const target = await resolveRunTarget(analysis.target, rootfs);
    const phase: PhaseOptions = {
      buildpackStore,
      appDir,
      platformDir,
      layersDir,
      ...(isDirInRoot(rootfs, 'cnb/build-config', BUILDER)
        ? { buildConfigDir: path.join(rootfs, 'cnb', 'build-config') }
        : {}),
      executor: r.executor,
      rootfs,
      // In place, sandbox paths are the host paths and the plans go under the real /tmp.
      ...(hostDirs ? { sandboxPaths: hostDirs, scratchRoot: '/tmp' } : {}),
      network: net.network,
      target,
      ...(r.execEnv ? { execEnv: r.execEnv } : {}),
      logger: log,
      baseEnv: home.home ? { ...builderEnv, HOME: home.home } : builderEnv,
      // Not through baseEnv: the lifecycle allowlist would drop the CA variables.
      ...(Object.keys(net.env).length ? { extraEnv: net.env } : {}),
      uid,
      gid,
      hostIds: owner,
      ...(extraMounts.length ? { extraMounts } : {}),
      ...(r.limits ? { limits: r.limits } : {}),
      ...(r.deadline ? { deadline: r.deadline } : {}),
    } as PhaseOptions;

    // DETECTING
    log.phase('DETECTING');
    const baseOrder: Order = resolved.group
      ? [{ group: resolved.group.map((b) => ({ ...b, optional: false })) }]
      : (await readOrderToml(inRoot(rootfs, 'cnb/order.toml', BUILDER))).order;
    // project.toml pre/post groups go around every group of the order.
    const order: Order =
      resolved.pre.length || resolved.post.length
        ? baseOrder.map((g) => ({ ...g, group: [...resolved.pre, ...g.group, ...resolved.post] }))
        : baseOrder;
    // A volume cache also remembers the last detection (see detect-memo.ts); only with the
    // builder's own buildpacks, whose content the builder digest names.
    const memo =
      appListing && !r.layerCache && resolved.root === path.join(rootfs, 'cnb', 'buildpacks')
        ? new DetectMemo(path.join(r.cacheDir, 'detect.json'))
        : undefined;
    const detected = await time('detect', async () =>
      memo
        ? memo.detect(
            { builderDigest: await r.builder.image.digest(), order, phase, app: appListing! },
            { fresh: r.clearCache, log },
            () => detect({ ...phase, order }),
          )
        : detect({ ...phase, order }),
    );
    const group: GroupElement[] = detected.group;
    await phaseDone('detect');

    // RESTORING
    log.phase('RESTORING');
    const cache: LayerCache =
      r.layerCache ??
      new VolumeCache(
        r.cacheDir,
        { onWait: (owner) => log.info(`Waiting for the cache ${r.cacheDir}: in use by ${owner}`) },
        { beforeCommit: () => phaseDone('cache-commit') },
      );
    const settings = { epoch: r.epoch, compression: r.compression } as const;
    const reuse: ReuseContext = {
      blobs: r.store.blobs,
      settings,
      fingerprints: new Map(),
      listings: new Map(),
      previous: analysis.previousLayers,
      known: new Map(),
      stats: { compressed: 0, hashed: 0, fingerprinted: 0 },
    };
    await time('restore', async () => {
      try {
        snapshot = await cache.snapshot({ clear: r.clearCache });
      } catch (e) {
        // The cache is an accelerator: an unreadable one means a cold build, not a failed one.
        log.warn(`Cache ${cache.name} unreadable (${(e as Error).message}): building without it`);
        snapshot = await cache.snapshot({ clear: true });
      }
      if (r.clearCache) log.info('Clearing the cache (--clear-cache)');
      for (const [k, v] of Object.entries(snapshot.fingerprints)) reuse.fingerprints.set(k, v);
      await restore({
        layersDir,
        group,
        previousMetadata: analysis.previousMetadata,
        cache: snapshot,
        uid,
        gid,
        owner,
        settings,
        fingerprints: reuse.fingerprints,
        ...(reuse.listings ? { listings: reuse.listings } : {}),
        previousLayers: analysis.previousLayers,
        log,
      });
      // Everything under <layers> must be the build user's. Restore chowned the layer dirs it
      // brought back; what else kiln wrote (buildpack dirs, tomls) sits in the top two levels.
      await chownTree(layersDir, owner.uid, owner.gid, 2);
    }).catch((e: unknown) => {
      if (e instanceof KilnError) throw e;
      throw new KilnError(`restore: ${(e as Error).message}`, ExitCode.RestoreError, { cause: e });
    });
    await phaseDone('restore');

    // BUILDING
    log.phase('BUILDING');
    await time('build', () => build({ ...phase, group, plan: detected.plan }));
    const kilnLayer = await r.launchLayer?.(layersDir);
    // kiln's own launch layer is exported (and launched) like a buildpack's.
    const extraBuildpacks = kilnLayer ? [{ id: kilnLayer.id, version: '0.0.0', api: '0.12' }] : [];
    await phaseDone('build');

    // EXPORTING
    log.phase('EXPORTING');
    const runImage = await r.images.runImage(analysis.analyzed['run-image']!.image!);
    const runImageSboms = await runImageSbomsOf(r.store, runImage.image);
    const exported = await time('export', async () => {
      try {
        return await exportImage({
          ...(runImageSboms ? { runImageSboms } : {}),
          layersDir,
          appDir,
          group,
          ...(extraBuildpacks.length ? { extraBuildpacks } : {}),
          runImage: runImage.image,
          runImageRef: analysis.analyzed['run-image']!.reference!,
          runImageName: analysis.analyzed['run-image']!.image!,
          ...(runMirrors.length ? { runImageMirrors: runMirrors } : {}),
          previousMetadata: analysis.previousMetadata,
          launcher: r.launcher,
          ...(r.project ? { project: r.project } : {}),
          ...(r.defaultProcess ? { defaultProcess: r.defaultProcess } : {}),
          ...(r.execEnv ? { execEnv: r.execEnv } : {}),
          platformApi: '0.15',
          uid,
          gid,
          reuse,
          log,
        });
      } catch (e) {
        if (e instanceof KilnError) throw e;
        throw new KilnError(`export: ${(e as Error).message}`, ExitCode.ExportError, { cause: e });
      }
    });
    await phaseDone('export-layers');
    const written = await time('write', async () => {
      try {
        return await r.images.writeImage(exported.image);
      } catch (e) {
        if (e instanceof KilnError) throw e;
        throw new KilnError(`export: writing the image: ${(e as Error).message}`, ExitCode.ExportError, {
          cause: e,
        });
      }
    });
    const rawManifest = await exported.image.rawManifest();
    const manifest = await exported.image.manifest();
    const report = {
      image: {
        tags: [...written.names],
        digest: written.digest,
        'image-id': manifest.config.digest,
        'manifest-size': rawManifest.length,
      },
    };
    await writeReportToml(path.join(layersDir, 'report.toml'), report);
    for (const n of written.names) log.info(`Saved image ${n}`);
    log.info(`*** Digest: ${written.digest}`);
    if (sha256(rawManifest) !== written.digest) log.debug('the destination re-encoded the manifest');
    await phaseDone('export');

    // Cache (after the image: a failed cache save never loses a finished image).
    await time('cache', async () => {
      try {
        const c = await saveCache({
          layersDir,
          group,
          cache,
          snapshot: snapshot!,
          reuse,
          exported: exported.layers,
          contents: exported.contents,
          keepWarm: true,
          uid,
          gid,
          log,
        });
        log.info(`Cache ${cache.name}: ${c.added} layer(s) added, ${c.reused} reused, ${c.pruned} pruned`);
      } catch (e) {
        // The lifecycle treats a failed cache save as a warning: the image is done.
        log.warn(`Failed to save the cache: ${(e as Error).message}`);
      }
    });
    await phaseDone('cache');

    if (r.reportOutputDir) {
      await mkdir(r.reportOutputDir, { recursive: true });
      await writeReportToml(path.join(r.reportOutputDir, 'report.toml'), report);
    }
    if (r.sbomOutputDir && (await isDir(path.join(layersDir, 'sbom')))) {
      await rm(r.sbomOutputDir, { recursive: true, force: true });
      await cp(path.join(layersDir, 'sbom'), r.sbomOutputDir, { recursive: true });
    }
    log.debug(
      `Timings (ms): ${Object.entries(timings)
        .map(([k, v]) => `${k}=${v.toFixed(0)}`)
        .join(' ')}`,
    );
    log.info(
      `Layers: ${exported.added.length} added, ${exported.reused.length} reused; ${reuse.stats.compressed} compressed`,
    );
    return {
      digest: written.digest,
      names: written.names,
      stats: reuse.stats,
      reused: exported.reused,
      added: exported.added,
      timings,
    };
  } finally {
    await net?.close();
    await snapshot?.close();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * checkHostDirs refuses, in one line naming the directory, CNB directories the in-place build
 * cannot use: app, layers and platform must be writable directories, buildpacks a directory.
 */
async function checkHostDirs(d: HostDirs): Promise<void> {
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
      throw new KilnError(
        `--executor host: ${dir} (${name}) ${why}: kiln builds in place inside the build image and needs ${writable ? 'a writable directory' : "the builder's buildpacks"} there (set ${name} to another one)`,
        ExitCode.InvalidArgs,
      );
  }
}

/**
 * runImageSbomsOf reads the OS-package SBOM documents `kiln stack create` attached to the run image
 * as referrers in the local store; undefined when there are none (e.g. a registry run image).
 */
async function runImageSbomsOf(
  store: ImageStore,
  image: Image,
): Promise<{ cdx?: Uint8Array; spdx?: Uint8Array } | undefined> {
  try {
    const digest = await image.digest();
    const docs = await sbomsOfImage(store.layout, digest, [CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE]);
    const cdx = docs.get(CYCLONEDX_MEDIA_TYPE);
    const spdx = docs.get(SPDX_MEDIA_TYPE);
    if (!cdx && !spdx) return undefined;
    return { ...(cdx ? { cdx: sbomBytes(cdx) } : {}), ...(spdx ? { spdx: sbomBytes(spdx) } : {}) };
  } catch {
    return undefined;
  }
}

/** The exit code a passed deadline ends the build with, after each phase (image writing is never cut short). */
const DEADLINE_EXIT: Readonly<Record<string, number>> = {
  analyze: ExitCode.AnalyzeError,
  detect: ExitCode.DetectError,
  restore: ExitCode.RestoreError,
  build: ExitCode.BuildFailed,
  'export-layers': ExitCode.ExportError,
};

/** A short tag of this host, so temp dirs of builds on other hosts sharing the dir are left alone. */
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** Removes temp build dirs of builds whose process is gone (SIGKILL leaves them behind). */
async function sweepDeadWorkDirs(tmpDir: string): Promise<void> {
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    // Only this host's (pid namespace's) builds: another container's pids mean nothing here.
    const m = /^kiln-build-([0-9a-f]{8})-(\d+)-/.exec(name);
    if (!m || m[1] !== HOST_TAG || Number(m[2]) === process.pid) continue;
    try {
      process.kill(Number(m[2]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH')
        await rm(path.join(tmpDir, name), { recursive: true, force: true });
    }
  }
}

/**
 * mirrorsOf returns the mirrors run.toml lists for `image` (the first entry naming it), recorded
 * in the label so rebase can accept them.
 */
async function mirrorsOf(rootfs: string, image: string): Promise<string[]> {
  const run = await readRunToml(inRoot(rootfs, 'cnb/run.toml', BUILDER)).catch(rethrowUntrusted);
  const entry = run?.images?.find((i) => i.image === image || (i.mirrors ?? []).includes(image));
  return entry ? [...(entry.mirrors ?? [])] : [];
}

async function defaultRunImage(rootfs: string, builder: BuilderInput): Promise<{ image: string }> {
  const run = await readRunToml(inRoot(rootfs, 'cnb/run.toml', BUILDER)).catch(rethrowUntrusted);
  const first = run?.images?.[0]?.image;
  if (first) return { image: first };
  throw new KilnError(
    `builder ${builder.name} names no run image (/cnb/run.toml): pass --run-image`,
    ExitCode.InvalidArgs,
  );
}
