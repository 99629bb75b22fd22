import { closeSync, constants, fchmodSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readBuildToml } from '../cnb/build-toml.ts';
import { writeBuildpackPlan } from '../cnb/buildpack-plan.ts';
import type { GroupElement } from '../cnb/group-toml.ts';
import { escapeId, RESERVED_LAYER_NAMES } from '../cnb/ids.ts';
import { type Process, readLaunchToml } from '../cnb/launch-toml.ts';
import { type LayerMetadataFile, readLayerToml } from '../cnb/layer-toml.ts';
import { type BuildMetadata, type MetadataProcess, writeMetadataToml } from '../cnb/metadata.ts';
import { type PlanToml, planFor, withoutMet } from '../cnb/plan-toml.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { KilnError } from '../internal/errors.ts';
import {
  childOf,
  type InRootFile,
  inRoot,
  lstatInRoot,
  openFileInRootIfExists,
  readdirInRoot,
  readdirInRootIfExists,
  shownPath,
} from '../internal/safe-read.ts';
import { mkdirReadable } from '../layout/blob-store.ts';
import { type BuildpackDescriptor, isExecutable } from './buildpack-store.ts';
import { BuildEnv } from './env.ts';
import { BuildpackFailure } from './errors.ts';
import {
  buildpackDirInSandbox,
  chownToUser,
  cnbEnv,
  layersPathInSandbox,
  type PhaseOptions,
  phaseError,
  prepareSandbox,
  processEnv,
  removeScratch,
  runInSandbox,
  type Scratch,
  sandboxPathsOf,
  startPhase,
} from './phase-context.ts';
import { assertNoLinks } from './safe-fs.ts';

/** How a buildpack's outputs are named in errors: `layers/<bp>/store.toml`. */
const LAYERS = { what: 'the layers directory', shown: 'layers' } as const;

/** Inputs of the build phase. */
export interface BuildOptions extends PhaseOptions {
  /** The group from detect (group.toml), in order. */
  readonly group: readonly GroupElement[];
  /** The plan from detect (plan.toml). */
  readonly plan: PlanToml;
  /** Where to write metadata.toml; default `<layers>/config/metadata.toml`. */
  readonly metadataPath?: string;
}

/** SBOM media types by file extension, and the lifecycle's destination names. */
const SBOM_TYPES: readonly (readonly [string, string])[] = [
  ['sbom.cdx.json', 'application/vnd.cyclonedx+json'],
  ['sbom.spdx.json', 'application/spdx+json'],
  ['sbom.syft.json', 'application/vnd.syft+json'],
];

/** One SBOM file a buildpack wrote and where it goes under `<layers>/sbom`. */
interface SbomFile {
  readonly file: InRootFile;
  readonly ext: string;
  readonly layer: string;
  readonly kind: 'launch' | 'build' | 'cache';
}

/** BuildOutputs is what one buildpack contributed, for reports and tests. */
export interface BuildpackOutputs {
  readonly id: string;
  readonly layers: ReadonlyMap<string, LayerMetadataFile>;
  readonly processes: readonly Process[];
  readonly metRequires: readonly string[];
}

/**
 * build runs the build phase: for each buildpack of the group, in order, it writes the
 * buildpack's plan, runs `bin/build` in the sandbox with the environment built from scratch
 * (earlier buildpacks' build layers applied), then processes what it wrote: layer tomls (flags
 * only under `[types]`; all-false layers renamed `<layer>.ignore`), build.toml `unmet`, SBOM
 * files (declared formats only, copied under `<layers>/sbom/{launch,build,cache}`), launch.toml
 * processes, labels and slices. Finally it writes `<layers>/config/metadata.toml` and returns it.
 *
 * A failing `bin/build` is a BuildpackFailure naming the buildpack; other errors are the phase's.
 */
export async function build(o: BuildOptions): Promise<BuildMetadata> {
  const scratch = await startPhase(o, 'build');
  try {
    return await runBuild(o, scratch);
  } catch (err) {
    throw phaseError('build', err);
  } finally {
    await removeScratch(scratch.dir);
  }
}

