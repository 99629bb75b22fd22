import { z } from 'zod';
import { bytesEntry } from '../archive/tar-file.ts';
import { Order, targetsOf } from '../cnb/buildpack-toml.ts';
import type { SystemToml } from '../cnb/system-toml.ts';
import { formatKey, toTomlText } from '../cnb/toml-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { writeLayer } from '../layers/layer-writer.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Image, Layer } from '../oci/image.ts';
import type { Compression } from '../oci/media-types.ts';
import { isoOfEpoch } from '../oci/memory.ts';
import { appendLayers, setConfig } from '../oci/mutate.ts';
import { platformString } from '../oci/platform.ts';
import { jsonTooDeep, oneLine, type Platform } from '../oci/schema.ts';
import type { BuilderConfig } from './builder-config.ts';
import {
  type BuildpackSource,
  buildpackLayer,
  layerLabelEntry,
  readBuildpackSource,
} from './buildpack-source.ts';
import { type ExtensionSource, extensionLayer, readExtensionSource } from './extension-source.ts';

/** Label keys of a builder image. */
export const BuilderLabel = {
  Metadata: 'io.buildpacks.builder.metadata',
  Layers: 'io.buildpacks.buildpack.layers',
  Order: 'io.buildpacks.buildpack.order',
  /** Image extensions, as pack labels them (a builder kiln makes carries them; kiln never runs them). */
  ExtensionLayers: 'io.buildpacks.extension.layers',
  OrderExtensions: 'io.buildpacks.buildpack.order-extensions',
  StackId: 'io.buildpacks.stack.id',
  BaseId: 'io.buildpacks.base.id',
  /** The OCI pre-defined labels naming the builder's base, its build image (for provenance). */
  BaseName: 'org.opencontainers.image.base.name',
  BaseDigest: 'org.opencontainers.image.base.digest',
  /** kiln: the default builder's input digest (see default-builder.ts). */
  Key: 'io.kiln.builder.key',
} as const;

/** Options of createBuilder. */
export interface CreateBuilderOptions {
  /** The stack's build image (the builder's base). */
  readonly buildImage: Image;
  /** Where the new layers are written (the store or layout the builder is saved to). */
  readonly store: BlobStore;
  /** SOURCE_DATE_EPOCH (seconds); default 1980-01-01T00:00:01Z. */
  readonly epoch?: number;
  readonly compression?: Compression;
  /** Version of kiln, recorded as createdBy and lifecycle version. */
  readonly kilnVersion: string;
  /** How the build image was named (recorded with its digest as the builder's base). */
  readonly buildImageName?: string;
  /** Extra labels (e.g. the default builder's key). */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Unpacks a buildpackage uri of the config (`image` of a buildpacks entry) and returns the
   * directory of each buildpack it holds (src/cli/commands/buildpack.ts provides it). Their
   * layers come out identical to the package's, as both are made by buildpackLayer.
   */
  readonly buildpackages?: (uri: string) => Promise<readonly string[]>;
  /**
   * The platform this builder is for (`--platform`): buildpacks whose `[[targets]]` exclude it
   * are left out, with the order groups that need them (optional entries are just dropped).
   */
  readonly platform?: Platform;
}

/**
 * forPlatform keeps the buildpacks whose targets accept `p` (a composite, or one declaring no
 * targets, accepts any) and the order groups they can still run; fails when no group is left.
 */
export function forPlatform(
  sources: readonly BuildpackSource[],
  order: Order,
  p: Platform,
  file: string,
): { sources: BuildpackSource[]; order: Order } {
  // An empty field on either side matches (the lifecycle's rule); distros are checked at detect.
  const m = (a: string | undefined, b: string | undefined) => !a || !b || a === b;
  const kept = sources.filter((s) => {
    if (s.descriptor.order?.length) return true;
    const targets = targetsOf(s.descriptor, true);
    return (
      targets.length === 0 ||
      targets.some((t) => m(t.os, p.os) && m(t.arch, p.architecture) && m(t.variant, p.variant))
    );
  });
  const has = (id: string, version?: string) =>
    kept.some((s) => s.id === id && (!version || s.version === version));
  const groups = order.flatMap((g) => {
    if (g.group.some((e) => !e.optional && !has(e.id, e.version))) return [];
    return [{ ...g, group: g.group.filter((e) => has(e.id, e.version)) }];
  });
  if (groups.length === 0)
    throw new UsageError(
      `${file}: no order group can run on ${platformString(p)}: its buildpacks' [[targets]] leave out ${p.architecture}`,
    );
  return { sources: kept, order: groups };
}

