import path from 'node:path';
import type { Order } from '../cnb/buildpack-toml.ts';
import type { ProjectMetadata } from '../cnb/lifecycle-metadata.ts';
import { type ReportToml, writeReportToml } from '../cnb/report-toml.ts';
import { KilnError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import type { LauncherInfo } from '../launcher/index.ts';
import { type Digest, sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import type { HostIds } from '../sandbox/identity.ts';
import { type Analysis, analyze, analyzedPathIn, type PreviousImage } from './analyze.ts';
import { build } from './build.ts';
import { BuildpackStore } from './buildpack-store.ts';
import { type CacheSnapshot, CacheStateError, type LayerCache } from './cache.ts';
import { type CacheSaveBase, EarlyCacheWork, saveCache } from './cache-save.ts';
import type { Deadline } from './deadline.ts';
import { type DetectResult, detect } from './detect.ts';
import type { DetectMemo, DetectMemoInputs } from './detect-memo.ts';
import { type ExportResult, exportImage, type RunImageSboms } from './export.ts';
import { checkExportedImage } from './launch-check.ts';
import type { LayerResolver, ReuseStats } from './layer-resolver.ts';
import { Phases, STEPS } from './phase.ts';
import { type PhaseOptions, prepareSandbox, type SandboxPaths } from './phase-context.ts';
import { chownTree, restore } from './restore.ts';
import { resolveRunTarget } from './target.ts';

// The creator: Platform API 0.15's phase order (analyze, detect, restore, build, export, cache)
// in-process, over collaborators the platform passes in. It reads no flag or environment variable
// and opens no store: where images come from and go to, the cache, the sandbox and the workspace
// are all given. The image is written only after all its blobs exist; the cache is saved after
// the image, so a failed cache save never loses a finished image.

/** An image and the digest reference it was read as. */
export interface ImageRef {
  readonly image: Image;
  readonly reference: string;
}

/** Where the creator reads images from (the platform implements it over its transports). */
export interface ImageSource {
  /** The previous image's name (for messages). */
  readonly previousName: string;
  /** The previous image; undefined when it does not exist (a first build). */
  previous(): Promise<ImageRef | undefined>;
  /** A run image by name. Throws when it cannot be read. */
  runImage(name: string): Promise<ImageRef>;
  /** The run image's OS-package SBOM documents; undefined when it has none. */
  runImageSboms(image: Image): Promise<RunImageSboms | undefined>;
}

/** Where the creator writes the app image (the destination and every extra tag). */
export interface ImageSink {
  write(image: Image): Promise<{ digest: Digest; names: readonly string[] }>;
}

/** The build's directories on the host (made by the platform). */
export interface CreatorWorkspace {
  readonly appDir: string;
  readonly layersDir: string;
  readonly platformDir: string;
  /** The copied app's listing (for the detect memo); undefined when built in place. */
  readonly appListing?: DetectMemoInputs['app'];
  /** Where the sandbox sees the directories (default the spec's paths). */
  readonly sandboxPaths?: SandboxPaths;
  /** Where the app sits in the image (`--workspace`, its CNB_APP_DIR and working dir); default `/workspace`. */
  readonly appPath?: string;
  /** Host directory for the phases' scratch files (default the OS temp dir). */
  readonly scratchRoot?: string;
}

/** What the platform read from the builder, once. */
export interface BuilderFacts {
  /** The build image's root filesystem on the host. */
  readonly rootfs: string;
  /** The builder image's digest (the detect memo's key). */
  digest(): Promise<string>;
  /** The buildpacks directory the sandbox mounts at /cnb/buildpacks. */
  readonly buildpacksDir: string;
  /** The order to detect (the builder's, or `--buildpack`'s group, with project pre/post groups). */
  order(): Promise<Order>;
  /** The run image to build on and the mirrors run.toml lists for it. */
  runImage(): Promise<{ readonly name: string; readonly mirrors: readonly string[] }>;
  /** `/cnb/build-config` of the rootfs, when it has one. */
  readonly buildConfigDir?: string;
  /** The environment buildpacks start from (the build image's, HOME set). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Every run image the builder lists (each flavour), for the launch check's hints. */
  runImages?(): Promise<readonly string[]>;
}

/** Who buildpacks run as: the build user, and its ids on the host. */
export interface BuildIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly hostIds: HostIds;
}

/** How buildpack processes run. */
export interface SandboxSetup {
  readonly executor: PhaseOptions['executor'];
  readonly network: PhaseOptions['network'];
  /** Unfiltered variables every buildpack process gets (CA bundle, proxies, bindings root). */
  readonly env: Readonly<Record<string, string>>;
  readonly mounts: PhaseOptions['extraMounts'];
  readonly limits?: PhaseOptions['limits'];
  /** The umask buildpack processes start with, whatever kiln's own is. */
  readonly umask?: number;
}

/** What goes into the image besides the build's output. */
export interface ExportInputs {
  readonly launcher: LauncherInfo;
  readonly project?: ProjectMetadata;
  /** VCS metadata / junk names project.toml includes explicitly (exported; all others never are). */
  readonly appKeep?: readonly string[];
  readonly defaultProcess?: string;
  /** `--creation-time`: the image's `created` (seconds); default the layers' epoch. */
  readonly createdAt?: number;
  readonly execEnv?: string;
  /**
   * Called after the build phase: writes a launch layer kiln itself contributes, laid out like a
   * buildpack's, and returns that pseudo-buildpack's id; undefined when there is none.
   */
  readonly launchLayer?: (layersDir: string) => Promise<{ readonly id: string } | undefined>;
  /**
   * The launch-time dependency check (launch-check.ts): on unless `false`; `cacheDir` keeps its
   * results between builds (default: in memory only).
   */
  readonly launchCheck?: false | { readonly cacheDir?: string };
}

/** Everything one run of the creator works with. */
export interface CreatorOptions {
  readonly workspace: CreatorWorkspace;
  readonly builder: BuilderFacts;
  readonly user: BuildIdentity;
  readonly sandbox: SandboxSetup;
  readonly source: ImageSource;
  readonly sink: ImageSink;
  readonly cache: LayerCache;
  /** Start from an empty cache (`--clear-cache`); it is replaced afterwards. */
  readonly clearCache: boolean;
  /** The last detection of a volume cache, reused when nothing it depends on changed. */
  readonly detectMemo?: DetectMemo;
  readonly resolver: LayerResolver;
  readonly export: ExportInputs;
  readonly deadline?: Deadline;
  readonly log: Logger;
  /** Test hook: called after each step (e.g. to kill the process mid-export). */
  readonly onPhase?: (name: string) => void | Promise<void>;
  /** The timings of the platform's own steps so far, continued here. */
  readonly phases?: Phases;
}

/** report.toml (its `[image]` table). */
export type ImageReport = ReportToml & { readonly image: { readonly digest: string } };

/** What a run of the creator produced. */
export interface CreatorOutcome {
  readonly digest: Digest;
  readonly names: readonly string[];
  readonly stats: ReuseStats;
  readonly reused: readonly string[];
  readonly added: readonly string[];
  readonly report: ImageReport;
  /** Milliseconds per step, and the buildpacks' own time. */
  readonly timings: Readonly<Record<string, number>>;
}

/** create runs analyze → detect → restore → build → export → cache. */
export async function create(o: CreatorOptions): Promise<CreatorOutcome> {
  const phases = o.phases ?? new Phases({ log: o.log, ...deadlineAndHook(o) });
  let snapshot: CacheSnapshot | undefined;
  try {
    const { analysis, runMirrors } = await phases.phase(STEPS.analyze, () => analyzeStep(o));
    o.resolver.usePrevious(analysis.previousLayers);
    const phase = await phaseOptions(o, analysis);
    const detected = await phases.phase(STEPS.detect, () => detectStep(o, phase));
    snapshot = await phases.phase(STEPS.restore, () => restoreStep(o, analysis, detected));
    // The first build process's sandbox gets ready while the build phase sets up (after restore:
    // moving it into its cgroup holds a thread-pool thread for an RCU grace period, which restore's
    // file work would wait for).
    prepareSandbox(phase);
    // What the exporter needs of the run image (nothing the build can change) is read while the
    // buildpacks build: the SBOM documents' referrer lookup reads every untagged manifest of the
    // store, which the export phase then no longer waits for.
    const runBase = runImageInputs(o, analysis);
    runBase.catch(() => {}); // awaited (and thrown) by the export phase
    const kilnLayer = await phases.phase(STEPS.build, () => buildStep(o, phase, detected));
    // Cache-only layers are checked (and compressed when changed) while the exporter compresses;
    // the cache is still committed only once the image is written.
    const exporting = phases.phase(STEPS.exportLayers, () =>
      exportStep(o, analysis, detected, kilnLayer, runMirrors, runBase),
    );
    const early = new EarlyCacheWork(
      cacheSaveBase(o, detected, snapshot),
      Promise.race([o.resolver.compressing, exporting.catch(() => {})]),
    );
    let exported: ExportResult;
    let report: ImageReport;
    try {
      exported = await exporting;
      report = await phases.phase(STEPS.write, () => writeStep(o, exported));
    } catch (e) {
      await early.abandon();
      throw e;
    }
    await phases.phase(STEPS.cache, () => cacheStep(o, exported, early));
    const stats = o.resolver.stats;
    o.log.info(
      `Layers: ${exported.added.length} added, ${exported.reused.length} reused; ${stats.compressed} compressed`,
    );
    const { digest, tags } = report.image;
    const { reused, added } = exported;
    return { digest: digest as Digest, names: tags, stats, reused, added, report, timings: phases.timings };
  } finally {
    await snapshot?.close();
  }
}

function deadlineAndHook(o: CreatorOptions) {
  return { ...(o.deadline ? { deadline: o.deadline } : {}), ...(o.onPhase ? { onPhase: o.onPhase } : {}) };
}

/** analyzeStep reads the previous image (unreadable: a first build) and the run image. */
async function analyzeStep(
  o: CreatorOptions,
): Promise<{ analysis: Analysis; runMirrors: readonly string[] }> {
  let previous: PreviousImage | undefined;
  try {
    previous = await o.source.previous();
  } catch (e) {
    o.log.warn(
      `Previous image ${o.source.previousName} could not be read (${(e as Error).message}): building without it`,
    );
  }
  let run = await o.builder.runImage();
  let image: ImageRef | undefined;
  // The first of the run image and its mirrors that can be read (the platform spec's choice).
  for (const name of [run.name, ...run.mirrors]) {
    try {
      image = await o.source.runImage(name);
      if (name !== run.name) {
        o.log.warn(`Run image ${run.name} could not be read: using its mirror ${name}`);
        run = { name, mirrors: [run.name, ...run.mirrors.filter((m) => m !== name)] };
      }
      break;
    } catch (e) {
      if (run.mirrors.length === 0 || name === run.mirrors[run.mirrors.length - 1])
        throw new KilnError(`run image ${run.name}: ${(e as Error).message}`, { cause: e });
    }
  }
  if (!image) throw new KilnError(`run image ${run.name}: not readable`);
  const analysis = await analyze({
    ...(previous ? { previous } : {}),
    runImage: { image: image.image, reference: image.reference, name: run.name },
    analyzedPath: analyzedPathIn(o.workspace.layersDir),
    log: o.log,
  });
  return { analysis, runMirrors: run.mirrors };
}

/** phaseOptions is what detect and build run with (the target comes from analyze). */
async function phaseOptions(o: CreatorOptions, analysis: Analysis): Promise<PhaseOptions> {
  const w = o.workspace;
  const s = o.sandbox;
  return {
    buildpackStore: new BuildpackStore(o.builder.buildpacksDir),
    appDir: w.appDir,
    platformDir: w.platformDir,
    layersDir: w.layersDir,
    ...(o.builder.buildConfigDir ? { buildConfigDir: o.builder.buildConfigDir } : {}),
    executor: s.executor,
    rootfs: o.builder.rootfs,
    ...(w.sandboxPaths ? { sandboxPaths: w.sandboxPaths } : {}),
    ...(w.scratchRoot ? { scratchRoot: w.scratchRoot } : {}),
    network: s.network,
    target: await resolveRunTarget(analysis.target, o.builder.rootfs),
    ...(o.export.execEnv ? { execEnv: o.export.execEnv } : {}),
    logger: o.log,
    baseEnv: o.builder.env,
    // Not through baseEnv: the lifecycle allowlist would drop the CA variables.
    ...(Object.keys(s.env).length ? { extraEnv: s.env } : {}),
    uid: o.user.uid,
    gid: o.user.gid,
    hostIds: o.user.hostIds,
    ...(s.mounts?.length ? { extraMounts: s.mounts } : {}),
    ...(s.limits ? { limits: s.limits } : {}),
    ...(s.umask !== undefined ? { umask: s.umask } : {}),
    ...(o.deadline ? { deadline: o.deadline } : {}),
  };
}

/** detectStep runs detection over the builder's order, or replays the memo's. */
async function detectStep(o: CreatorOptions, phase: PhaseOptions): Promise<DetectResult> {
  const order = await o.builder.order();
  const app = o.workspace.appListing;
  if (!o.detectMemo || app === undefined) return detect({ ...phase, order });
  const inputs = { builderDigest: await o.builder.digest(), order, phase, app };
  return o.detectMemo.detect(inputs, { fresh: o.clearCache, log: o.log }, () => detect({ ...phase, order }));
}

/** restoreStep reads the cache (unreadable: a cold build) and restores layers and metadata. */
async function restoreStep(
  o: CreatorOptions,
  analysis: Analysis,
  detected: DetectResult,
): Promise<CacheSnapshot> {
  let snapshot: CacheSnapshot;
  try {
    snapshot = await o.cache.snapshot({ clear: o.clearCache });
  } catch (e) {
    // A broken state file fails the restore naming it; other trouble with an accelerator (a lock,
    // an unreadable directory) means a cold build, not a failed one.
    if (e instanceof CacheStateError) throw e;
    o.log.warn(`Cache ${o.cache.name} unreadable (${(e as Error).message}): building without it`);
    snapshot = await o.cache.snapshot({ clear: true });
  }
  if (o.clearCache) o.log.info('Clearing the cache (--clear-cache)');
  for (const [fp, layer] of Object.entries(snapshot.fingerprints)) o.resolver.remember(fp, layer);
  const { uid, gid, hostIds } = o.user;
  const layersDir = o.workspace.layersDir;
  await restore({
    layersDir,
    group: detected.group,
    previousMetadata: analysis.previousMetadata,
    cache: snapshot,
    uid,
    gid,
    owner: hostIds,
    resolver: o.resolver,
    previousLayers: analysis.previousLayers,
    log: o.log,
  });
  // Everything under <layers> must be the build user's. Restore chowned the layer dirs it
  // brought back; what else kiln wrote (buildpack dirs, tomls) sits in the top two levels.
  await chownTree(layersDir, hostIds.uid, hostIds.gid, 2);
  return snapshot;
}

/** buildStep runs the buildpacks, then lets the platform add its own launch layer. */
async function buildStep(
  o: CreatorOptions,
  phase: PhaseOptions,
  detected: DetectResult,
): Promise<{ readonly id: string } | undefined> {
  await build({ ...phase, group: detected.group, plan: detected.plan });
  return o.export.launchLayer?.(o.workspace.layersDir);
}

/** The run image and its OS-package SBOM documents, as the exporter takes them. */
async function runImageInputs(
  o: CreatorOptions,
  analysis: Analysis,
): Promise<{ runImage: { readonly image: Image }; runImageSboms: RunImageSboms | undefined }> {
  const runImage = await o.source.runImage(analysis.analyzed['run-image']!.image!);
  return { runImage, runImageSboms: await o.source.runImageSboms(runImage.image) };
}

/** exportStep assembles the app image (not yet written). */
async function exportStep(
  o: CreatorOptions,
  analysis: Analysis,
  detected: DetectResult,
  kilnLayer: { readonly id: string } | undefined,
  runMirrors: readonly string[],
  runBase: ReturnType<typeof runImageInputs>,
): Promise<ExportResult> {
  const run = analysis.analyzed['run-image']!;
  const { runImage, runImageSboms } = await runBase;
  // kiln's own launch layer is exported (and launched) like a buildpack's.
  const extra = kilnLayer ? [{ id: kilnLayer.id, version: '0.0.0', api: '0.12' }] : [];
  const x = o.export;
  const exported = await exportImage({
    ...(runImageSboms ? { runImageSboms } : {}),
    layersDir: o.workspace.layersDir,
    appDir: o.workspace.appDir,
    ...(o.workspace.appPath ? { appPath: o.workspace.appPath } : {}),
    group: detected.group,
    ...(extra.length ? { extraBuildpacks: extra } : {}),
    runImage: runImage.image,
    runImageRef: run.reference!,
    runImageName: run.image!,
    ...(runMirrors.length ? { runImageMirrors: runMirrors } : {}),
    previousMetadata: analysis.previousMetadata,
    launcher: x.launcher,
    ...(x.project ? { project: x.project } : {}),
    ...(x.appKeep?.length ? { appKeep: x.appKeep } : {}),
    ...(x.defaultProcess ? { defaultProcess: x.defaultProcess } : {}),
    ...(x.createdAt !== undefined ? { createdAt: x.createdAt } : {}),
    ...(x.execEnv ? { execEnv: x.execEnv } : {}),
    platformApi: '0.15',
    uid: o.user.uid,
    gid: o.user.gid,
    resolver: o.resolver,
    log: o.log,
  });
  if (x.launchCheck !== false)
    await checkExportedImage({
      layersDir: o.workspace.layersDir,
      appDir: o.workspace.appDir,
      ...(o.workspace.appPath ? { appPath: o.workspace.appPath } : {}),
      buildpacks: [...detected.group, ...extra],
      exported,
      runImage: { image: runImage.image, name: run.image! },
      previousLayer: (d) => o.resolver.previousLayer(d),
      hints: { runImages: () => runImagesOf(o), buildRootfs: o.builder.rootfs },
      ...(x.launchCheck?.cacheDir ? { cacheDir: x.launchCheck.cacheDir } : {}),
      log: o.log,
    });
  return exported;
}

/** runImagesOf opens the builder's run images (for the launch check's hints); unreadable ones are left out. */
async function runImagesOf(o: CreatorOptions): Promise<{ name: string; image: Image }[]> {
  const out: { name: string; image: Image }[] = [];
  for (const name of (await o.builder.runImages?.()) ?? [])
    await o.source.runImage(name).then(
      (r) => out.push({ name, image: r.image }),
      () => {},
    );
  return out;
}

/** writeStep writes the image to the sink, then `<layers>/report.toml`. */
async function writeStep(o: CreatorOptions, exported: ExportResult): Promise<ImageReport> {
  const written = await o.sink.write(exported.image);
  const rawManifest = await exported.image.rawManifest();
  const manifest = await exported.image.manifest();
  const report: ImageReport = {
    image: {
      tags: [...written.names],
      digest: written.digest,
      'image-id': manifest.config.digest,
      'manifest-size': rawManifest.length,
    },
  };
  await writeReportToml(path.join(o.workspace.layersDir, 'report.toml'), report);
  for (const n of written.names) o.log.info(`Saved image ${n}`);
  o.log.info(`*** Digest: ${written.digest}`);
  if (sha256(rawManifest) !== written.digest) o.log.debug('the destination re-encoded the manifest');
  return report;
}

/** What the cache phase starts from, known once the build phase is over. */
function cacheSaveBase(o: CreatorOptions, detected: DetectResult, snapshot: CacheSnapshot): CacheSaveBase {
  return {
    layersDir: o.workspace.layersDir,
    group: detected.group,
    cache: o.cache,
    snapshot,
    resolver: o.resolver,
    keepWarm: true,
    uid: o.user.uid,
    gid: o.user.gid,
    log: o.log,
  };
}

/** cacheStep saves the cache; a failure is a warning (the image is done), as in the lifecycle. */
async function cacheStep(o: CreatorOptions, exported: ExportResult, early: EarlyCacheWork): Promise<void> {
  try {
    const c = await saveCache(
      { ...early.base, exported: exported.layers, contents: exported.contents },
      early,
    );
    o.log.info(`Cache ${o.cache.name}: ${c.added} layer(s) added, ${c.reused} reused, ${c.pruned} pruned`);
  } catch (e) {
    o.log.warn(`Failed to save the cache: ${(e as Error).message}`);
  }
}