async function runBuild(o: BuildOptions, scratch: Scratch): Promise<BuildMetadata> {
  await rm(join(o.layersDir, 'sbom'), { recursive: true, force: true });
  const env = BuildEnv.fromBase(o.baseEnv, o.extraEnv);
  let plan = o.plan;
  const outputs: { bp: string; out: OneOutputs }[] = [];
  const processes = new Map<string, MetadataProcess>();
  let defaultType: string | undefined;

  for (const [i, el] of o.group.entries()) {
    const bp = await o.buildpackStore.lookup(el.id, el.version);
    o.logger.debug(`Running build for buildpack ${bp.id}@${bp.version}`);
    // The next buildpack's sandbox gets ready while this one runs (this one's was prepared before).
    if (i + 1 < o.group.length) prepareSandbox(o);
    const out = await buildOne(o, bp, env, planFor(plan, bp.id), scratch);
    plan = withoutMet(plan, out.metRequires);
    outputs.push({ bp: bp.id, out });
    defaultType = addProcesses(o, bp.id, out.processes, processes, defaultType);
  }

  // Buildpacks have no business in <layers>/sbom or <layers>/config: whatever they left there
  // (maybe a symlink out of the layers dir) goes before kiln writes.
  await rm(join(o.layersDir, 'sbom'), { recursive: true, force: true });
  await rm(join(o.layersDir, 'config'), { recursive: true, force: true });
  await copySbomFiles(o.layersDir, outputs);
  await writeLegacyBoms(o.layersDir, outputs);

  const metadata = buildMetadataOf(o.group, defaultType, processes, outputs);
  const metadataPath = o.metadataPath ?? join(o.layersDir, 'config', 'metadata.toml');
  // 0755 whatever kiln's umask: <layers>/config is the root of the config layer.
  await mkdirReadable(dirname(metadataPath));
  await writeMetadataToml(metadataPath, metadata);
  return metadata;
}

/**
 * addProcesses records one buildpack's launch.toml processes (a later buildpack's process of the
 * same type replaces an earlier one) and returns the default process type after them.
 */
function addProcesses(
  o: BuildOptions,
  bpId: string,
  declared: readonly Process[],
  processes: Map<string, MetadataProcess>,
  defaultType: string | undefined,
): string | undefined {
  let result = defaultType;
  for (const p of declared) {
    if (p.default) {
      result = p.type;
    } else if (p.type === result) {
      result = undefined;
      o.logger.warn(`redefining the default process type ${p.type} with a process not marked as default`);
    }
    processes.set(p.type, {
      type: p.type,
      command: [...p.command],
      args: [...p.args],
      direct: p.direct,
      ...(p.workingDir ? { 'working-dir': p.workingDir } : {}),
      ...(p.execEnv?.length ? { 'exec-env': [...p.execEnv] } : {}),
      'buildpack-id': bpId,
    });
  }
  return result;
}

/** copySbomFiles copies every buildpack's declared SBOM files under `<layers>/sbom/<kind>/<bp>/<layer>`. */
async function copySbomFiles(
  layersDir: string,
  outputs: readonly { bp: string; out: OneOutputs }[],
): Promise<void> {
  for (const { bp, out } of outputs) {
    for (const f of out.sboms) {
      // Opened now, with every buildpack finished (a later buildpack may have swapped the file),
      // through safe-read: a link is refused, never followed. Copied as a stream, no size limit.
      const fd = openFileInRootIfExists(f.file.root, f.file.rel, f.file);
      if (fd === undefined) throw new KilnError(`${shownPath(f.file)} disappeared during the build`);
      const dir = join(layersDir, 'sbom', f.kind, escapeId(bp), f.layer);
      // 0755 whatever kiln's umask: these directories are tarred into the SBOM layers.
      await mkdirReadable(dir);
      copyOpened(fd, join(dir, f.ext));
    }
  }
}