/** Builder is a created builder image with what went into it. */
export interface Builder {
  readonly image: Image;
  readonly buildpacks: readonly BuildpackSource[];
  readonly order: Order;
}

function fileEntry(path: string, text: string): TarEntry {
  return bytesEntry(path, Buffer.from(text));
}

function dirEntry(path: string, uid = 0, gid = 0): TarEntry {
  return { path, type: 'dir', mode: 0o755, uid, gid };
}

function envValue(env: readonly string[] | undefined, name: string): string | undefined {
  const hit = env?.find((e) => e.startsWith(`${name}=`));
  return hit?.slice(name.length + 1);
}

/**
 * resolveOrder fills in versions the builder config left out (a buildpack present in one
 * version only) and rejects references to buildpacks the builder does not carry.
 */
export function resolveOrder(
  order: Order,
  buildpacks: readonly { readonly id: string; readonly version: string }[],
  file: string,
  kind: 'buildpack' | 'extension' = 'buildpack',
): Order {
  const [key, list] =
    kind === 'buildpack' ? ['order', '[[buildpacks]]'] : ['order-extensions', '[[extensions]]'];
  return order.map((g, gi) => ({
    ...g,
    group: g.group.map((e, ei) => {
      const candidates = buildpacks.filter((b) => b.id === e.id && (!e.version || b.version === e.version));
      if (candidates.length === 0) {
        throw new UsageError(
          `${file}: ${key}[${gi}].group[${ei}]: ${kind} ${e.id}${e.version ? `@${e.version}` : ''} is not in ${list}`,
        );
      }
      if (!e.version && candidates.length > 1) {
        throw new UsageError(
          `${file}: ${key}[${gi}].group[${ei}]: ${kind} ${e.id} has several versions; name one`,
        );
      }
      return {
        id: e.id,
        version: e.version ?? candidates[0]!.version,
        ...(e.optional ? { optional: true } : {}),
      };
    }),
  }));
}

/**
 * configEntries are the builder's own files: order.toml, run.toml, stack.toml, the build-config
 * env, and the /workspace, /layers (build user) and /platform directories.
 */
