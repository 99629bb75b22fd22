import fs from 'node:fs/promises';
import path from 'node:path';
import { escapeId, LAYER_NAME_EXPECTED, LAYER_NAME_PATTERN, RESERVED_LAYER_NAMES } from '../cnb/ids.ts';
import { readLayerToml } from '../cnb/layer-toml.ts';
import {
  type BuildpackLayersMetadata,
  type LifecycleMetadata,
  layerMetadataFor,
} from '../cnb/lifecycle-metadata.ts';
import type { BuildMetadata } from '../cnb/metadata.ts';
import { readStoreToml } from '../cnb/store-toml.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { Semaphore } from '../internal/bounded.ts';
import { KilnError } from '../internal/errors.ts';
import { inRoot, readdirInRootIfExists, statInRoot } from '../internal/safe-read.ts';
import {
  encodeLaunchConfig,
  LAUNCH_FILE,
  LAUNCHER_SBOM_DIR,
  type LauncherInfo,
  launcherLayerEntries,
  launcherSbom,
  processTypesLayerEntries,
} from '../launcher/index.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { mkdirReadable } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Layer } from '../oci/image.ts';
import type { History } from '../oci/schema.ts';
import { appExportFilter } from './app-export-filter.ts';
import type { CachedLayer } from './cache.ts';
import { APP_DIR, LAYERS_DIR } from './export-config.ts';
import { splitSlices } from './export-slices.ts';
import type { LayerResolver, ResolvedLayer } from './layer-resolver.ts';
import { type LayerContent, syntheticContent, touchBlob } from './layer-reuse.ts';

// The export phase's layer plan: the run image plus, in the reference lifecycle's order, each
// buildpack's launch layers (group order, then layer name order), the launch SBOM layer, the app
// slices and the rest of the app, the launcher, the config layer (<layers>/config) and the
// process-types layer. Everything a layer could reuse is reused (layer-resolver.ts), so an
// unchanged layer is never re-tarred, re-compressed or re-uploaded.

/** Where the run image's OS SBOM goes under `<layers>` (next to the launcher's, in the lifecycle's namespace). */
export const RUN_IMAGE_SBOM_DIR = 'sbom/launch/buildpacksio_lifecycle/run-image';

/** History strings of the reference lifecycle (pack inspect shows them). */
const CREATED_BY = {
  buildpackLayer: (name: string, bp: string) => `Layer: '${name}', Created by buildpack: ${bp}`,
  app: 'Application Layer',
  slice: (i: number) => `Application Slice: ${i + 1}`,
  config: 'Buildpacks Launcher Config',
  launcher: 'Buildpacks Application Launcher',
  processTypes: 'Buildpacks Process Types',
  sbom: 'Software Bill-of-Materials',
} as const;

/** How buildpack outputs are named in the exporter's errors (`layers/<bp>/<layer>.toml`). */
const LAYERS = { what: 'the layers directory', shown: 'layers' } as const;

/** LayerDir is one `<layers>/<bp>/<name>` with its layer.toml. */
export interface LayerDir {
  readonly name: string;
  readonly path: string;
  readonly hasContents: boolean;
  readonly types: { launch: boolean; build: boolean; cache: boolean };
  readonly metadata: Record<string, unknown>;
}

/**
 * readLayerDirs lists a buildpack's layers (`<layersDir>/<bpDir>`) by their `<name>.toml` files,
 * sorted by name. A directory without a toml is not a layer; `launch.toml`, `build.toml` and
 * `store.toml` are the buildpack's own files, not layers. Everything is read through safe-read
 * inside the layers dir: a symlinked toml or layer dir is refused, never followed.
 */
export async function readLayerDirs(layersDir: string, bpDir: string): Promise<LayerDir[]> {
  const names = (readdirInRootIfExists(layersDir, bpDir, LAYERS) ?? []).map((e) => e.name);
  const out: LayerDir[] = [];
  for (const file of names.filter((n) => n.endsWith('.toml')).sort()) {
    const name = file.slice(0, -'.toml'.length);
    if (RESERVED_LAYER_NAMES.includes(name)) continue;
    // `..toml` names the layer ".", the buildpack's own directory; the name also goes in a label.
    if (!LAYER_NAME_PATTERN.test(name))
      throw new KilnError(
        `layers/${bpDir}/${file}: layer name ${JSON.stringify(name)}: expected ${LAYER_NAME_EXPECTED}`,
      );
    const toml = await readLayerToml(inRoot(layersDir, `${bpDir}/${file}`, LAYERS));
    const st = statInRoot(layersDir, `${bpDir}/${name}`, LAYERS);
    out.push({
      name,
      path: path.join(layersDir, bpDir, name),
      hasContents: st?.isDirectory() === true,
      types: { ...toml.types },
      metadata: toml.metadata,
    });
  }
  return out;
}