/**
 * copyOpened copies the open file `fd` (closed here) to `dest`, mode 0644 whatever kiln's umask
 * (the SBOM layer must not depend on it), never through a link. In 64 KiB chunks, so no size
 * limit; synchronously: every buildpack has finished, nothing runs alongside, and a stream
 * pipeline cost a dozen thread-pool round trips per file (~1 ms each on a no-op rebuild's path).
 */
function copyOpened(fd: number, dest: string): void {
  let out: number | undefined;
  try {
    out = openSync(
      dest,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o644,
    );
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null))
      for (let at = 0; at < n; ) at += writeSync(out, buf, at, n - at);
    fchmodSync(out, 0o644);
  } finally {
    closeSync(fd);
    if (out !== undefined) closeSync(out);
  }
}

/** writeLegacyBoms writes legacy `bom` arrays as sbom.legacy.json (Platform 0.9+), only when a buildpack used them. */
async function writeLegacyBoms(
  layersDir: string,
  outputs: readonly { bp: string; out: OneOutputs }[],
): Promise<void> {
  const launchBom = outputs.flatMap(({ out }) => out.launchBom);
  const buildBom = outputs.flatMap(({ out }) => out.buildBom);
  if (launchBom.length) await writeJson(join(layersDir, 'sbom', 'launch', 'sbom.legacy.json'), launchBom);
  if (buildBom.length) await writeJson(join(layersDir, 'sbom', 'build', 'sbom.legacy.json'), buildBom);
}

/** buildMetadataOf is the content of metadata.toml: the group, processes sorted by type, slices and labels. */
function buildMetadataOf(
  group: BuildOptions['group'],
  defaultType: string | undefined,
  processes: ReadonlyMap<string, MetadataProcess>,
  outputs: readonly { bp: string; out: OneOutputs }[],
): BuildMetadata {
  return {
    ...(defaultType ? { 'buildpack-default-process-type': defaultType } : {}),
    buildpacks: group.map((g) => ({
      id: g.id,
      version: g.version,
      api: g.api,
      ...(g.homepage ? { homepage: g.homepage } : {}),
    })),
    processes: [...processes.values()].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0)),
    slices: outputs.flatMap(({ out }) => out.slices.map((s) => ({ paths: [...s.paths] }))),
    labels: outputs.flatMap(({ out }) => [...out.labels]),
    bom: [],
  };
}

interface OneOutputs {
  readonly metRequires: string[];
  readonly sboms: SbomFile[];
  readonly processes: readonly Process[];
  readonly labels: readonly { key: string; value: string }[];
  readonly slices: readonly { readonly paths: readonly string[] }[];
  readonly launchBom: readonly unknown[];
  readonly buildBom: readonly unknown[];
}

type PlanEntries = { name: string; metadata?: Record<string, unknown> }[];

/**
 * buildOne runs one buildpack's bin/build and reads back what it declared: layer tomls, build
 * layers for the next buildpacks' environment, build.toml's unmet entries, SBOM files, launch.toml.
 */