export function configEntries(
  config: BuilderConfig,
  order: Order,
  user: { uid: number; gid: number },
  orderExtensions: Order = [],
  system?: SystemToml,
): TarEntry[] {
  const run = config.runImages[0]!;
  const entries: TarEntry[] = [
    ...(system ? [fileEntry('cnb/system.toml', toTomlText(system))] : []),
    dirEntry('cnb'),
    fileEntry(
      'cnb/order.toml',
      toTomlText(orderExtensions.length ? { order, 'order-extensions': orderExtensions } : { order }),
    ),
    fileEntry(
      'cnb/run.toml',
      toTomlText({ images: config.runImages.map((i) => ({ image: i.image, mirrors: [...i.mirrors] })) }),
    ),
    fileEntry('cnb/stack.toml', toTomlText({ 'run-image': { image: run.image, mirrors: [...run.mirrors] } })),
    dirEntry('layers', user.uid, user.gid),
    dirEntry('platform'),
    dirEntry('workspace', user.uid, user.gid),
  ];
  if (config.buildEnv.length > 0) {
    entries.push(dirEntry('cnb/build-config'), dirEntry('cnb/build-config/env'));
    for (const e of config.buildEnv) {
      const name = e.suffix ? `${e.name}.${e.suffix}` : e.name;
      entries.push(fileEntry(`cnb/build-config/env/${name}`, e.value));
      if (e.delim !== undefined) entries.push(fileEntry(`cnb/build-config/env/${e.name}.delim`, e.delim));
    }
  }
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * createBuilder makes a builder image: the build image plus one layer per buildpack
 * (/cnb/buildpacks/<escaped id>/<version>), one layer with the builder's own files, and the
 * builder labels of the CNB distribution spec (see README.md). Nothing is pulled or pushed: the
 * result is a lazy Image whose new layers are already in `opts.store`.
 */
export async function createBuilder(config: BuilderConfig, opts: CreateBuilderOptions): Promise<Builder> {
  const sources: BuildpackSource[] = [];
  for (const b of config.buildpacks) {
    if (b.image) {
      if (!opts.buildpackages)
        throw new KilnError(`${config.file}: buildpack uri ${b.image}: buildpackages cannot be opened here`);
      const found: BuildpackSource[] = [];
      for (const dir of await opts.buildpackages(b.image)) found.push(await readBuildpackSource(dir));
      if (b.id && !found.some((s) => s.id === b.id && (!b.version || s.version === b.version)))
        throw new UsageError(
          `${config.file}: buildpackage ${b.image} holds no ${b.id}${b.version ? `@${b.version}` : ''}`,
        );
      // Components a composite package shares with another entry are the same buildpack: keep one.
      for (const s of found)
        if (!sources.some((x) => x.id === s.id && x.version === s.version)) sources.push(s);
      continue;
    }
    const src = await readBuildpackSource(b.dir, b);
    if (sources.some((s) => s.id === src.id && s.version === src.version)) {
      throw new UsageError(`${config.file}: buildpack ${src.id}@${src.version} is listed twice`);
    }
    sources.push(src);
  }
  sources.sort((a, b) => (a.id === b.id ? (a.version < b.version ? -1 : 1) : a.id < b.id ? -1 : 1));
  let configOrder = config.order;
  if (opts.platform) {
    const f = forPlatform(sources, configOrder, opts.platform, config.file);
    sources.splice(0, sources.length, ...f.sources);
    configOrder = f.order;
  }
  const order = resolveOrder(configOrder, sources, config.file);
  const extensions: ExtensionSource[] = [];
  for (const x of config.extensions) {
    const src = await readExtensionSource(x.dir, x);
    if (extensions.some((e) => e.id === src.id && e.version === src.version))
      throw new UsageError(`${config.file}: extension ${src.id}@${src.version} is listed twice`);
    extensions.push(src);
  }
  extensions.sort((a, b) => (a.id === b.id ? (a.version < b.version ? -1 : 1) : a.id < b.id ? -1 : 1));
  const orderExtensions = resolveOrder(config.orderExtensions, extensions, config.file, 'extension');
  const system = resolveSystem(config, sources);

  const base = await opts.buildImage.configFile();
  const baseEnv = base.config?.Env ?? [];
  const uid = Number(envValue(baseEnv, 'CNB_USER_ID') ?? 1000);
  const gid = Number(envValue(baseEnv, 'CNB_GROUP_ID') ?? 1000);
  const baseLabels = base.config?.Labels ?? {};
  const stackId = config.stackId ?? baseLabels[BuilderLabel.StackId] ?? baseLabels[BuilderLabel.BaseId];

  const write = {
    store: opts.store,
    ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
    ...(opts.compression ? { compression: opts.compression } : {}),
  };
  const created = isoOfEpoch(opts.epoch ?? 315532801);
  const layers: { layer: Layer; history: { created: string; created_by: string } }[] = [];
  const layerLabel: Record<string, Record<string, unknown>> = {};
  for (const src of sources) {
    const layer = await buildpackLayer(src, write);
    layers.push({
      layer,
      history: { created, created_by: `kiln builder create: buildpack ${src.id}@${src.version}` },
    });
    layerLabel[src.id] ??= {};
    layerLabel[src.id]![src.version] = layerLabelEntry(
      src,
      await layer.diffID(),
      !src.descriptor.order?.length,
    );
  }
  const extLabel: Record<string, Record<string, unknown>> = {};
  for (const src of extensions) {
    const layer = await extensionLayer(src, write);
    layers.push({
      layer,
      history: { created, created_by: `kiln builder create: extension ${src.id}@${src.version}` },
    });
    extLabel[src.id] ??= {};
    extLabel[src.id]![src.version] = {
      api: src.descriptor.api,
      layerDiffID: await layer.diffID(),
      ...(src.descriptor.extension.homepage ? { homepage: src.descriptor.extension.homepage } : {}),
      ...(src.descriptor.extension.name ? { name: src.descriptor.extension.name } : {}),
    };
  }
  const configLayer = await writeLayer(
    configEntries(config, order, { uid, gid }, orderExtensions, system),
    write,
  );
  layers.push({
    layer: configLayer,
    history: { created, created_by: 'kiln builder create: order, run images, build config' },
  });

  const run = config.runImages[0]!;
  const metadata = {
    description: config.description,
    buildpacks: sources.map((s) => ({
      id: s.id,
      version: s.version,
      ...(s.descriptor.buildpack.homepage ? { homepage: s.descriptor.buildpack.homepage } : {}),
      ...(s.descriptor.buildpack.name ? { name: s.descriptor.buildpack.name } : {}),
    })),
    extensions: extensions.map((x) => ({ id: x.id, version: x.version })),
    stack: { runImage: { image: run.image, mirrors: [...run.mirrors] } },
    images: config.runImages.map((i) => ({ image: i.image, mirrors: [...i.mirrors] })),
    // No `lifecycle`: the builder holds no /cnb/lifecycle (kiln runs the lifecycle itself), and a
    // label listing lifecycle APIs would let pack or kpack accept it and fail late, when they run
    // /cnb/lifecycle/creator. Without it they refuse the builder up front.
    createdBy: { name: 'kiln', version: opts.kilnVersion },
  };
  const env = [...baseEnv];
  if (envValue(env, 'CNB_USER_ID') === undefined) env.push(`CNB_USER_ID=${uid}`);
  if (envValue(env, 'CNB_GROUP_ID') === undefined) env.push(`CNB_GROUP_ID=${gid}`);
  const { [BuilderLabel.BaseName]: _baseName, ...ownBaseLabels } = baseLabels;
  const labels: Record<string, string> = {
    ...ownBaseLabels,
    [BuilderLabel.Metadata]: JSON.stringify(metadata),
    [BuilderLabel.Layers]: JSON.stringify(layerLabel),
    [BuilderLabel.Order]: JSON.stringify(order),
    ...(extensions.length
      ? {
          [BuilderLabel.ExtensionLayers]: JSON.stringify(extLabel),
          [BuilderLabel.OrderExtensions]: JSON.stringify(orderExtensions),
        }
      : {}),
    ...(stackId ? { [BuilderLabel.StackId]: stackId } : {}),
    // The build image's own base labels (if any) name its base, not this builder's: replaced.
    [BuilderLabel.BaseDigest]: await opts.buildImage.digest(),
    ...(opts.buildImageName ? { [BuilderLabel.BaseName]: opts.buildImageName } : {}),
    ...(opts.labels ?? {}),
  };
  const image = setConfig(appendLayers(opts.buildImage, ...layers), (cfg) => ({
    ...cfg,
    created,
    config: {
      ...cfg.config,
      Env: env,
      User: cfg.config?.User || `${uid}:${gid}`,
      WorkingDir: '/layers',
      Labels: labels,
    },
  }));
  return { image, buildpacks: sources, order };
}

/** BuilderInfo is what a builder image's labels say (for `kiln builder inspect` and platforms). */
export interface BuilderInfo {
  readonly description: string;
  readonly stackId: string | undefined;
  readonly buildImageUser: string | undefined;
  readonly runImages: readonly { readonly image: string; readonly mirrors: readonly string[] }[];
  readonly buildpacks: readonly {
    readonly id: string;
    readonly version: string;
    readonly homepage?: string;
    readonly name?: string;
  }[];
  readonly order: Order;
  readonly lifecycle: {
    readonly version: string;
    readonly buildpackApis: readonly string[];
    readonly platformApis: readonly string[];
  };
  readonly createdBy: { readonly name: string; readonly version: string };
  readonly key: string | undefined;
}

// The builder metadata label as pack and kiln write it. Every field is optional and may be null
// (Go writes nil slices as null); what kiln reads must have the right type, since the label
// comes from whoever published the builder.
const strings = z.array(z.string()).nullish();
const BuilderMetadataLabel = z.looseObject({
  description: z.string().nullish(),
  buildpacks: z
    .array(
      z.looseObject({
        id: z.string(),
        version: z.string(),
        homepage: z.string().optional(),
        name: z.string().optional(),
      }),
    )
    .nullish(),
  stack: z
    .looseObject({ runImage: z.looseObject({ image: z.string().nullish(), mirrors: strings }).nullish() })
    .nullish(),
  images: z.array(z.looseObject({ image: z.string(), mirrors: strings })).nullish(),
  lifecycle: z
    .looseObject({
      version: z.string().nullish(),
      apis: z
        .looseObject({
          buildpack: z.looseObject({ supported: strings }).nullish(),
          platform: z.looseObject({ supported: strings }).nullish(),
        })
        .nullish(),
    })
    .nullish(),
  createdBy: z.looseObject({ name: z.string().nullish(), version: z.string().nullish() }).nullish(),
});

function parseLabel<S extends z.ZodType>(
  labels: Record<string, string>,
  key: string,
  what: string,
  schema: S,
): z.output<S> {
  const raw = labels[key];
  if (raw === undefined) throw new KilnError(`${what}: not a builder: label ${key} missing`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new KilnError(`${what}: label ${key} is not valid JSON`);
  }
  if (value !== null && typeof value === 'object' && jsonTooDeep(value))
    throw new KilnError(`${what}: label ${key} is nested too deep`);
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = formatKey(issue.path) || '(document)';
    throw new KilnError(oneLine(`${what}: label ${key}: ${field}: ${issue.message}`));
  }
  return r.data;
}

