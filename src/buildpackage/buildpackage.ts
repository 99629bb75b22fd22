import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  type BuildpackSource,
  buildpackLayer,
  buildpackPath,
  layerLabelEntry,
  readBuildpackSource,
} from '../builder/buildpack-source.ts';
import { Order } from '../cnb/buildpack-toml.ts';
import {
  BUILDPACK_ID_EXPECTED,
  BUILDPACK_ID_PATTERN,
  BUILDPACK_VERSION_EXPECTED,
  BUILDPACK_VERSION_PATTERN,
} from '../cnb/ids.ts';
import { formatKey } from '../cnb/toml-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { exists } from '../internal/fs.ts';
import { lstatInRoot } from '../internal/safe-read.ts';
import { extract } from '../layers/extract.ts';
import { BUILDPACKAGE_LIMITS, ExtractBudget } from '../layers/extract-limits.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Image, Layer } from '../oci/image.ts';
import type { Compression } from '../oci/media-types.ts';
import { DEFAULT_EPOCH, imageFrom, isoOfEpoch } from '../oci/memory.ts';
import { platformString } from '../oci/platform.ts';
import { type History, oneLine, type Platform } from '../oci/schema.ts';
import type { BuildpackUri, PackageConfig } from './package-config.ts';

/** Label keys of a buildpackage (CNB distribution spec). */
export const BuildpackageLabel = {
  Metadata: 'io.buildpacks.buildpackage.metadata',
  Layers: 'io.buildpacks.buildpack.layers',
} as const;

/** An entry of `io.buildpacks.buildpack.layers`: `{id: {version: LayerEntry}}`. */
export interface LayerEntry {
  readonly api?: string;
  readonly stacks?: readonly { id: string; mixins?: string[] }[];
  readonly targets?: readonly unknown[];
  readonly order?: Order;
  readonly layerDiffID: string;
  readonly homepage?: string;
  readonly name?: string;
}
export type LayersLabel = Record<string, Record<string, LayerEntry>>;

// The layers label comes from whoever published the package: these are the shapes kiln relies on
// (pack writes `api` as null when unknown).
const LayerEntrySchema = z.looseObject({
  api: z
    .string()
    .nullish()
    .transform((v) => v ?? undefined),
  stacks: z.array(z.looseObject({ id: z.string(), mixins: z.array(z.string()).optional() })).optional(),
  targets: z.array(z.unknown()).optional(),
  order: Order.optional(),
  layerDiffID: z.string(),
  homepage: z.string().optional(),
  name: z.string().optional(),
});
const LayersLabelSchema = z.record(z.string(), z.record(z.string(), LayerEntrySchema));

/** What `io.buildpacks.buildpackage.metadata` says: the entry buildpack. */
export interface BuildpackageMetadata {
  readonly id: string;
  readonly version: string;
  readonly name?: string;
  readonly homepage?: string;
  readonly stacks?: readonly { id: string; mixins?: string[] }[];
  readonly targets?: readonly unknown[];
}

/** One buildpack inside a package: its layer and its label entry. */
interface Module {
  readonly id: string;
  readonly version: string;
  readonly layer: Layer;
  readonly entry: LayerEntry;
}

/** Options of createBuildpackage. */
export interface CreateBuildpackageOptions {
  /** Where new buildpack layers are written (the store or layout the package is saved to). */
  readonly store: BlobStore;
  /** Opens a buildpackage image named by a uri (`docker://`, `oci:`, a `.cnb` file, a name). */
  readonly openImage: (uri: BuildpackUri & { kind: 'image' | 'cnb' }) => Promise<Image>;
  /** Scratch space for unpacking .tgz buildpacks (removed before returning). */
  readonly tmpDir: string;
  /** SOURCE_DATE_EPOCH (seconds); default 1980-01-01T00:00:01Z. */
  readonly epoch?: number;
  readonly compression?: Compression;
  /** Architecture of the config when the buildpack does not pin one (default amd64). */
  readonly arch?: string;
  /**
   * The platform of this package (`--platform`): the buildpack's `[[targets]]` must accept it,
   * and it is the config's platform whatever the targets pin.
   */
  readonly platform?: Platform;
}

/** Buildpackage is a created buildpackage image and what it holds. */
export interface Buildpackage {
  readonly image: Image;
  readonly metadata: BuildpackageMetadata;
  /** Every buildpack in the package, sorted by id then version. */
  readonly buildpacks: readonly { readonly id: string; readonly version: string }[];
}