async function buildOne(
  o: BuildOptions,
  bp: BuildpackDescriptor,
  env: BuildEnv,
  entries: PlanEntries,
  scratch: Scratch,
): Promise<OneOutputs> {
  const key = `${bp.id}@${bp.version}`;
  const bpLayers = join(o.layersDir, escapeId(bp.id));
  // Everything the buildpack leaves in its layers dir is read through safe-read, inside the
  // layers dir: a link out of it is refused, never followed.
  const out = inRoot(o.layersDir, escapeId(bp.id), LAYERS);
  const at = (name: string) => childOf(out, name);
  await prepareLayersDir(o, bpLayers, out, key);
  await runBuildBinary(o, bp, env, entries, scratch, bpLayers, key);

  // 1. layer tomls: flags only under [types]; all-false layers are set aside as <layer>.ignore.
  const layers = await readLayerTomls(o.layersDir, bpLayers, out);
  checkLaunchScripts(o, bp, out, layers);
  // 2. build layers feed later buildpacks: root dirs, then env/ and env.build/ (no suffix = override).
  for (const [name, meta] of layers) {
    if (!meta.types.build) continue;
    await env.addRootDir(at(name), layersPathInSandbox(o, join(bpLayers, name)));
    await env.addEnvDir(at(`${name}/env`), 'override');
    await env.addEnvDir(at(`${name}/env.build`), 'override');
  }
  // 3. build.toml: every unmet name must be in this buildpack's plan.
  const buildToml = await readBuildToml(at('build.toml'));
  const metRequires = metRequiresOf(key, at('build.toml'), entries, buildToml.unmet ?? []);
  // 4. SBOM files.
  const sboms = sbomFiles(bp, out, layers);
  // 5. launch.toml.
  const launch = await readLaunchToml(at('launch.toml'), bp.api);
  for (const w of launch?.warnings ?? []) o.logger.warn(`buildpack ${key}: ${w}`);
  checkSlicePaths(key, at('launch.toml'), launch?.slices ?? []);
  return {
    metRequires,
    sboms,
    processes: launch?.processes ?? [],
    labels: launch?.labels ?? [],
    slices: launch?.slices ?? [],
    launchBom: legacyBom(o, bp, launch?.bom ?? [], sboms.length > 0),
    buildBom: legacyBom(o, bp, buildToml.bom ?? [], sboms.length > 0),
  };
}

/** prepareLayersDir creates the buildpack's layers dir, owned by the build user. */
async function prepareLayersDir(
  o: BuildOptions,
  bpLayers: string,
  out: InRootFile,
  key: string,
): Promise<void> {
  // An earlier buildpack may have planted a symlink here; kiln must not chown through it.
  if (lstatInRoot(out.root, out.rel, LAYERS)?.isSymbolicLink()) {
    throw new KilnError(
      `${shownPath(out)} is a symbolic link: expected a directory for the layers of ${key}`,
    );
  }
  await mkdir(bpLayers, { recursive: true });
  await chownToUser(o, bpLayers);
}

/** runBuildBinary writes the Buildpack Plan and runs bin/build in the sandbox; a failure is a BuildpackFailure. */
async function runBuildBinary(
  o: BuildOptions,
  bp: BuildpackDescriptor,
  env: BuildEnv,
  entries: PlanEntries,
  scratch: Scratch,
  bpLayers: string,
  key: string,
): Promise<void> {
  // The Buildpack Plan is read-only input: root-owned, in a dir only kiln writes, mounted read-only.
  const planPath = join(scratch.dir, escapeId(bp.id), 'plan.toml');
  await writeBuildpackPlan(planPath, { entries });

  const bin = join(bp.dir, 'bin', 'build');
  if (!isExecutable(bp, 'build')) {
    throw new BuildpackFailure(`buildpack ${key}: ${bin} is missing or not executable`, {
      buildpack: key,
      phase: 'build',
    });
  }
  const layersSandbox = layersPathInSandbox(o, bpLayers);
  const planSandbox = join(scratch.sandboxDir, escapeId(bp.id), 'plan.toml');
  const vars = await processEnv(
    o,
    env,
    bp,
    cnbEnv(o, bp, { planKey: 'CNB_BP_PLAN_PATH', planPath: planSandbox, layersDir: layersSandbox }),
  );
  const argv = [
    `${buildpackDirInSandbox(o, bp)}/bin/build`,
    layersSandbox,
    sandboxPathsOf(o).platform,
    planSandbox,
  ];
  const tail: string[] = [];
  const result = await runInSandbox(
    o,
    argv,
    vars,
    true,
    (line) => {
      o.logger.info(line);
      tail.push(line);
      if (tail.length > 20) tail.shift();
    },
    scratch.mount,
    { buildpack: key, phase: 'build' },
  );
  if (result.exitCode !== 0 || result.timedOut) {
    const why = result.timedOut
      ? 'timed out'
      : result.signal
        ? `was killed by ${result.signal}`
        : `exited with status ${result.exitCode}`;
    const notes = result.notes.length ? ` (${result.notes.join('; ')})` : '';
    throw new BuildpackFailure(`buildpack ${key} failed: bin/build ${why}${notes}`, {
      buildpack: key,
      phase: 'build',
      status: result.exitCode,
      signal: result.signal,
      notes: result.notes,
    });
  }
}