/** readBuilder reads a builder image's labels; `what` names the image in errors. */
export async function readBuilder(image: Image, what: string): Promise<BuilderInfo> {
  const cfg = await image.configFile();
  const labels = cfg.config?.Labels ?? {};
  const meta = parseLabel(labels, BuilderLabel.Metadata, what, BuilderMetadataLabel);
  const order = labels[BuilderLabel.Order] ? parseLabel(labels, BuilderLabel.Order, what, Order) : [];
  const runImages =
    meta.images?.map((i) => ({ image: i.image, mirrors: i.mirrors ?? [] })) ??
    (meta.stack?.runImage?.image
      ? [{ image: meta.stack.runImage.image, mirrors: meta.stack.runImage.mirrors ?? [] }]
      : []);
  return {
    description: meta.description ?? '',
    stackId: labels[BuilderLabel.StackId] ?? labels[BuilderLabel.BaseId],
    buildImageUser: cfg.config?.User,
    runImages,
    buildpacks: meta.buildpacks ?? [],
    order,
    lifecycle: {
      version: meta.lifecycle?.version ?? '',
      buildpackApis: meta.lifecycle?.apis?.buildpack?.supported ?? [],
      platformApis: meta.lifecycle?.apis?.platform?.supported ?? [],
    },
    createdBy: { name: meta.createdBy?.name ?? '', version: meta.createdBy?.version ?? '' },
    key: labels[BuilderLabel.Key],
  };
}

/**
 * resolveSystem checks `[system]` against the builder's buildpacks (each must be one of them, a
 * version filled in as for [[order]]) and returns /cnb/system.toml's content, or undefined.
 */
function resolveSystem(
  config: BuilderConfig,
  sources: readonly { readonly id: string; readonly version: string }[],
): SystemToml | undefined {
  const pre = config.system?.system?.pre?.buildpacks ?? [];
  const post = config.system?.system?.post?.buildpacks ?? [];
  if (pre.length === 0 && post.length === 0) return undefined;
  const one = (list: typeof pre, key: 'pre' | 'post') => {
    if (list.length === 0) return [];
    try {
      return resolveOrder([{ group: list }], sources, config.file)[0]!.group;
    } catch (e) {
      throw new UsageError((e as Error).message.replace('order[0].group', `system.${key}.buildpacks`));
    }
  };
  return { system: { pre: { buildpacks: one(pre, 'pre') }, post: { buildpacks: one(post, 'post') } } };
}