/** A layer appended to the run image, in stacking order, with what resolving it found. */
export interface PlannedLayer {
  readonly id: string;
  readonly createdBy: string;
  readonly resolved: ResolvedLayer;
}

/**
 * LayerQueue resolves layers two at a time (compression runs on the thread pool, one core each),
 * but hands them back strictly in the order they were added.
 */
export class LayerQueue {
  readonly #limit = new Semaphore(2);
  readonly #slots: { id: string; createdBy: string; run: Promise<ResolvedLayer> }[] = [];

  /** add queues one layer; `onDone` sees its result as soon as it is resolved. */
  add(
    id: string,
    createdBy: string,
    fn: () => Promise<ResolvedLayer>,
    onDone?: (r: ResolvedLayer) => void,
  ): Promise<ResolvedLayer> {
    const run = this.#limit.run(fn);
    // Failures are awaited (and thrown) in order by drain, not here.
    run.then(onDone, () => {});
    this.#slots.push({ id, createdBy, run });
    return run;
  }

  /** drain waits for every layer in order: the first failure (in stacking order) fails the export. */
  async *drain(): AsyncGenerator<PlannedLayer> {
    for (const s of this.#slots) yield { id: s.id, createdBy: s.createdBy, resolved: await s.run };
  }
}

/** What the plan steps share. */
export interface PlanContext {
  readonly layersDir: string;
  readonly appDir: string;
  /** Where the app sits in the image; default APP_DIR. */
  readonly appPath?: string;
  readonly uid: number;
  readonly gid: number;
  readonly resolver: LayerResolver;
  readonly previous: LifecycleMetadata;
  readonly queue: LayerQueue;
  /** Filled with the walked content of each buildpack layer dir (for the cache phase). */
  readonly contents: Map<string, LayerContent>;
  /** VCS metadata / junk names project.toml includes explicitly (app-export-filter.ts); others stay out. */
  readonly appKeep?: readonly string[];
}

/**
 * dirLayer is a layer dir's content: a dir restore brought back is checked again (buildpacks ran
 * since), reading only the directories that changed. Everything the build user wrote stays
 * readable and runnable, never writable, for a run user of its group (walk's runUserModes);
 * restore and the cache walk with the same options.
 */
function dirLayer(c: PlanContext, dir: string, prefix: string): Promise<LayerContent> {
  return c.resolver.dirContent(dir, { prefix, uid: c.uid, gid: c.gid, runUserModes: true });
}

/** A group element as the exporter needs it. */
export interface ExportBuildpack {
  readonly id: string;
  readonly version: string;
  readonly api?: string;
  readonly homepage?: string;
}

/** A pseudo-buildpack of kiln's own (e.g. trusted CA certificates), exported after the group's. */
export type KilnBuildpack = ExportBuildpack & { readonly api: string };

/** planBuildpackLayers queues every buildpack's launch layers and returns their label metadata. */
export async function planBuildpackLayers(
  c: PlanContext,
  buildpacks: readonly ExportBuildpack[],
): Promise<BuildpackLayersMetadata[]> {
  const out: BuildpackLayersMetadata[] = [];
  for (const bp of buildpacks) {
    const bpMd: BuildpackLayersMetadata = { key: bp.id, version: bp.version, layers: {} };
    const store = await readStoreToml(inRoot(c.layersDir, `${escapeId(bp.id)}/store.toml`, LAYERS));
    if (store) bpMd.store = { metadata: store.metadata ?? {} };
    for (const l of await readLayerDirs(c.layersDir, escapeId(bp.id)))
      if (l.types.launch) bpMd.layers![l.name] = await planLaunchLayer(c, bp, l);
    out.push(bpMd);
  }
  return out;
}

type LayerEntry = NonNullable<BuildpackLayersMetadata['layers']>[string];

/** planLaunchLayer queues one launch layer; its entry's sha is filled once the layer resolves. */
async function planLaunchLayer(c: PlanContext, bp: ExportBuildpack, l: LayerDir): Promise<LayerEntry> {
  const id = `${bp.id}:${l.name}`;
  const createdBy = CREATED_BY.buildpackLayer(l.name, `${bp.id}@${bp.version}`);
  const prev = layerMetadataFor(c.previous, bp.id, l.name);
  const entry = { sha: '', data: l.metadata, build: l.types.build, launch: true, cache: l.types.cache };
  if (l.hasContents) {
    const content = await dirLayer(c, l.path, `${LAYERS_DIR.slice(1)}/${escapeId(bp.id)}/${l.name}`);
    c.contents.set(l.path, content);
    c.queue.add(
      id,
      createdBy,
      () => c.resolver.resolve(content, prev?.sha),
      (r) => {
        entry.sha = r.diffID;
      },
    );
    return entry;
  }
  if (l.types.cache) throw new KilnError(`layer '${id}' is cache=true but has no contents`);
  // launch = true with no directory: keep the previous image's layer.
  const layer = prev?.sha ? c.resolver.previousLayer(prev.sha) : undefined;
  if (!prev?.sha || !layer)
    throw new KilnError(
      `cannot reuse '${id}': the previous image has no layer '${id}' (launch = true with no directory means "keep the previous layer")`,
    );
  await touchBlob(c.resolver.blobs, await layer.digest());
  const diffID = prev.sha as Digest;
  c.queue.add(id, createdBy, async () => ({ layer, diffID, how: 'reused' }));
  entry.sha = prev.sha;
  return entry;
}

/**
 * writeIfChanged writes a file only when its content differs, so that a file kiln regenerates on
 * every build keeps its mtime (and the layer holding it its fingerprint) when nothing changed.
 */
async function writeIfChanged(file: string, body: string | Uint8Array): Promise<void> {
  const want = Buffer.from(body);
  // Only skips an identical write: anything unreadable is rewritten.
  const have = await fs.readFile(file).catch(() => undefined);
  if (have?.equals(want)) return;
  // 0755 whatever kiln's umask: the directories are tarred into the SBOM layer.
  await mkdirReadable(path.dirname(file));
  await writeFileAtomic(file, want);
}

/** The run image's OS-package SBOM documents, by format (`cdx`, `spdx`). */
export interface RunImageSboms {
  readonly cdx?: Uint8Array;
  readonly spdx?: Uint8Array;
}

/**
 * planSbomLayer writes the run image's and the launcher's SBOM files next to the buildpacks' and
 * queues the launch SBOM layer; the returned slot's sha is filled once it resolves.
 */
export async function planSbomLayer(
  c: PlanContext,
  launcher: LauncherInfo,
  runImageSboms: RunImageSboms | undefined,
): Promise<{ sha?: string }> {
  for (const [ext, body] of Object.entries(runImageSboms ?? {}))
    if (body) await writeIfChanged(path.join(c.layersDir, RUN_IMAGE_SBOM_DIR, `sbom.${ext}.json`), body);
  for (const [ext, body] of Object.entries(launcherSbom(launcher)))
    await writeIfChanged(path.join(c.layersDir, LAUNCHER_SBOM_DIR, `sbom.${ext}.json`), body);
  const slot: { sha?: string } = {};
  const sbomDir = path.join(c.layersDir, 'sbom', 'launch');
  const exists = await fs.lstat(sbomDir).then(
    () => true,
    () => false,
  );
  if (!exists) return slot;
  const content = await dirLayer(c, sbomDir, `${LAYERS_DIR.slice(1)}/sbom/launch`);
  c.queue.add(
    'buildpacksio/lifecycle:launch.sbom',
    CREATED_BY.sbom,
    () => c.resolver.resolve(content, c.previous.sbom?.sha),
    (r) => {
      slot.sha = r.diffID;
    },
  );
  return slot;
}

/** appContents is the app dir as one layer, or as its slices plus the rest. */
async function appContents(c: PlanContext, slices: BuildMetadata['slices']): Promise<LayerContent[]> {
  const prefix = (c.appPath ?? APP_DIR).slice(1);
  // VCS data and editor junk stay in <app> for buildpacks but never reach the image.
  const app = await c.resolver.dirContent(c.appDir, {
    prefix,
    uid: c.uid,
    gid: c.gid,
    runUserModes: true,
    filter: appExportFilter(c.appKeep),
  });
  if (slices.length === 0) return [app];
  const split = splitSlices(await app.entries(), prefix, slices);
  const fp = (entries: readonly TarEntry[], i: number) =>
    app.fingerprint
      ? syntheticContent(entries, c.resolver.settings, `${app.fingerprint}/${i}`).fingerprint
      : '';
  return [
    ...split.slices.map((entries, i) => ({ entries: async () => entries, fingerprint: fp(entries, i) })),
    { entries: async () => split.rest, fingerprint: fp(split.rest, -1) },
  ];
}

/** planAppLayers queues the app slices and the rest of the app; each slot's sha is filled once resolved. */
export async function planAppLayers(
  c: PlanContext,
  slices: BuildMetadata['slices'],
): Promise<{ sha: string }[]> {
  const layers = await appContents(c, slices);
  const prevApp = c.previous.app;
  return layers.map((content, i) => {
    const isRest = i === layers.length - 1;
    // Any previous app layer is a candidate: hashing is cheap next to compressing.
    const candidate = prevApp[i]?.sha ?? prevApp.at(-1)?.sha;
    const id = isRest ? 'buildpacksio/lifecycle:app' : `buildpacksio/lifecycle:slice-${i + 1}`;
    const slot = { sha: '' };
    c.queue.add(
      id,
      isRest ? CREATED_BY.app : CREATED_BY.slice(i),
      () => c.resolver.resolve(content, candidate),
      (r) => {
        slot.sha = r.diffID;
      },
    );
    return slot;
  });
}

/** The launcher's input (processes and buildpack APIs, precomputed), shipped in the config layer. */
function launchConfig(
  md: BuildMetadata,
  extra: readonly KilnBuildpack[],
  defaultProcess: string | undefined,
): ReturnType<typeof encodeLaunchConfig> {
  const processType = defaultProcess ?? md['buildpack-default-process-type'];
  return encodeLaunchConfig({
    buildpacks: [...md.buildpacks, ...extra].map((b) => ({ id: b.id, api: b.api })),
    processes: md.processes.map((p) => ({
      type: p.type,
      command: p.command,
      args: p.args,
      buildpackId: p['buildpack-id'],
      direct: p.direct,
      ...(p['working-dir'] ? { workingDir: p['working-dir'] } : {}),
      ...(p['exec-env'] ? { execEnv: p['exec-env'] } : {}),
    })),
    ...(processType ? { defaultProcessType: processType } : {}),
  });
}

/** The lifecycle's own layers: launcher, config and process types. */
export interface LifecycleLayers {
  readonly launcher: Promise<ResolvedLayer>;
  readonly config: Promise<ResolvedLayer>;
  /** Filled once the process-types layer resolves; '' when there are no processes. */
  readonly processTypes: { sha: string };
}

/** planLifecycleLayers queues the launcher, config and process-types layers. */
export async function planLifecycleLayers(
  c: PlanContext,
  md: BuildMetadata,
  o: { launcher: LauncherInfo; extra: readonly KilnBuildpack[]; defaultProcess: string | undefined },
): Promise<LifecycleLayers> {
  const settings = c.resolver.settings;
  const launcherContent = syntheticContent(
    await launcherLayerEntries(o.launcher),
    settings,
    `launcher\0${o.launcher.sha256}`,
  );
  const launcher = c.queue.add('buildpacksio/lifecycle:launcher', CREATED_BY.launcher, () =>
    c.resolver.resolve(launcherContent, c.previous.launcher.sha),
  );
  await writeIfChanged(path.join(c.layersDir, LAUNCH_FILE), launchConfig(md, o.extra, o.defaultProcess));
  const configContent = await dirLayer(c, path.join(c.layersDir, 'config'), `${LAYERS_DIR.slice(1)}/config`);
  const config = c.queue.add('buildpacksio/lifecycle:config', CREATED_BY.config, () =>
    c.resolver.resolve(configContent, c.previous.config.sha),
  );
  const processTypes = { sha: '' };
  if (md.processes.length > 0) {
    const content = syntheticContent(processTypesLayerEntries(md.processes.map((p) => p.type)), settings);
    c.queue.add(
      'buildpacksio/lifecycle:process-types',
      CREATED_BY.processTypes,
      () => c.resolver.resolve(content, c.previous['process-types'].sha),
      (r) => {
        processTypes.sha = r.diffID;
      },
    );
  }
  return { launcher, config, processTypes };
}

/** What the export did with each planned layer, in stacking order. */
export interface StackedLayers {
  readonly appended: { layer: Layer; history: History }[];
  readonly records: Map<string, CachedLayer>;
  readonly added: string[];
  readonly reused: string[];
}

/** stackLayers waits for the queued layers in order, logging each as the reference exporter does. */
export async function stackLayers(
  queue: LayerQueue,
  created: string,
  log: { info(m: string): void; debug?(m: string): void },
): Promise<StackedLayers> {
  const out: StackedLayers = { appended: [], records: new Map(), added: [], reused: [] };
  for await (const { id, createdBy, resolved: r } of queue.drain()) {
    out.appended.push({ layer: r.layer, history: { created, created_by: createdBy } });
    if (r.record) out.records.set(r.diffID, r.record);
    if (r.how === 'reused') {
      out.reused.push(id);
      log.info(`Reusing layer '${id}'`);
    } else {
      out.added.push(id);
      log.info(`Adding layer '${id}'`);
    }
    log.debug?.(`Layer '${id}' SHA: ${r.diffID}`);
  }
  return out;
}