/** readLayerTomls reads every `<layer>.toml`; a layer with no type flag set is renamed `<layer>.ignore`. */
async function readLayerTomls(
  layersDir: string,
  bpLayers: string,
  out: InRootFile,
): Promise<Map<string, LayerMetadataFile>> {
  const layers = new Map<string, LayerMetadataFile>();
  // kiln renames, removes and chowns below it: the buildpack may not have swapped it for a link.
  await assertNoLinks(layersDir, bpLayers);
  for (const name of layerTomlNames(out)) {
    const meta = await readLayerToml(childOf(out, `${name}.toml`));
    if (!meta.types.launch && !meta.types.build && !meta.types.cache) {
      await rm(join(bpLayers, `${name}.ignore`), { recursive: true, force: true });
      await rename(join(bpLayers, name), join(bpLayers, `${name}.ignore`)).catch(
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        },
      );
    }
    layers.set(name, meta);
  }
  return layers;
}

/** metRequiresOf is the plan entries build.toml does not list as unmet; an unmet name must be one of them. */
function metRequiresOf(
  key: string,
  buildToml: InRootFile,
  entries: PlanEntries,
  unmetEntries: readonly { name: string }[],
): string[] {
  for (const u of unmetEntries) {
    if (!entries.some((e) => e.name === u.name)) {
      throw new KilnError(
        `buildpack ${key}: ${shownPath(buildToml)}: unmet.name '${u.name}' must match a requested dependency`,
      );
    }
  }
  const unmet = new Set(unmetEntries.map((u) => u.name));
  return entries.filter((e) => !unmet.has(e.name)).map((e) => e.name);
}

/** checkSlicePaths refuses a launch.toml slice path that is absolute or climbs out of the app directory. */
function checkSlicePaths(
  key: string,
  launchToml: InRootFile,
  slices: readonly { readonly paths: readonly string[] }[],
): void {
  for (const s of slices) {
    for (const p of s.paths) {
      if (p.startsWith('/') || p.split('/').includes('..')) {
        throw new KilnError(
          `buildpack ${key}: ${shownPath(launchToml)}: slices path "${p}" must stay inside the app directory`,
        );
      }
    }
  }
}

/** layerTomlNames lists `<name>.toml` files of a buildpack's layers dir that describe layers, sorted. */
function layerTomlNames(dir: InRootFile): string[] {
  const entries = readdirInRoot(dir.root, dir.rel, dir);
  return entries
    .filter((e) => !e.isDirectory() && e.name.endsWith('.toml'))
    .map((e) => e.name.slice(0, -5))
    .filter((n) => !RESERVED_LAYER_NAMES.includes(n))
    .sort();
}

/**
 * sbomFiles finds `<layers>/<bp>/*.sbom.*.json` and classifies them as the lifecycle does:
 * `launch.sbom.*` and `build.sbom.*` belong to the buildpack; `<layer>.sbom.*` follow the layer's
 * flags (launch, else build; cache in addition). Unknown formats and formats missing from
 * `sbom-formats` fail the build.
 */
