import type { Image, Layer } from './image.ts';
import { descriptorOfLayer, LazyImage } from './memory.ts';
import type { ConfigFile, ContainerConfig, Descriptor, History } from './schema.ts';

// ggcr-style mutations: each returns a NEW Image wrapping the old one; nothing is changed in
// place and every derived field (config bytes, manifest, digest) is computed lazily, once.

/** A layer to append, optionally with the history entry that describes it. */
export type Addendum = Layer | { readonly layer: Layer; readonly history?: History };

function isLayer(a: Addendum): a is Layer {
  return typeof (a as Layer).digest === 'function';
}

async function baseAnnotations(image: Image): Promise<Record<string, string> | undefined> {
  return (await image.manifest()).annotations;
}

async function baseSubject(image: Image): Promise<Descriptor | undefined> {
  return (await image.manifest()).subject;
}

/**
 * appendLayers returns `image` with `layers` added on top (in order). Base layer descriptors are
 * reused as they are, so base layers are never re-read. When the base config keeps a history,
 * (or an addendum brings one) a history entry is appended per layer so the counts stay equal.
 */
export function appendLayers(image: Image, ...additions: Addendum[]): Image {
  const items = additions.map((a) => (isLayer(a) ? { layer: a, history: undefined } : a));
  const added = items.map((i) => i.layer);
  return new LazyImage({
    mediaType: () => image.mediaType(),
    layers: async () => [...(await image.layers()), ...added],
    layerDescriptors: async () => [
      ...(await image.manifest()).layers,
      ...(await Promise.all(added.map(descriptorOfLayer))),
    ],
    config: async () => {
      const cfg = structuredClone(await image.configFile());
      const diffIDs = await Promise.all(added.map((l) => l.diffID()));
      cfg.rootfs = { type: 'layers', diff_ids: [...cfg.rootfs.diff_ids, ...diffIDs] };
      if (cfg.history || items.some((i) => i.history)) {
        const history = cfg.history ?? [];
        for (const i of items) history.push(i.history ?? (cfg.created ? { created: cfg.created } : {}));
        cfg.history = history;
      }
      return cfg;
    },
    annotations: () => baseAnnotations(image),
    subject: () => baseSubject(image),
  });
}

/** Fields setConfig can replace. `labels`/`env` replace the whole map/list; use a function to merge. */
export interface ConfigUpdate {
  readonly env?: readonly string[];
  readonly entrypoint?: readonly string[] | null;
  readonly cmd?: readonly string[] | null;
  readonly user?: string;
  readonly workingDir?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly exposedPorts?: readonly string[];
  readonly stopSignal?: string;
  /** RFC 3339 creation time (use isoOfEpoch(SOURCE_DATE_EPOCH) for reproducible images). */
  readonly created?: string;
  readonly author?: string;
  readonly history?: readonly History[];
}

function applyUpdate(cfg: ConfigFile, u: ConfigUpdate): ConfigFile {
  const c: ContainerConfig = { ...(cfg.config ?? {}) };
  if (u.env !== undefined) c.Env = [...u.env];
  if (u.entrypoint !== undefined) c.Entrypoint = u.entrypoint === null ? null : [...u.entrypoint];
  if (u.cmd !== undefined) c.Cmd = u.cmd === null ? null : [...u.cmd];
  if (u.user !== undefined) c.User = u.user;
  if (u.workingDir !== undefined) c.WorkingDir = u.workingDir;
  if (u.labels !== undefined) c.Labels = { ...u.labels };
  if (u.stopSignal !== undefined) c.StopSignal = u.stopSignal;
  if (u.exposedPorts !== undefined) c.ExposedPorts = Object.fromEntries(u.exposedPorts.map((p) => [p, {}]));
  const out: ConfigFile = { ...cfg, config: c };
  if (u.created !== undefined) out.created = u.created;
  if (u.author !== undefined) out.author = u.author;
  if (u.history !== undefined) out.history = u.history.map((h) => ({ ...h }));
  return out;
}

/**
 * setConfig returns `image` with its config changed by `update`: either a partial of the common
 * fields, or a function given a deep copy of the config. rootfs.diff_ids always stay the base's.
 */
export function setConfig(image: Image, update: ConfigUpdate | ((cfg: ConfigFile) => ConfigFile)): Image {
  return new LazyImage({
    mediaType: () => image.mediaType(),
    layers: () => image.layers(),
    layerDescriptors: async () => (await image.manifest()).layers,
    config: async () => {
      const base = structuredClone(await image.configFile());
      const next = typeof update === 'function' ? update(structuredClone(base)) : applyUpdate(base, update);
      return { ...next, rootfs: base.rootfs };
    },
    annotations: () => baseAnnotations(image),
    subject: () => baseSubject(image),
  });
}

/** addLabels returns `image` with `labels` merged into its config labels (later wins). */
export function addLabels(image: Image, labels: Readonly<Record<string, string>>): Image {
  return setConfig(image, (cfg) => ({
    ...cfg,
    config: { ...cfg.config, Labels: { ...(cfg.config?.Labels ?? {}), ...labels } },
  }));
}

/**
 * setManifestAnnotations returns `image` with `annotations` merged into its manifest
 * annotations; a value of `null` removes a key.
 */
export function setManifestAnnotations(
  image: Image,
  annotations: Readonly<Record<string, string | null>>,
): Image {
  return new LazyImage({
    mediaType: () => image.mediaType(),
    layers: () => image.layers(),
    layerDescriptors: async () => (await image.manifest()).layers,
    config: () => image.configFile(),
    annotations: async () => {
      const out: Record<string, string> = { ...((await baseAnnotations(image)) ?? {}) };
      for (const [k, v] of Object.entries(annotations)) {
        if (v === null) delete out[k];
        else out[k] = v;
      }
      return out;
    },
    subject: () => baseSubject(image),
  });
}

/** withLayerAnnotations returns a Layer identical to `layer` whose descriptor carries `annotations`. */
export function withLayerAnnotations(layer: Layer, annotations: Readonly<Record<string, string>>): Layer {
  return {
    mediaType: layer.mediaType,
    digest: () => layer.digest(),
    diffID: () => layer.diffID(),
    size: () => layer.size(),
    compressed: (opts) => layer.compressed(opts),
    uncompressed: () => layer.uncompressed(),
    annotations: { ...(layer.annotations ?? {}), ...annotations },
  };
}

/**
 * replaceLayers returns `image` with its bottom `count` layers swapped for `newBase` (whose
 * config history entries are not carried over: rebase rewrites the config from the app image).
 * The app layers above keep their descriptors byte for byte.
 */
export function replaceBaseLayers(image: Image, count: number, newBase: readonly Layer[]): Image {
  return new LazyImage({
    mediaType: () => image.mediaType(),
    layers: async () => [...newBase, ...(await image.layers()).slice(count)],
    layerDescriptors: async () => [
      ...(await Promise.all(newBase.map(descriptorOfLayer))),
      ...(await image.manifest()).layers.slice(count),
    ],
    config: async () => {
      const cfg = structuredClone(await image.configFile());
      const diffIDs = await Promise.all(newBase.map((l) => l.diffID()));
      if (count > cfg.rootfs.diff_ids.length)
        throw new RangeError(
          `replaceBaseLayers: image has ${cfg.rootfs.diff_ids.length} layers, cannot replace ${count}`,
        );
      cfg.rootfs = { type: 'layers', diff_ids: [...diffIDs, ...cfg.rootfs.diff_ids.slice(count)] };
      return cfg;
    },
    annotations: () => baseAnnotations(image),
    subject: () => baseSubject(image),
  });
}