const byIdVersion = (a: { id: string; version: string }, b: { id: string; version: string }) =>
  a.id === b.id ? (a.version < b.version ? -1 : a.version > b.version ? 1 : 0) : a.id < b.id ? -1 : 1;

/**
 * readBuildpackageLabels reads the two buildpackage labels of `image`; `what` names it in errors.
 * An image without them is not a buildpackage.
 */
export async function readBuildpackageLabels(
  image: Image,
  what: string,
): Promise<{ metadata: BuildpackageMetadata; layers: LayersLabel }> {
  const labels = (await image.configFile()).config?.Labels ?? {};
  const parse = (key: string): unknown => {
    const raw = labels[key];
    if (raw === undefined) throw new UsageError(`${what}: not a buildpackage: label ${key} missing`);
    try {
      return JSON.parse(raw);
    } catch {
      throw new UsageError(`${what}: label ${key} is not valid JSON`);
    }
  };
  // Both labels come from whoever published the package: check the shapes kiln relies on.
  const metadata = parse(BuildpackageLabel.Metadata) as BuildpackageMetadata | null;
  if (typeof metadata?.id !== 'string' || typeof metadata.version !== 'string')
    throw new UsageError(`${what}: label ${BuildpackageLabel.Metadata} has no id and version`);
  const r = LayersLabelSchema.safeParse(parse(BuildpackageLabel.Layers));
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new UsageError(
      oneLine(
        `${what}: label ${BuildpackageLabel.Layers}: ${formatKey(issue.path) || '(document)'}: ${issue.message}`,
      ),
    );
  }
  return { metadata, layers: r.data };
}

/** modulesOfImage lists the buildpacks of a buildpackage (or builder) with their layers. */
async function modulesOfImage(
  image: Image,
  what: string,
): Promise<{ entry: BuildpackageMetadata; modules: Module[] }> {
  const { metadata, layers: label } = await readBuildpackageLabels(image, what);
  const layers = await image.layers();
  const byDiffID = new Map<string, Layer>();
  for (const l of layers) byDiffID.set(await l.diffID(), l);
  const modules: Module[] = [];
  for (const [id, versions] of Object.entries(label)) {
    // Ids and versions become directories (`/cnb/buildpacks/<id>/<version>`) on the host.
    if (!BUILDPACK_ID_PATTERN.test(id))
      throw new UsageError(
        `${what}: label ${BuildpackageLabel.Layers}: buildpack id ${JSON.stringify(id)}: expected ${BUILDPACK_ID_EXPECTED}`,
      );
    for (const [version, entry] of Object.entries(versions ?? {})) {
      if (!BUILDPACK_VERSION_PATTERN.test(version))
        throw new UsageError(
          `${what}: label ${BuildpackageLabel.Layers}: buildpack ${id} version ${JSON.stringify(version)}: expected ${BUILDPACK_VERSION_EXPECTED}`,
        );
      const layer = byDiffID.get(entry?.layerDiffID);
      if (!layer)
        throw new KilnError(
          `${what}: buildpack ${id}@${version}: layer ${entry?.layerDiffID} is not in the image`,
        );
      modules.push({ id, version, layer, entry });
    }
  }
  return { entry: metadata, modules };
}

/**
 * createBuildpackage makes a buildpackage image from a package.toml (CNB distribution spec):
 * one layer per buildpack holding `/cnb/buildpacks/<escaped id>/<version>/` (the builder's
 * layer shape, src/builder/buildpack-source.ts), sorted by id then version; labels
 * `io.buildpacks.buildpackage.metadata` (the entry buildpack) and `io.buildpacks.buildpack.layers`.
 * Buildpacks from other buildpackages keep their layers as they are (never re-tarred). A composite
 * buildpack's order must be satisfied by the package. Same inputs, same digest.
 */