function sbomFiles(
  bp: BuildpackDescriptor,
  bpLayers: InRootFile,
  layers: ReadonlyMap<string, LayerMetadataFile>,
): SbomFile[] {
  const names = readdirInRoot(bpLayers.root, bpLayers.rel, bpLayers)
    .map((e) => e.name)
    .filter((n) => /^[^/]*\.sbom\.[^/]*\.json$/.test(n))
    .sort();
  const declared = bp.sbomFormats.map((t) => t.split(';')[0]!.trim().toLowerCase());
  const out: SbomFile[] = [];
  for (const name of names) {
    const file = childOf(bpLayers, name);
    const path = shownPath(file);
    const layer = name.slice(0, name.indexOf('.'));
    const meta = layers.get(layer);
    // Like the lifecycle: an SBOM of a directory without a layer toml is not an SBOM of anything.
    if (layer !== 'launch' && layer !== 'build' && !meta) continue;
    const type = SBOM_TYPES.find(([ext]) => name.endsWith(`.${ext}`));
    if (!type) {
      throw new KilnError(`buildpack ${bp.id}@${bp.version}: unsupported SBOM file format: '${path}'`);
    }
    if (!declared.includes(type[1])) {
      throw new KilnError(
        `buildpack ${bp.id}@${bp.version}: undeclared SBOM media type '${type[1]}' of '${path}': add it to sbom-formats in buildpack.toml`,
      );
    }
    const ext = type[0];
    if (layer === 'launch') out.push({ file, ext, layer: '', kind: 'launch' });
    else if (layer === 'build') out.push({ file, ext, layer: '', kind: 'build' });
    else if (meta) {
      out.push({ file, ext, layer, kind: meta.types.launch ? 'launch' : 'build' });
      if (meta.types.cache) out.push({ file, ext, layer, kind: 'cache' });
    }
  }
  return out;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value));
}

/**
 * checkLaunchScripts checks what the launcher will run from launch layers: every `exec.d/*` and
 * `exec.d/<process>/*` file must be executable (else the image would only fail at launch), and
 * `profile.d` from Buildpack API 0.9+ gets a warning, since kiln launches processes directly and
 * never sources it.
 */
function checkLaunchScripts(
  o: BuildOptions,
  bp: BuildpackDescriptor,
  bpLayers: InRootFile,
  layers: ReadonlyMap<string, LayerMetadataFile>,
): void {
  for (const [name, meta] of layers) {
    if (!meta.types.launch) continue;
    const dir = childOf(bpLayers, name);
    const execD = childOf(dir, 'exec.d');
    for (const sub of [execD, ...subdirs(execD).map((d) => childOf(execD, d))]) {
      for (const e of readdirInRootIfExists(sub.root, sub.rel, sub) ?? []) {
        if (e.isDirectory()) continue;
        const f = childOf(sub, e.name);
        // A link is the launcher's to resolve inside the image; kiln does not follow it here.
        const st = lstatInRoot(f.root, f.rel, f);
        if (st && !st.isSymbolicLink() && (!st.isFile() || (st.mode & 0o111) === 0)) {
          throw new KilnError(
            `buildpack ${bp.id}@${bp.version}: ${shownPath(f)} is not executable: exec.d programs are run by the launcher`,
          );
        }
      }
    }
    if (bp.api.atLeast('0.9') && subdirs(dir).includes('profile.d')) {
      o.logger.warn(
        `buildpack ${bp.id}@${bp.version}: ${shownPath(childOf(dir, 'profile.d'))} has no effect: processes are launched directly (use exec.d or env files)`,
      );
    }
  }
}

function subdirs(dir: InRootFile): string[] {
  const entries = readdirInRootIfExists(dir.root, dir.rel, dir) ?? [];
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/**
 * legacyBom checks a deprecated `[[bom]]` table the way the lifecycle does (a top-level `version`
 * is an error, use `metadata.version`; a warning unless SBOM files are written too) and tags each
 * entry with the buildpack, as sbom.legacy.json carries it.
 */
function legacyBom(
  o: BuildOptions,
  bp: BuildpackDescriptor,
  bom: readonly unknown[],
  hasSbom: boolean,
): unknown[] {
  if (bom.length === 0) return [];
  if (!hasSbom) {
    o.logger.warn(
      `buildpack ${bp.id}@${bp.version}: the [[bom]] table is deprecated: write <layer>.sbom.<ext>, launch.sbom.<ext> or build.sbom.<ext> files`,
    );
  }
  return bom.map((entry, i) => {
    const e = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
    if (e.version !== undefined && e.version !== '') {
      throw new KilnError(
        `buildpack ${bp.id}@${bp.version}: bom[${i}] '${String(e.name)}' has a top level version which is not allowed: set metadata.version`,
      );
    }
    return { ...e, buildpack: { id: bp.id, version: bp.version } };
  });
}
