import fs from 'node:fs/promises';
import path from 'node:path';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import { escapeId, RESERVED_LAYER_NAMES } from '../cnb/ids.ts';
import { readLayerToml } from '../cnb/layer-toml.ts';
import {
  BUILD_METADATA_LABEL,
  BUILD_USER_LABEL,
  type BuildMetadata as BuildMetadataLabel,
  type BuildMetadataProcess,
  type BuildpackLayersMetadata,
  LIFECYCLE_METADATA_LABEL,
  type LifecycleMetadata,
  layerMetadataFor,
  PROJECT_METADATA_LABEL,
  type ProjectMetadata,
  RUN_IMAGE_SBOM_DIR,
  stringifyLabel,
} from '../cnb/lifecycle-metadata.ts';
import { type BuildMetadata, readMetadataToml } from '../cnb/metadata.ts';
import { readStoreToml } from '../cnb/store-toml.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { Semaphore } from '../internal/bounded.ts';
import { exists } from '../internal/fs.ts';
import type { Logger } from '../internal/log.ts';
import {
  encodeLaunchConfig,
  LAUNCH_FILE,
  LAUNCHER_SBOM_DIR,
  type LauncherInfo,
  type LaunchProcess,
  launcherLayerEntries,
  launcherSbom,
  processTypesLayerEntries,
} from '../launcher/index.ts';
import { inRoot, readdirInRootIfExists, statInRoot } from '../layers/safe-read.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { isoOfEpoch } from '../oci/memory.ts';
import { appendLayers, setConfig } from '../oci/mutate.ts';
import type { History } from '../oci/schema.ts';
import type { CachedLayer } from './cache.ts';
import {
  type LayerContent,
  layerDirContent,
  type ResolvedLayer,
  type ReuseContext,
  resolve,
  syntheticContent,
  touchBlob,
} from './layer-reuse.ts';

// The export phase: the run image plus, in the reference lifecycle's order, each buildpack's
// launch layers (group order, then layer name order), the launch SBOM layer, the app slices and
// the rest of the app, the launcher, the config layer (<layers>/config) and the process-types
// layer; then labels, env, entrypoint and working dir. Everything a layer could reuse is reused
// (see layer-reuse.ts), so an unchanged layer is never re-tarred, re-compressed or re-uploaded.

/** Where the build's directories sit inside the image (and the build sandbox). */
export const LAYERS_DIR = '/layers';
export const APP_DIR = '/workspace';
export const LAUNCHER_PATH = '/cnb/lifecycle/launcher';
export const PROCESS_DIR = '/cnb/process';

export { RUN_IMAGE_SBOM_DIR };

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

/** A group element as the exporter needs it. */
export interface ExportBuildpack {
  readonly id: string;
  readonly version: string;
  readonly api?: string;
  readonly homepage?: string;
}

