import { lstatSync, readdirSync } from 'node:fs';
import { chown, cp, mkdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { ProjectMetadata } from '../cnb/lifecycle-metadata.ts';
import { writeReportToml } from '../cnb/report-toml.ts';
import { UsageError } from '../internal/errors.ts';
import { isDir } from '../internal/fs.ts';
import type { Logger } from '../internal/log.ts';
import { statInRoot, UntrustedFileError } from '../internal/safe-read.ts';
import type { LauncherInfo } from '../launcher/index.ts';
import type { ExtractLimits } from '../layers/extract-limits.ts';
import type { SourceListing } from '../layers/source-listing.ts';
import type { LayerCache } from '../lifecycle/cache.ts';
import { VolumeCache } from '../lifecycle/cache.ts';
import {
  type BuilderFacts,
  type CreatorOptions,
  type CreatorOutcome,
  create,
  type ImageReport,
} from '../lifecycle/creator.ts';
import type { Deadline } from '../lifecycle/deadline.ts';
import { DetectMemo } from '../lifecycle/detect-memo.ts';
import { LayerResolver, type ReuseStats } from '../lifecycle/layer-resolver.ts';
import { Phases } from '../lifecycle/phase.ts';
import { DEFAULT_SANDBOX_PATHS } from '../lifecycle/phase-context.ts';
import type { Digest } from '../oci/digest.ts';
import type { Executor, Limits, Mount } from '../sandbox/executor.ts';
import { type HostIds, type IdLease, leaseHostIds } from '../sandbox/identity.ts';
import {
  type AllowedHostPort,
  type NetworkMode,
  type OpenNetwork,
  startNetwork,
} from '../sandbox/network.ts';
import { addMountPoint, type PrunePolicy } from '../sandbox/rootfs-cache.ts';
import type { ImageStore } from '../store/store.ts';
import {
  type BuilderConfig,
  type BuilderInput,
  buildConfigDirOf,
  orderOf,
  readBuilderConfig,
  runImageOf,
  runImagesOf,
  unpackBuilder,
} from './builder-facts.ts';
import { type BuildpackRefs, type ResolvedBuildpacks, resolveBuildpacks } from './buildpack-refs.ts';
import { type ImageAccess, imageSink, imageSource } from './image-access.ts';
import { type LifecycleFacts, writeLifecycleSbom } from './lifecycle-sbom.ts';
import { writePlatformDir } from './platform-dir.ts';
import type { SourceFilter } from './source-filter.ts';
import {
  buildHome,
  checkHostDirs,
  copyApp,
  type HostDirs,
  openWorkspace,
  type Workspace,
  type WorkspaceIdentity,
} from './workspace.ts';
import { checkWorkspace, DEFAULT_WORKSPACE } from './workspace-path.ts';

// The platform side of `kiln build` (what pack does around the lifecycle): the workspace, the
// builder read once, `--buildpack` references, the build user's host identity and the sandbox's
// network (leased and released here), then the lifecycle's creator, then the reports and
// `--sbom-output-dir`. The creator gets every collaborator passed in.

export type { BuilderInput } from './builder-facts.ts';
export { unpackBuilder } from './builder-facts.ts';
export type { ImageAccess } from './image-access.ts';
export type { HostDirs } from './workspace.ts';

/** The host kiln runs on, as a build needs to know it. */
export interface HostFacts {
  /** kiln's own uid (0: root, which can chown and lease build identities). */
  readonly uid: number;
  /** The host's name (temp build dirs of other hosts sharing the temp dir are left alone). */
  readonly name: string;
}

/** The umask buildpack processes run under, as in the reference lifecycle's containers. */
export const BUILD_UMASK = 0o022;

/** Everything one build needs, resolved by the CLI. */
export interface BuildRequest extends BuildpackRefs {
  /** The image name (for messages). */
  readonly imageName: string;
  readonly appDir: string;
  /** Which app files go into the build (project.toml include/exclude); default all. */
  readonly filter?: SourceFilter;
  readonly builder: BuilderInput;
  /** `--run-image`, else the builder's first run image. */
  readonly runImage?: string;
  /** `--skip-extensions`: build without the builder's image extensions (else they fail detect). */
  readonly skipExtensions?: boolean;
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
   * The launch-time dependency check: on unless `false` (`--no-launch-check`); `cacheDir` keeps
   * its results between builds (default: in memory only).
   */
  readonly launchCheck?: false | { readonly cacheDir?: string };
  /** A launch layer kiln itself contributes after the build phase (e.g. `--ca-certs-launch`). */
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
  /** kiln's own SBOM, written under `<layers>/sbom/build/buildpacksio_lifecycle/` (saved with the others). */
  readonly lifecycle?: LifecycleFacts;
  readonly project?: ProjectMetadata;
  /** VCS metadata / junk names project.toml `include` names: exported (all others never are). */
  readonly appKeep?: readonly string[];
  readonly executor: Executor;
  /** Limits of every buildpack process; executor defaults otherwise. */
  readonly limits?: Limits;
  /** The whole build's time limit (`--timeout`), started by the caller; checked between phases too. */
  readonly deadline?: Deadline;
  /**
   * The host ids the build user is on the host. Default, when kiln is root and the executor
   * mounts (bubblewrap): one leased from kiln's subordinate range for this build
   * (sandbox/identity.ts), so no real account shares it. Otherwise CNB_USER_ID:CNB_GROUP_ID.
   */
  readonly hostIds?: HostIds;
  /** The real CNB directories to build in, in place, with an executor that cannot mount. */
  readonly hostDirs?: HostDirs;
  /** kiln's cache of unpacked build rootfs trees. */
  readonly rootfsCacheDir: string;
  readonly rootfsCacheBound?: PrunePolicy;
  /** What the builder may unpack to (default ROOTFS_LIMITS: 20 GiB, 2M entries). */
  readonly rootfsLimits?: ExtractLimits;
  readonly launcher: LauncherInfo;
  /** Where new layer blobs are written (the local store's blobs). */
  readonly store: ImageStore;
  readonly images: ImageAccess;
  /** `--previous-image`, default the image itself (named in messages). */
  readonly previousImage?: string;
  /** SOURCE_DATE_EPOCH or the default. */
  readonly epoch: number;
  /** `--uid`/`--gid`: the build user instead of the builder's CNB_USER_ID/CNB_GROUP_ID (never 0). */
  readonly buildUser?: { readonly uid?: number; readonly gid?: number };
  /** `--disable-system-buildpacks`: ignore the builder's /cnb/system.toml. */
  readonly disableSystemBuildpacks?: boolean;
  /**
   * `--workspace`: where the app sits in the sandbox and the image (working dir, CNB_APP_DIR);
   * default `/workspace`. In place (hostDirs) it must be the real app dir.
   */
  readonly workspace?: string;
  /** `--creation-time` in seconds: the image's `created` only (layer times stay `epoch`). */
  readonly createdAt?: number;
  readonly compression: 'gzip' | 'zstd';
  /** Parent of the temp build directory. */
  readonly tmpDir: string;
  /** kiln's uid and host name; default this process's. */
  readonly host?: HostFacts;
  readonly log: Logger;
  /** Test hook: called after each phase (e.g. to kill the process mid-export). */
  readonly onPhase?: (name: string) => void | Promise<void>;
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

/** checkExecutor refuses, up front, a build the executor cannot run as asked. */
function checkExecutor(r: BuildRequest): void {
  // An executor that mounts nothing needs the phase directories to be the real ones, in place.
  // Say so up front, not as a detect error of every buildpack.
  if (!r.executor.capabilities.mounts && !r.hostDirs)
    throw new UsageError(
      'kiln build with the host executor needs the real CNB directories (hostDirs): the temp layout exists only for the bubblewrap sandbox',
    );
  if (!r.executor.capabilities.isolatesNetwork && r.network === 'isolated')
    throw new UsageError(
      'the host executor cannot isolate the network (kiln already runs inside the build image): use --network host there, or --executor bwrap',
    );
}

/** runBuild runs one build from source to image. */
export async function runBuild(r: BuildRequest): Promise<BuildOutcome> {
  checkExecutor(r);
  if (r.hostDirs) await checkHostDirs(r.hostDirs);
  const host = r.host ?? { uid: process.getuid?.() ?? 0, name: hostname() };
  const phases = new Phases({
    log: r.log,
    ...(r.deadline ? { deadline: r.deadline } : {}),
    ...(r.onPhase ? { onPhase: r.onPhase } : {}),
  });
  const builderCfg = await readBuilderConfig(r.builder);
  const cfg = { ...builderCfg, ...r.buildUser };
  if (cfg.uid === 0) throw new UsageError('the build user may not be uid 0 (root)');
  // The build user's host identity: leased for this build when kiln is root and sandboxes it.
  let lease: IdLease | undefined;
  try {
    if (!r.hostIds && host.uid === 0 && r.executor.capabilities.mounts) {
      const prefer = r.layerCache ? undefined : warmOwner(r.cacheDir);
      lease = await leaseHostIds(prefer ? { prefer } : {});
    }
    const owner: HostIds = r.hostIds ?? lease ?? { uid: cfg.uid, gid: cfg.gid };
    return await buildWith(r, cfg, { root: host.uid === 0, owner }, host, phases);
  } finally {
    await lease?.release();
  }
}

/**
 * warmOwner is the owner of a layer directory the previous build of this volume cache kept
 * unpacked (`<cache>/warm/<hex>`, VolumeCache): this build leases those ids when they are free, so
 * the kept layers are restored without a chown of every file (a slot taken by a concurrent build
 * meanwhile costs that chown, as before). Undefined when there is none.
 */
function warmOwner(cacheDir: string): HostIds | undefined {
  try {
    const warm = path.join(cacheDir, 'warm');
    for (const name of readdirSync(warm)) {
      const st = lstatSync(path.join(warm, name));
      if (st.isDirectory()) return { uid: st.uid, gid: st.gid };
    }
  } catch {
    // No cache yet (or unreadable): the lowest free slot, as for a first build.
  }
  return undefined;
}

/** buildWith sets up the workspace and the sandbox's network, runs the creator, then the reports. */
async function buildWith(
  r: BuildRequest,
  cfg: BuilderConfig,
  id: WorkspaceIdentity,
  host: HostFacts,
  phases: Phases,
): Promise<BuildOutcome> {
  // In place, kiln runs inside the build image: its root is the build rootfs.
  const rootfs = r.hostDirs
    ? '/'
    : await phases.time('builder', () =>
        unpackBuilder(r.builder.image, r.rootfsCacheDir, r.rootfsCacheBound, r.rootfsLimits),
      );
  const ws = await openWorkspace(r.tmpDir, host.name, r.hostDirs);
  let net: OpenNetwork | undefined;
  try {
    const appListing = await phases.time('copy-app', () => copyApp(ws, r.appDir, r.filter, id, !!r.hostDirs));
    if (id.root) await chown(ws.layersDir, id.owner.uid, id.owner.gid);
    const sandbox = await sandboxInputs(r, cfg, id, ws, rootfs);
    // One network for every buildpack process of this build (detect and build), torn down below.
    // It is made while kiln resolves buildpacks, analyzes and restores; the first sandboxed
    // process waits for it (and fails the build if it could not be made).
    net = startNetwork(r.network, {
      allow: r.allowHosts ?? [],
      env: sandbox.env,
      hostUid: host.uid,
      tmpDir: ws.work,
    });
    const refs = await buildpacksOf(r, rootfs, ws.work);
    r.log.info(`Network: ${net.description}`);
    const outcome = await runCreator(r, { cfg, id, ws, rootfs, refs, appListing, sandbox, net, phases });
    await writeReports(r, ws.layersDir, outcome.report);
    return finish(r, outcome);
  } finally {
    // slirp4netns is killed, not waited for (the kernel finishes its teardown).
    await Promise.all([net?.close({ wait: false }), ws.remove()]);
  }
}

/** sandboxInputs prepares `<platform>` and HOME, and gathers the processes' extra env and mounts. */
async function sandboxInputs(
  r: BuildRequest,
  cfg: BuilderConfig,
  id: WorkspaceIdentity,
  ws: Workspace,
  rootfs: string,
): Promise<{ env: Record<string, string>; mounts: Mount[]; baseEnv: Record<string, string> }> {
  const { uid, gid } = id.owner;
  let platform: { readonly env: Readonly<Record<string, string>>; readonly mounts: readonly Mount[] } = {
    env: {},
    mounts: [],
  };
  if (r.preparePlatform)
    platform =
      (await r.preparePlatform(ws.platformDir, uid, gid, rootfs, path.join(ws.work, 'platform-stage'))) ??
      platform;
  else await writePlatformDir(ws.platformDir, { env: r.env, bindings: [] });
  const env = { ...platform.env, ...(r.processEnv ?? {}) };
  const home = await buildHome(rootfs, cfg.env, cfg.uid, id, ws.work, r.executor.capabilities.mounts);
  // Extra mounts (--volume) last: one below the build user's home must not be hidden by it.
  await prepareMountTargets(r, rootfs, home.mount?.dst);
  // Outer volumes before the ones inside them, whatever order they were given in.
  const depth = (m: Mount) => m.dst.split('/').length;
  const volumes = [...(r.extraMounts ?? [])].sort((a, b) => depth(a) - depth(b));
  const mounts = [...platform.mounts, ...(home.mount ? [home.mount] : []), ...volumes];
  const moved = r.hostDirs ? mounts.find((m) => m.src !== m.dst) : undefined;
  if (moved)
    throw new UsageError(
      `--executor host: ${moved.dst} would need ${moved.src} mounted over it (extra CA certificates, bindings) and in place kiln mounts nothing: put it in the build image, or use --executor bwrap`,
    );
  const baseEnv = home.home ? { ...cfg.env, HOME: home.home } : { ...cfg.env };
  return { env, mounts, baseEnv };
}

/** buildpacksOf resolves `--buildpack` references; in place, only the image's own buildpacks can run. */
async function buildpacksOf(r: BuildRequest, rootfs: string, work: string): Promise<ResolvedBuildpacks> {
  const hostDirs = r.hostDirs;
  const resolved = await resolveBuildpacks(
    hostDirs ? { ...r, extraBuildpacksDir: hostDirs.buildpacks } : r,
    rootfs,
    work,
  );
  if (hostDirs && resolved.root !== hostDirs.buildpacks)
    throw new UsageError(
      `--executor host: buildpacks run from ${hostDirs.buildpacks} in place, so --buildpack directories, buildpackages and inline buildpacks cannot be added; use buildpacks the build image has (by id)`,
    );
  return resolved;
}

/** What runCreator assembles the creator's collaborators from. */
interface Prepared {
  readonly cfg: BuilderConfig;
  readonly id: WorkspaceIdentity;
  readonly ws: Workspace;
  readonly rootfs: string;
  readonly refs: ResolvedBuildpacks;
  readonly appListing: SourceListing | undefined;
  readonly sandbox: { env: Record<string, string>; mounts: Mount[]; baseEnv: Record<string, string> };
  readonly net: OpenNetwork;
  readonly phases: Phases;
}

/** runCreator hands the creator its collaborators: workspace, builder facts, images, cache, sandbox. */
function runCreator(r: BuildRequest, p: Prepared): Promise<CreatorOutcome> {
  const builder: BuilderFacts = {
    rootfs: p.rootfs,
    digest: () => r.builder.image.digest(),
    buildpacksDir: p.refs.root,
    order: () =>
      orderOf(
        p.rootfs,
        p.refs,
        { builder: r.builder.name, skip: r.skipExtensions === true, warn: (line) => r.log.warn(line) },
        { system: r.disableSystemBuildpacks !== true },
      ),
    runImage: () => runImageOf(p.rootfs, r.builder, r.runImage, r.images.destination.registry),
    runImages: () => runImagesOf(p.rootfs),
    ...(buildConfigDirOf(p.rootfs) ? { buildConfigDir: buildConfigDirOf(p.rootfs)! } : {}),
    env: p.sandbox.baseEnv,
  };
  const cache: LayerCache =
    r.layerCache ??
    new VolumeCache(
      r.cacheDir,
      { onWait: (owner) => r.log.info(`Waiting for the cache ${r.cacheDir}: in use by ${owner}`) },
      { beforeCommit: () => p.phases.done('cache-commit') },
    );
  // A volume cache also remembers the last detection (see detect-memo.ts); only with the
  // builder's own buildpacks, whose content the builder digest names.
  const memo =
    p.appListing && !r.layerCache && p.refs.root === path.join(p.rootfs, 'cnb', 'buildpacks')
      ? new DetectMemo(path.join(r.cacheDir, 'detect.json'))
      : undefined;
  return create({
    workspace: {
      appDir: p.ws.appDir,
      layersDir: p.ws.layersDir,
      platformDir: p.ws.platformDir,
      ...(p.appListing !== undefined ? { appListing: p.appListing } : {}),
      ...workspacePaths(r),
    },
    builder,
    user: { uid: p.cfg.uid, gid: p.cfg.gid, hostIds: p.id.owner },
    sandbox: {
      executor: r.executor,
      network: p.net.network,
      env: p.net.env,
      mounts: p.sandbox.mounts,
      umask: BUILD_UMASK,
      ...(r.limits ? { limits: r.limits } : {}),
    },
    source: imageSource(r.images, r.previousImage ?? r.imageName),
    sink: imageSink(r.images),
    cache,
    clearCache: r.clearCache,
    ...(memo ? { detectMemo: memo } : {}),
    resolver: new LayerResolver({
      blobs: r.store.blobs,
      settings: { epoch: r.epoch, compression: r.compression },
    }),
    export: {
      launcher: r.launcher,
      ...(r.project ? { project: r.project } : {}),
      ...(r.appKeep?.length ? { appKeep: r.appKeep } : {}),
      ...(r.defaultProcess ? { defaultProcess: r.defaultProcess } : {}),
      ...(r.createdAt !== undefined ? { createdAt: r.createdAt } : {}),
      ...(r.execEnv ? { execEnv: r.execEnv } : {}),
      ...(r.launchLayer ? { launchLayer: r.launchLayer } : {}),
      ...(r.launchCheck !== undefined ? { launchCheck: r.launchCheck } : {}),
    },
    ...(r.deadline ? { deadline: r.deadline } : {}),
    log: r.log,
    phases: p.phases,
  });
}

/** innermostMount is the extra mount whose target holds `dst` most closely, if any. */
function innermostMount(mounts: readonly Mount[], dst: string): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts)
    if (dst.startsWith(`${m.dst}/`) && (!best || m.dst.length > best.dst.length)) best = m;
  return best;
}

