import path from 'node:path';
import type {
  BuildMetadata as BuildMetadataLabel,
  LifecycleMetadata,
  ProjectMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { type BuildMetadata, readMetadataToml } from '../cnb/metadata.ts';
import { isAbsent, KilnError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import type { LauncherInfo } from '../launcher/index.ts';
import type { Image } from '../oci/image.ts';
import { isoOfEpoch } from '../oci/memory.ts';
import type { CachedLayer } from './cache.ts';
import { APP_DIR, appImage, entrypointFor, imageEnv } from './export-config.ts';
import { appLabels, buildMetadata, lifecycleMetadata } from './export-labels.ts';
import {
  type ExportBuildpack,
  type KilnBuildpack,
  LayerQueue,
  type PlanContext,
  planAppLayers,
  planBuildpackLayers,
  planLifecycleLayers,
  planSbomLayer,
  type RunImageSboms,
  stackLayers,
} from './export-plan.ts';
import type { LayerResolver } from './layer-resolver.ts';
import type { LayerContent } from './layer-reuse.ts';

// The export phase: the layer plan (export-plan.ts), the labels (export-labels.ts) and the image
// config (export-config.ts) on top of the run image. The image is returned, not written: the
// creator hands it to the image sink.

export { APP_DIR, entrypointFor, LAUNCHER_PATH, LAYERS_DIR, PROCESS_DIR } from './export-config.ts';
export {
  type ExportBuildpack,
  type LayerDir,
  RUN_IMAGE_SBOM_DIR,
  type RunImageSboms,
  readLayerDirs,
} from './export-plan.ts';
export { splitSlices } from './export-slices.ts';

/** Inputs of exportImage. */
export interface ExportOptions {
  /** Host path of `<layers>`. */
  readonly layersDir: string;
  /** Host path of `<app>`. */
  readonly appDir: string;
  /** Where the app sits in the image (`--workspace`); default APP_DIR (`/workspace`). */
  readonly appPath?: string;
  readonly group: readonly ExportBuildpack[];
  /** Layers kiln contributes itself (e.g. trusted CA certificates), exported after the group's. */
  readonly extraBuildpacks?: readonly KilnBuildpack[];
  /** The run image (base). */
  readonly runImage: Image;
  /** `runImage.reference` (a digest reference or image ID) and the name the user gave. */
  readonly runImageRef: string;
  readonly runImageName?: string;
  readonly runImageMirrors?: readonly string[];
  /** The previous image's lifecycle label (empty metadata on a first build). */
  readonly previousMetadata: LifecycleMetadata;
  /** The launcher binary (src/launcher loadLauncher). */
  readonly launcher: LauncherInfo;
  /**
   * The run image's OS-package SBOM documents (from its referrers, when the stack provides them),
   * shipped at `<layers>/sbom/launch/buildpacksio_lifecycle/run-image/sbom.<fmt>.json`.
   */
  readonly runImageSboms?: RunImageSboms;
  /** For the build metadata label: where the launcher's source lives. */
  readonly launcherSource?: { readonly repository: string; readonly commit: string };
  readonly project?: ProjectMetadata;
  /** VCS metadata / junk names to export anyway (project.toml `include` names them; app-export-filter.ts). */
  readonly appKeep?: readonly string[];
  /** `--default-process`. */
  readonly defaultProcess?: string;
  /** `--creation-time`: the config's `created` in seconds (layers keep the epoch); default the epoch. */
  readonly createdAt?: number;
  /** CNB_EXEC_ENV the build ran with, recorded as `io.buildpacks.exec-env` (Platform 0.15). */
  readonly execEnv?: string;
  readonly platformApi: string;
  /** Owner of app and buildpack layer content (CNB_USER_ID / CNB_GROUP_ID of the build image). */
  readonly uid: number;
  readonly gid: number;
  /** The build's layer reuse: blob store, tar settings, what earlier phases learnt. */
  readonly resolver: LayerResolver;
  readonly log: Logger;
}

/** What exportImage produced. */
export interface ExportResult {
  readonly image: Image;
  readonly metadata: LifecycleMetadata;
  readonly buildMetadata: BuildMetadataLabel;
  /** Blob records of every layer exported here, by diffID (the cache phase links from these). */
  readonly layers: ReadonlyMap<string, CachedLayer>;
  /** The walked content of each buildpack layer dir (host path), so the cache phase walks none twice. */
  readonly contents: ReadonlyMap<string, LayerContent>;
  readonly added: readonly string[];
  readonly reused: readonly string[];
}

/** readBuildMetadata reads `<layers>/config/metadata.toml`, which the build phase writes. */
async function readBuildMetadata(layersDir: string): Promise<BuildMetadata> {
  const file = path.join(layersDir, 'config', 'metadata.toml');
  return readMetadataToml(file).catch((e) => {
    if (isAbsent(e)) throw new KilnError(`export: ${file} is missing: did the build phase run?`);
    throw e;
  });
}

/**
 * exportImage assembles the app image from the run image and the build's output (layers dir, app
 * dir, config/metadata.toml). It writes new layer blobs through `opts.resolver` and returns the
 * image (not yet written anywhere) with the metadata for the label, the report and the cache.
 */
export async function exportImage(opts: ExportOptions): Promise<ExportResult> {
  const created = isoOfEpoch(opts.createdAt ?? opts.resolver.settings.epoch);
  const md = await readBuildMetadata(opts.layersDir);
  const extra = opts.extraBuildpacks ?? [];
  const c: PlanContext = {
    layersDir: opts.layersDir,
    appDir: opts.appDir,
    ...(opts.appPath ? { appPath: opts.appPath } : {}),
    uid: opts.uid,
    gid: opts.gid,
    resolver: opts.resolver,
    previous: opts.previousMetadata,
    queue: new LayerQueue(),
    contents: new Map(),
    ...(opts.appKeep ? { appKeep: opts.appKeep } : {}),
  };
  const buildpacks = await planBuildpackLayers(c, [...opts.group, ...extra]);
  const sbom = await planSbomLayer(c, opts.launcher, opts.runImageSboms);
  const app = await planAppLayers(c, md.slices);
  const own = await planLifecycleLayers(c, md, {
    launcher: opts.launcher,
    extra,
    defaultProcess: opts.defaultProcess,
  });
  const stacked = await stackLayers(c.queue, created, opts.log);
  const shas = {
    app,
    config: (await own.config).diffID,
    launcher: (await own.launcher).diffID,
    processTypes: own.processTypes.sha,
    ...(sbom.sha ? { sbom: sbom.sha } : {}),
    buildpacks,
  };
  const runCfg = await opts.runImage.configFile();
  const metadata = lifecycleMetadata(shas, {
    topLayer: runCfg.rootfs.diff_ids.at(-1) ?? '',
    reference: opts.runImageRef,
    ...(opts.runImageName ? { name: opts.runImageName } : {}),
    ...(opts.runImageMirrors ? { mirrors: opts.runImageMirrors } : {}),
  });
  const buildMd = buildMetadata(md, opts.launcher, opts.launcherSource);
  const labels = appLabels(runCfg.config?.Labels ?? {}, {
    metadata,
    buildMetadata: buildMd,
    ...(opts.project ? { project: opts.project } : {}),
    buildpackLabels: md.labels,
    ...(opts.execEnv ? { execEnv: opts.execEnv } : {}),
    uid: opts.uid,
    gid: opts.gid,
    warn: (line) => opts.log.warn?.(line),
  });
  const entrypoint = entrypointFor(md, opts.defaultProcess);
  const appPath = opts.appPath ?? APP_DIR;
  const env = imageEnv(runCfg.config?.Env ?? [], opts.platformApi, appPath);
  const image = appImage(opts.runImage, stacked.appended, { env, entrypoint, labels, created, appPath });
  opts.log.info(`Setting default process type: ${entrypoint}`);
  const { records: layers, added, reused } = stacked;
  return { image, metadata, buildMetadata: buildMd, layers, contents: c.contents, added, reused };
}