/** Inputs of exportImage. */
export interface ExportOptions {
  /** Host path of `<layers>`. */
  readonly layersDir: string;
  /** Host path of `<app>`. */
  readonly appDir: string;
  readonly group: readonly ExportBuildpack[];
  /** Layers kiln contributes itself (e.g. trusted CA certificates), exported after the group's. */
  readonly extraBuildpacks?: readonly (ExportBuildpack & { readonly api: string })[];
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
  readonly runImageSboms?: { readonly cdx?: Uint8Array; readonly spdx?: Uint8Array };
  /** For the build metadata label: where the launcher's source lives. */
  readonly launcherSource?: { readonly repository: string; readonly commit: string };
  readonly project?: ProjectMetadata;
  /** `--default-process`. */
  readonly defaultProcess?: string;
  /** CNB_EXEC_ENV the build ran with, recorded as `io.buildpacks.exec-env` (Platform 0.15). */
  readonly execEnv?: string;
  readonly platformApi: string;
  /** Owner of app and buildpack layer content (CNB_USER_ID / CNB_GROUP_ID of the build image). */
  readonly uid: number;
  readonly gid: number;
  /** Blob store, settings, fingerprints, previous layers and counters (see layer-reuse). */
  readonly reuse: ReuseContext;
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

/** LayerDir is one `<layers>/<bp>/<name>` with its layer.toml. */
export interface LayerDir {
  readonly name: string;
  readonly path: string;
  readonly hasContents: boolean;
  readonly types: { launch: boolean; build: boolean; cache: boolean };
  readonly metadata: Record<string, unknown>;
}

/** How buildpack outputs are named in the exporter's errors (`layers/<bp>/<layer>.toml`). */
const LAYERS = { what: 'the layers directory', shown: 'layers', exitCode: ExitCode.ExportError } as const;

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

/** Go's filepath.Match for one path segment pattern set (`*`, `?`, `[...]`, `\` escapes). */
function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < glob.length) re += escapeRe(glob[++i]!);
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) throw new KilnError(`invalid slice pattern "${glob}": unclosed "["`, ExitCode.ExportError);
      let cls = glob.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replaceAll('\\', '\\\\')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * splitSlices partitions app entries (paths under `workspace/`) into one list per slice and the
 * rest. A slice takes the files and directories its globs match (a matched directory brings its
 * whole subtree) plus their parent directories; a path goes to the first slice that matches it.
 */