/** inBuildImage stats `dst` in the build image (no link of the builder's followed); undefined when absent. */
function inBuildImage(rootfs: string, dst: string, what: string): ReturnType<typeof statInRoot> {
  try {
    return statInRoot(rootfs, dst.slice(1), { what: 'the build image', shown: '/' });
  } catch (e) {
    if (!(e instanceof UntrustedFileError)) throw e;
    throw new UsageError(
      `${what}: the build image has a symbolic link on that path (a mount never follows the builder's links)`,
    );
  }
}

/** inHostVolume stats `rel` inside a volume's host directory (no link followed); undefined when absent. */
function inHostVolume(src: string, rel: string, what: string): ReturnType<typeof statInRoot> {
  try {
    return statInRoot(src, rel, { what: 'the volume', shown: '/' });
  } catch (e) {
    if (e instanceof UntrustedFileError)
      throw new UsageError(`${what}: the volume ${src} has a symbolic link on that path`);
    if (['ENOTDIR', 'ENOENT'].includes((e as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw e;
  }
}

/** workspacePaths is where the sandbox sees the build's directories and the app's place in the image. */
function workspacePaths(
  r: BuildRequest,
): Pick<CreatorOptions['workspace'], 'sandboxPaths' | 'scratchRoot' | 'appPath'> {
  // In place, sandbox paths are the host paths and the plans go under the real /tmp.
  if (r.hostDirs) return { sandboxPaths: r.hostDirs, scratchRoot: '/tmp', ...appPathOf(r) };
  const w = workspaceOf(r);
  return w === DEFAULT_WORKSPACE ? {} : { sandboxPaths: { ...DEFAULT_SANDBOX_PATHS, app: w }, appPath: w };
}

function appPathOf(r: BuildRequest): { appPath?: string } {
  return r.workspace !== undefined && r.workspace !== DEFAULT_WORKSPACE ? { appPath: r.workspace } : {};
}

/** writeReports copies report.toml to `--report-output-dir` and the SBOM files to `--sbom-output-dir`. */
async function writeReports(r: BuildRequest, layersDir: string, report: ImageReport): Promise<void> {
  if (r.reportOutputDir) {
    await mkdir(r.reportOutputDir, { recursive: true });
    await writeReportToml(path.join(r.reportOutputDir, 'report.toml'), report);
  }
  if (r.sbomOutputDir && (await isDir(path.join(layersDir, 'sbom')))) {
    await rm(r.sbomOutputDir, { recursive: true, force: true });
    await cp(path.join(layersDir, 'sbom'), r.sbomOutputDir, { recursive: true });
  }
  // kiln's own SBOM goes straight to the output dir (never through <layers>, which buildpacks own).
  if (r.lifecycle && r.sbomOutputDir) await writeLifecycleSbom(r.sbomOutputDir, r.lifecycle);
}

function finish(r: BuildRequest, o: CreatorOutcome): BuildOutcome {
  r.log.debug(
    `Timings (ms): ${Object.entries(o.timings)
      .map(([k, v]) => `${k}=${v.toFixed(0)}`)
      .join(' ')}`,
  );
  return {
    digest: o.digest,
    names: o.names,
    stats: o.stats,
    reused: o.reused,
    added: o.added,
    timings: o.timings,
  };
}

/** workspaceOf is the app's place in the sandbox and the image (`--workspace`, checked again here). */
function workspaceOf(r: BuildRequest): string {
  const w = r.workspace === undefined ? DEFAULT_WORKSPACE : checkWorkspace(r.workspace);
  if (r.hostDirs && r.workspace !== undefined && w !== r.hostDirs.app)
    throw new UsageError(
      `--workspace ${w} with --executor host: the app is built in place at ${r.hostDirs.app} (CNB_APP_DIR); set that instead`,
    );
  return w;
}

/**
 * prepareMountTargets makes, before any phase, the places the sandbox mounts the app
 * (`--workspace`) and the extra mounts (`--volume`) on. The build image's root is read-only, so a
 * target it lacks gets an empty mount point in the unpacked image (rootfs-cache addMountPoint);
 * targets in the sandbox's own /tmp or below the build user's home (both writable mounts) need
 * none. No link of the builder's is followed: a link could aim a mount anywhere in the sandbox.
 * In place (hostDirs) nothing is created: the root is the real one.
 */
async function prepareMountTargets(
  r: BuildRequest,
  rootfs: string,
  homeDst: string | undefined,
): Promise<void> {
  const workspace = workspaceOf(r);
  const overlaps = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  if (homeDst !== undefined && overlaps(workspace, homeDst))
    throw new UsageError(
      `--workspace ${workspace}: the build user's home ${homeDst} is mounted there by the sandbox; pick a path outside it`,
    );
  const targets: { dst: string; kind: 'dir' | 'file'; what: string }[] = [];
  if (!r.hostDirs && workspace !== DEFAULT_WORKSPACE)
    targets.push({ dst: workspace, kind: 'dir', what: `--workspace ${workspace}` });
  for (const m of r.extraMounts ?? []) {
    const under = (dir: string | undefined) => dir !== undefined && m.dst.startsWith(`${dir}/`);
    if (under('/tmp') || under(homeDst)) continue;
    const kind = (await stat(m.src)).isDirectory() ? 'dir' : 'file';
    targets.push({ dst: m.dst, kind, what: `volume target ${m.dst}` });
  }
  for (const t of targets) {
    // Below another volume, the target is in that host directory: it must exist there (kiln
    // never creates anything in a host directory).
    const outer = innermostMount(r.extraMounts ?? [], t.dst);
    const rel = outer ? path.posix.relative(outer.dst, t.dst) : '';
    const found = outer ? inHostVolume(outer.src, rel, t.what) : inBuildImage(rootfs, t.dst, t.what);
    if (outer && found === undefined)
      throw new UsageError(
        `${t.what}: no such path in the volume ${outer.dst} (${path.join(outer.src, rel)}); kiln creates no mount point in a host directory`,
      );
    if (found !== undefined && found.isDirectory() !== (t.kind === 'dir'))
      throw new UsageError(
        `${t.what}: there is a ${found.isDirectory() ? 'directory' : 'file'} at that path, and a ${t.kind === 'dir' ? 'directory' : 'file'} cannot be mounted on it`,
      );
    if (found !== undefined || r.hostDirs) continue;
    await addMountPoint(rootfs, t.dst, t.kind).catch((e: Error) => {
      throw new UsageError(`${t.what}: ${e.message}`);
    });
  }
}