export async function createBuildpackage(
  config: PackageConfig,
  opts: CreateBuildpackageOptions,
): Promise<Buildpackage> {
  const epoch = opts.epoch ?? DEFAULT_EPOCH;
  const write = { store: opts.store, epoch, compression: opts.compression ?? 'gzip' } as const;
  const modules = new Map<string, Module>();
  const add = (m: Module, where: string) => {
    const key = `${m.id}@${m.version}`;
    const have = modules.get(key);
    if (have && have.entry.layerDiffID !== m.entry.layerDiffID)
      throw new UsageError(
        `${config.file}: ${where}: buildpack ${key} is already in the package with different content`,
      );
    if (!have) modules.set(key, m);
  };
  let scratch: string | undefined;
  const unpackTgz = async (file: string, where: string): Promise<string> => {
    scratch ??= await mkdtemp(path.join(opts.tmpDir, 'kiln-buildpackage-'));
    const dir = await mkdtemp(path.join(scratch, 'bp-'));
    try {
      await extract(createReadStream(file), dir, {
        special: 'skip',
        limits: new ExtractBudget(file, BUILDPACKAGE_LIMITS),
      });
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw new UsageError(`${config.file}: ${where}: cannot unpack ${file}: ${(e as Error).message}`);
    }
    return dir;
  };
  // Reads one uri: a buildpack source (directory, .tgz) or a buildpackage (image, .cnb).
  const load = async (
    uri: BuildpackUri,
    where: string,
  ): Promise<{ source: BuildpackSource } | { entry: BuildpackageMetadata; modules: Module[] }> => {
    if (uri.kind === 'dir' || uri.kind === 'tgz') {
      const dir = uri.kind === 'dir' ? uri.dir : await unpackTgz(uri.file, where);
      if (uri.kind === 'dir' && !(await exists(uri.dir)))
        throw new UsageError(`${config.file}: ${where}: ${uri.dir} does not exist`);
      return { source: await readBuildpackSource(dir) };
    }
    if (uri.kind === 'cnb' && !(await exists(uri.file)))
      throw new UsageError(`${config.file}: ${where}: ${uri.file} does not exist`);
    const what = uri.kind === 'cnb' ? uri.file : uri.ref;
    return modulesOfImage(await opts.openImage(uri), `${config.file}: ${where}: ${what}`);
  };
  const moduleOf = async (src: BuildpackSource): Promise<Module> => {
    const layer = await buildpackLayer(src, write);
    const isComposite = Boolean(src.descriptor.order?.length);
    const entry = layerLabelEntry(src, await layer.diffID(), !isComposite) as unknown as LayerEntry;
    return { id: src.id, version: src.version, layer, entry };
  };

  try {
    let entry: BuildpackageMetadata;
    const main = await load(config.buildpack, 'buildpack.uri');
    if ('source' in main) {
      const d = main.source.descriptor;
      add(await moduleOf(main.source), 'buildpack.uri');
      entry = {
        id: d.buildpack.id,
        version: d.buildpack.version,
        ...(d.buildpack.name ? { name: d.buildpack.name } : {}),
        ...(d.buildpack.homepage ? { homepage: d.buildpack.homepage } : {}),
      };
    } else {
      for (const m of main.modules) add(m, 'buildpack.uri');
      entry = main.entry;
    }
    for (const [i, dep] of config.dependencies.entries()) {
      const where = `dependencies[${i}]`;
      const got = await load(dep, where);
      if ('source' in got) add(await moduleOf(got.source), where);
      else for (const m of got.modules) add(m, where);
    }

    const top = modules.get(`${entry.id}@${entry.version}`)!;
    if (opts.platform) checkTargets(top.entry.targets, opts.platform, `${entry.id}@${entry.version}`);
    checkOrder(top, modules, config.file);
    const stacks = top.entry.stacks ?? (top.entry.order ? compositeStacks(top, modules) : undefined);
    const metadata: BuildpackageMetadata = {
      ...entry,
      ...(stacks?.length ? { stacks } : {}),
      ...(top.entry.targets?.length ? { targets: top.entry.targets } : {}),
    };
    const sorted = [...modules.values()].sort(byIdVersion);
    const label: LayersLabel = {};
    for (const m of sorted) {
      label[m.id] ??= {};
      label[m.id]![m.version] = m.entry;
    }
    const created = isoOfEpoch(epoch);
    const history: History[] = sorted.map((m) => ({
      created,
      created_by: `kiln buildpack package: buildpack ${m.id}@${m.version}`,
    }));
    const image = imageFrom({
      config: {
        architecture: opts.platform?.architecture ?? archOf(top.entry.targets) ?? opts.arch ?? 'amd64',
        ...(opts.platform?.variant ? { variant: opts.platform.variant } : {}),
        os: opts.platform?.os ?? config.os,
        created,
        config: {
          Labels: {
            [BuildpackageLabel.Metadata]: JSON.stringify(metadata),
            [BuildpackageLabel.Layers]: JSON.stringify(label),
          },
        },
        history,
      },
      layers: sorted.map((m) => m.layer),
    });
    return { image, metadata, buildpacks: sorted.map((m) => ({ id: m.id, version: m.version })) };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/** checkTargets fails when declared `[[targets]]` leave out `p` (an empty field matches anything). */
function checkTargets(targets: readonly unknown[] | undefined, p: Platform, what: string): void {
  if (!targets?.length) return;
  const m = (a: string | undefined, b: string | undefined) => !a || !b || a === b;
  const ts = targets as readonly { os?: string; arch?: string; variant?: string }[];
  if (ts.some((t) => m(t.os, p.os) && m(t.arch, p.architecture) && m(t.variant, p.variant))) return;
  const named = ts.map((t) => [t.os || '*', t.arch || '*', ...(t.variant ? [t.variant] : [])].join('/'));
  throw new UsageError(
    `buildpack ${what} cannot be packaged for ${platformString(p)}: its [[targets]] are ${named.join(', ')}`,
  );
}

// The config architecture: the one every declared target names, if they agree.
function archOf(targets: readonly unknown[] | undefined): string | undefined {
  const arches = new Set((targets ?? []).map((t) => (t as { arch?: string }).arch));
  if (arches.size !== 1) return undefined;
  return [...arches][0] || undefined;
}

/** findModule is the package's buildpack an order entry names (any version when it names none). */
function findModule(
  modules: ReadonlyMap<string, Module>,
  e: { id: string; version?: string | undefined },
): Module | undefined {
  return e.version ? modules.get(`${e.id}@${e.version}`) : [...modules.values()].find((m) => m.id === e.id);
}

/** A composite's order must name buildpacks the package carries (as pack checks). */
function checkOrder(top: Module, modules: ReadonlyMap<string, Module>, file: string): void {
  for (const [gi, g] of (top.entry.order ?? []).entries()) {
    for (const [ei, e] of g.group.entries()) {
      if (!findModule(modules, e))
        throw new UsageError(
          `${file}: buildpack ${top.id}@${top.version}: order[${gi}].group[${ei}]: ${e.id}${e.version ? `@${e.version}` : ''} is not in the package: add it to [[dependencies]]`,
        );
    }
  }
}

/**
 * compositeStacks is what pack records for a composite without stacks of its own: the stack ids
 * every component supports ("*" matches any). Components declaring targets instead leave it empty.
 */
function compositeStacks(top: Module, modules: ReadonlyMap<string, Module>): { id: string }[] | undefined {
  let ids: Set<string> | undefined;
  for (const g of top.entry.order ?? []) {
    for (const e of g.group) {
      const m = findModule(modules, e);
      if (!m?.entry.stacks?.length) return undefined;
      const own = new Set(m.entry.stacks.map((s) => s.id));
      if (!ids) ids = own;
      else if (own.has('*')) continue;
      else if (ids.has('*')) ids = own;
      else ids = new Set([...ids].filter((i) => own.has(i)));
    }
  }
  return ids ? [...ids].sort().map((id) => ({ id })) : undefined;
}

/**
 * extractBuildpackage unpacks the buildpack layers of a buildpackage into `dest` and returns the
 * directory of each buildpack (`dest/cnb/buildpacks/<escaped id>/<version>`), entry first.
 * Files belong to the caller; modes are kept.
 */
export async function extractBuildpackage(
  image: Image,
  dest: string,
  what: string,
): Promise<{ metadata: BuildpackageMetadata; dirs: string[] }> {
  const { entry, modules } = await modulesOfImage(image, what);
  // One bound for the whole package; on a hit nothing half-written stays behind.
  const limits = new ExtractBudget(what, BUILDPACKAGE_LIMITS);
  try {
    for (const m of modules) {
      limits.layer = String(await m.layer.digest());
      await extract(await m.layer.uncompressed(), dest, { special: 'skip', limits });
    }
  } catch (e) {
    await rm(dest, { recursive: true, force: true });
    throw e;
  }
  const dirs = modules
    .sort((a, b) =>
      a.id === entry.id && a.version === entry.version
        ? -1
        : b.id === entry.id && b.version === entry.version
          ? 1
          : byIdVersion(a, b),
    )
    .map((m) => path.join(dest, buildpackPath(m.id, m.version)));
  // Checked inside `dest` without following links: a layer may make cnb/buildpacks/<id> a link to
  // a host directory, which would then be read (and copied) as the buildpack.
  for (const d of dirs)
    if (
      !lstatInRoot(dest, `${path.relative(dest, d)}/buildpack.toml`, {
        what: 'the buildpackage',
        shown: what,
      })?.isFile()
    )
      throw new KilnError(`${what}: ${path.relative(dest, d)}/buildpack.toml is not in its layer`);
  return { metadata: entry, dirs };
}