export function splitSlices(
  entries: readonly TarEntry[],
  prefix: string,
  slices: readonly { paths: readonly string[] }[],
): { slices: TarEntry[][]; rest: TarEntry[] } {
  const patterns = slices.map((s) =>
    s.paths.map((p) => {
      const clean = path.posix.normalize(p).replace(/^\.\//, '').replace(/\/$/, '');
      if (clean.startsWith('..') || path.posix.isAbsolute(clean))
        throw new KilnError(`slice path "${p}" escapes the app directory`, ExitCode.ExportError);
      return globToRegExp(clean);
    }),
  );
  const taken = new Map<string, number>();
  const rel = (e: TarEntry) => (e.path === prefix ? '' : e.path.slice(prefix.length + 1));
  for (const e of entries) {
    const r = rel(e);
    if (r === '') continue;
    for (let s = 0; s < patterns.length; s++) {
      const parts = r.split('/');
      // The path matches when it, or one of its parent directories, matches a glob.
      const hit = patterns[s]!.some((re) => parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/'))));
      if (hit) {
        taken.set(e.path, s);
        break;
      }
    }
  }
  const out: TarEntry[][] = slices.map(() => []);
  const rest: TarEntry[] = [];
  const parentsAdded: Set<string>[] = slices.map(() => new Set());
  for (const e of entries) {
    const s = taken.get(e.path);
    if (s === undefined) {
      // Directories stay in the rest layer too (they are the parents of what it holds).
      rest.push(e);
      continue;
    }
    if (e.type === 'dir') {
      parentsAdded[s]!.add(e.path);
      out[s]!.push(e);
      continue;
    }
    out[s]!.push(e);
  }
  // Add every slice's missing parent directories (entries are sorted, so parents come first).
  const dirs = new Map(entries.filter((e) => e.type === 'dir').map((e) => [e.path, e]));
  for (let s = 0; s < out.length; s++) {
    const need = new Set<string>();
    for (const e of out[s]!) {
      const parts = e.path.split('/');
      for (let i = 1; i < parts.length; i++) need.add(parts.slice(0, i).join('/'));
    }
    const extra = [...need]
      .filter((p) => !parentsAdded[s]!.has(p))
      .map((p) => dirs.get(p)!)
      .filter(Boolean);
    out[s] = [...extra, ...out[s]!].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  }
  // A directory fully moved into a slice still appears in the rest only if something left in it.
  return { slices: out, rest };
}

/**
 * writeIfChanged writes a file only when its content differs, so that a file kiln regenerates on
 * every build keeps its mtime (and the layer holding it its fingerprint) when nothing changed.
 */
async function writeIfChanged(file: string, body: string | Uint8Array): Promise<void> {
  const want = Buffer.from(body);
  const have = await fs.readFile(file).catch(() => undefined);
  if (have?.equals(want)) return;
  await fs.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, want);
}

/** entrypointFor picks ENTRYPOINT the way the reference exporter does. */
export function entrypointFor(md: BuildMetadata, userDefault: string | undefined): string {
  if (userDefault) {
    if (!md.processes.some((p) => p.type === userDefault))
      throw new KilnError(
        `default process "${userDefault}" is not defined: buildpacks defined ${md.processes.map((p) => `"${p.type}"`).join(', ') || 'no processes'}`,
        ExitCode.ExportError,
      );
    return `${PROCESS_DIR}/${userDefault}`;
  }
  const bpDefault = md['buildpack-default-process-type'];
  return bpDefault ? `${PROCESS_DIR}/${bpDefault}` : LAUNCHER_PATH;
}

function setEnv(env: readonly string[], name: string, value: string): string[] {
  const out = [...env];
  const i = out.findIndex((e) => e.startsWith(`${name}=`));
  if (i >= 0) out[i] = `${name}=${value}`;
  else out.push(`${name}=${value}`);
  return out;
}

function envValue(env: readonly string[], name: string): string | undefined {
  const e = env.find((x) => x.startsWith(`${name}=`));
  return e === undefined ? undefined : e.slice(name.length + 1);
}

/**
 * exportImage assembles the app image from the run image and the build's output (layers dir, app
 * dir, config/metadata.toml). It writes new layer blobs into `opts.reuse.blobs` and returns the
 * image (not yet written anywhere) with the metadata for the label, the report and the cache.
 */
export async function exportImage(opts: ExportOptions): Promise<ExportResult> {
  const { reuse, log } = opts;
  const epoch = reuse.settings.epoch;
  const created = isoOfEpoch(epoch);
  const added: string[] = [];
  const reused: string[] = [];
  const records = new Map<string, CachedLayer>();
  const contents = new Map<string, LayerContent>();
  const appended: { layer: Layer; history: History }[] = [];
  const prevMd = opts.previousMetadata;

  const md = await readMetadataToml(path.join(opts.layersDir, 'config', 'metadata.toml')).catch((e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || /ENOENT|not found/.test(String(e)))
      throw new KilnError(
        `export: ${path.join(opts.layersDir, 'config', 'metadata.toml')} is missing: did the build phase run?`,
        ExitCode.ExportError,
      );
    throw e;
  });

  // Layers are resolved two at a time (compression runs on the thread pool, one core each), but
  // stacked, logged and recorded strictly in order.
  const limit = new Semaphore(2);
  const slots: { id: string; createdBy: string; run: Promise<ResolvedLayer> }[] = [];
  const enqueue = (
    id: string,
    createdBy: string,
    fn: () => Promise<ResolvedLayer>,
    onDone?: (r: ResolvedLayer) => void,
  ): Promise<ResolvedLayer> => {
    const run = limit.run(fn);
    // Failures are awaited (and thrown) in order below, not here.
    run.then(onDone, () => {});
    slots.push({ id, createdBy, run });
    return run;
  };
  const push = (id: string, r: ResolvedLayer, createdBy: string) => {
    appended.push({ layer: r.layer, history: { created, created_by: createdBy } });
    if (r.record) records.set(r.diffID, r.record);
    if (r.how === 'reused') {
      reused.push(id);
      log.info(`Reusing layer '${id}'`);
    } else {
      added.push(id);
      log.info(`Adding layer '${id}'`);
    }
    log.debug?.(`Layer '${id}' SHA: ${r.diffID}`);
  };

  // A layer dir restore brought back is checked again (buildpacks ran since), reading only the
  // directories that changed, and listed for the tar only if its fingerprint is unknown.
  // Everything the build user wrote stays readable and runnable, never writable, for a run user
  // of its group (see walk's runUserModes); restore and the cache walk with the same options.
  const dirLayer = (dir: string, prefix: string): Promise<LayerContent> =>
    layerDirContent(reuse, dir, { prefix, uid: opts.uid, gid: opts.gid, runUserModes: true });

  // 1. Buildpack launch layers.
  const bpMetadata: BuildpackLayersMetadata[] = [];
  for (const bp of [...opts.group, ...(opts.extraBuildpacks ?? [])]) {
    const bpMd: BuildpackLayersMetadata = { key: bp.id, version: bp.version, layers: {} };
    const store = await readStoreToml(inRoot(opts.layersDir, `${escapeId(bp.id)}/store.toml`, LAYERS));
    if (store) bpMd.store = { metadata: store.metadata ?? {} };
    for (const l of await readLayerDirs(opts.layersDir, escapeId(bp.id))) {
      if (!l.types.launch) continue;
      const id = `${bp.id}:${l.name}`;
      const createdBy = CREATED_BY.buildpackLayer(l.name, `${bp.id}@${bp.version}`);
      const prev = layerMetadataFor(prevMd, bp.id, l.name);
      // The sha is the diffID the layer resolves to (known once its slot has run).
      const entry = { sha: '', data: l.metadata, build: l.types.build, launch: true, cache: l.types.cache };
      if (l.hasContents) {
        const content = await dirLayer(l.path, `${LAYERS_DIR.slice(1)}/${escapeId(bp.id)}/${l.name}`);
        contents.set(l.path, content);
        enqueue(
          id,
          createdBy,
          () => resolve(reuse, content, prev?.sha),
          (r) => {
            entry.sha = r.diffID;
          },
        );
      } else {
        if (l.types.cache)
          throw new KilnError(`layer '${id}' is cache=true but has no contents`, ExitCode.ExportError);
        const layer = prev?.sha ? reuse.previous.get(prev.sha) : undefined;
        if (!prev?.sha || !layer)
          throw new KilnError(
            `cannot reuse '${id}': the previous image has no layer '${id}' (launch = true with no directory means "keep the previous layer")`,
            ExitCode.ExportError,
          );
        await touchBlob(reuse.blobs, await layer.digest());
        const diffID = prev.sha as Digest;
        enqueue(id, createdBy, async () => ({ layer, diffID, how: 'reused' }));
        entry.sha = prev.sha;
      }
      bpMd.layers![l.name] = entry;
    }
    bpMetadata.push(bpMd);
  }

  // 2. The launch SBOM layer (buildpack SBOMs plus the launcher's own).
  for (const [ext, body] of Object.entries(opts.runImageSboms ?? {}))
    if (body) await writeIfChanged(path.join(opts.layersDir, RUN_IMAGE_SBOM_DIR, `sbom.${ext}.json`), body);
  const sboms = launcherSbom(opts.launcher);
  for (const [ext, body] of Object.entries(sboms))
    await writeIfChanged(path.join(opts.layersDir, LAUNCHER_SBOM_DIR, `sbom.${ext}.json`), body);
  let sbomSha: string | undefined;
  const sbomDir = path.join(opts.layersDir, 'sbom', 'launch');
  if (await exists(sbomDir)) {
    const content = await dirLayer(sbomDir, `${LAYERS_DIR.slice(1)}/sbom/launch`);
    enqueue(
      'buildpacksio/lifecycle:launch.sbom',
      CREATED_BY.sbom,
      () => resolve(reuse, content, prevMd.sbom?.sha),
      (r) => {
        sbomSha = r.diffID;
      },
    );
  }

  // 3. App slices, then the rest of the app.
  const appPrefix = APP_DIR.slice(1);
  const appContent = await dirLayer(opts.appDir, appPrefix);
  const appShas: { sha: string }[] = [];
  const appLayers: LayerContent[] = [];
  if (md.slices.length === 0) appLayers.push(appContent);
  else {
    const split = splitSlices(await appContent.entries(), appPrefix, md.slices);
    const fp = (entries: readonly TarEntry[], i: number) =>
      appContent.fingerprint
        ? syntheticContent(entries, reuse.settings, `${appContent.fingerprint}/${i}`).fingerprint
        : '';
    for (const [i, entries] of split.slices.entries())
      appLayers.push({ entries: async () => entries, fingerprint: fp(entries, i) });
    appLayers.push({ entries: async () => split.rest, fingerprint: fp(split.rest, -1) });
  }
  for (let i = 0; i < appLayers.length; i++) {
    const isRest = i === appLayers.length - 1;
    // Any previous app layer is a candidate: hashing is cheap next to compressing.
    const candidate = prevMd.app[i]?.sha ?? prevMd.app.at(-1)?.sha;
    const id = isRest ? 'buildpacksio/lifecycle:app' : `buildpacksio/lifecycle:slice-${i + 1}`;
    const slot = { sha: '' };
    appShas.push(slot);
    const content = appLayers[i]!;
    enqueue(
      id,
      isRest ? CREATED_BY.app : CREATED_BY.slice(i),
      () => resolve(reuse, content, candidate),
      (r) => {
        slot.sha = r.diffID;
      },
    );
  }

  // 4. Launcher, config and process types.
  const launcherContent = syntheticContent(
    await launcherLayerEntries(opts.launcher),
    reuse.settings,
    `launcher\0${opts.launcher.sha256}`,
  );
  const lrun = enqueue('buildpacksio/lifecycle:launcher', CREATED_BY.launcher, () =>
    resolve(reuse, launcherContent, prevMd.launcher.sha),
  );

  // The launcher's own input (processes and buildpack APIs, precomputed) ships in the config layer.
  await writeIfChanged(
    path.join(opts.layersDir, LAUNCH_FILE),
    encodeLaunchConfig({
      buildpacks: [...md.buildpacks, ...(opts.extraBuildpacks ?? [])].map((b) => ({ id: b.id, api: b.api })),
      processes: md.processes.map((p) => {
        const lp: LaunchProcess = {
          type: p.type,
          command: p.command,
          args: p.args,
          buildpackId: p['buildpack-id'],
        };
        return {
          ...lp,
          ...(p['working-dir'] ? { workingDir: p['working-dir'] } : {}),
          ...(p['exec-env'] ? { execEnv: p['exec-env'] } : {}),
        };
      }),
      ...((opts.defaultProcess ?? md['buildpack-default-process-type'])
        ? { defaultProcessType: opts.defaultProcess ?? md['buildpack-default-process-type'] }
        : {}),
    }),
  );
  const configContent = await dirLayer(path.join(opts.layersDir, 'config'), `${LAYERS_DIR.slice(1)}/config`);
  const crun = enqueue('buildpacksio/lifecycle:config', CREATED_BY.config, () =>
    resolve(reuse, configContent, prevMd.config.sha),
  );

  let processTypesSha = '';
  if (md.processes.length > 0) {
    const ptContent = syntheticContent(
      processTypesLayerEntries(md.processes.map((p) => p.type)),
      reuse.settings,
    );
    enqueue(
      'buildpacksio/lifecycle:process-types',
      CREATED_BY.processTypes,
      () => resolve(reuse, ptContent, prevMd['process-types'].sha),
      (r) => {
        processTypesSha = r.diffID;
      },
    );
  }

  // Every layer in order: the first failure (in stacking order) fails the export.
  for (const slot of slots) push(slot.id, await slot.run, slot.createdBy);
  const lr = await lrun;
  const cr = await crun;

  // 5. Metadata labels and the config.
  const runCfg = await opts.runImage.configFile();
  const topLayer = runCfg.rootfs.diff_ids.at(-1) ?? '';
  const runImageForExport: { image?: string; mirrors?: string[] } = {};
  if (opts.runImageName) runImageForExport.image = opts.runImageName;
  if (opts.runImageMirrors?.length) runImageForExport.mirrors = [...opts.runImageMirrors];
  const metadata: LifecycleMetadata = {
    app: appShas,
    config: { sha: cr.diffID },
    launcher: { sha: lr.diffID },
    'process-types': { sha: processTypesSha },
    buildpacks: bpMetadata,
    runImage: { topLayer, reference: opts.runImageRef, ...runImageForExport },
    stack: { runImage: runImageForExport },
  };
  if (sbomSha) metadata.sbom = { sha: sbomSha };

  const buildMetadata: BuildMetadataLabel = {
    bom: [],
    buildpacks: md.buildpacks.map((b) => {
      const out: { id: string; version: string; homepage?: string } = { id: b.id, version: b.version };
      if (b.homepage) out.homepage = b.homepage;
      return out;
    }),
    launcher: {
      version: opts.launcher.version,
      source: {
        git: {
          repository: opts.launcherSource?.repository ?? '',
          commit: opts.launcherSource?.commit ?? '',
        },
      },
    },
    processes: md.processes.map((p) => {
      const out: BuildMetadataProcess = {
        type: p.type,
        command: p.command,
        args: p.args,
        direct: p.direct,
        buildpackID: p['buildpack-id'],
      };
      if (p['working-dir']) out['working-dir'] = p['working-dir'];
      if (p['exec-env']) out['exec-env'] = p['exec-env'];
      return out;
    }),
  };
  if (md['buildpack-default-process-type'])
    buildMetadata['buildpack-default-process-type'] = md['buildpack-default-process-type'];

  const entrypoint = entrypointFor(md, opts.defaultProcess);
  const baseEnv = runCfg.config?.Env ?? [];
  let env = setEnv(baseEnv, 'CNB_LAYERS_DIR', LAYERS_DIR);
  env = setEnv(env, 'CNB_APP_DIR', APP_DIR);
  env = setEnv(env, 'CNB_PLATFORM_API', opts.platformApi);
  env = setEnv(env, 'CNB_DEPRECATION_MODE', 'quiet');
  const runPath = envValue(baseEnv, 'PATH');
  env = setEnv(
    env,
    'PATH',
    [PROCESS_DIR, path.posix.dirname(LAUNCHER_PATH), ...(runPath ? [runPath] : [])].join(':'),
  );

  const labels: Record<string, string> = { ...(runCfg.config?.Labels ?? {}) };
  labels[LIFECYCLE_METADATA_LABEL] = stringifyLabel(metadata);
  labels[BUILD_METADATA_LABEL] = stringifyLabel(buildMetadata);
  labels[PROJECT_METADATA_LABEL] = stringifyLabel(opts.project ?? {});
  for (const l of md.labels) labels[l.key] = l.value;
  if (opts.execEnv) labels['io.buildpacks.exec-env'] = opts.execEnv;
  labels[BUILD_USER_LABEL] = `${opts.uid}:${opts.gid}`;

  // Keep history entries one per layer: a base without history gets neutral entries first.
  const base = setConfig(opts.runImage, (cfg) => {
    const h = cfg.history ?? [];
    const nonEmpty = h.filter((x) => !x.empty_layer).length;
    const pad: History[] = Array.from({ length: Math.max(0, cfg.rootfs.diff_ids.length - nonEmpty) }, () => ({
      created,
    }));
    return { ...cfg, history: [...h, ...pad] };
  });
  let image = appendLayers(base, ...appended);
  image = setConfig(image, {
    env,
    entrypoint: [entrypoint],
    cmd: null,
    workingDir: APP_DIR,
    labels,
    created,
  });
  log.info(`Setting default process type: ${entrypoint}`);
  return { image, metadata, buildMetadata, layers: records, contents, added, reused };
}
