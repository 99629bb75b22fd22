import { Readable } from 'node:stream';
import { type Digest, sha256 } from './digest.ts';
import type { Image, Layer } from './image.ts';
import { once } from './lazy.ts';
import { MediaType } from './media-types.ts';
import {
  type ConfigFile,
  ConfigFileSchema,
  type Descriptor,
  type Manifest,
  ManifestSchema,
  type Platform,
  parseJson,
} from './schema.ts';

/** The default timestamp of reproducible images: 1980-01-01T00:00:01Z (SOURCE_DATE_EPOCH unset). */
export const DEFAULT_EPOCH = 315532801;

/** isoOfEpoch renders seconds since the Unix epoch as the RFC 3339 string image configs carry. */
export function isoOfEpoch(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace('.000Z', 'Z');
}

/** Manifest family of an image: OCI (default) or Docker schema 2. */
export type ManifestFormat = 'oci' | 'docker';

/** Sources of a LazyImage: each is called at most once, when first needed. */
export interface LazyImageSource {
  /** Media type of the manifest to produce (a function for mutations, which keep the base's). */
  readonly mediaType: string | (() => Promise<string>);
  config(): Promise<ConfigFile>;
  /** Exact config bytes, when the config comes from elsewhere and must keep its digest. */
  rawConfig?(): Promise<Uint8Array>;
  layers(): Promise<readonly Layer[]>;
  /** Descriptors of the layers in manifest order (may reuse descriptors of a base manifest). */
  layerDescriptors(): Promise<Descriptor[]>;
  annotations?(): Promise<Readonly<Record<string, string>> | undefined>;
  subject?(): Promise<Descriptor | undefined>;
}

/**
 * LazyImage is an Image whose config bytes and manifest are derived from its sources lazily,
 * once. It is the one implementation behind construction and every `mutate` helper.
 */
export class LazyImage implements Image {
  readonly #config: () => Promise<ConfigFile>;
  readonly #rawConfig: () => Promise<Uint8Array>;
  readonly #manifest: () => Promise<Manifest>;
  readonly #rawManifest: () => Promise<Uint8Array>;
  readonly #layers: () => Promise<readonly Layer[]>;
  readonly #mediaType: () => Promise<string>;

  constructor(src: LazyImageSource) {
    const mt = src.mediaType;
    this.#mediaType = typeof mt === 'string' ? async () => mt : once(mt);
    this.#config = once(() => src.config());
    this.#layers = once(() => src.layers());
    const raw = src.rawConfig?.bind(src);
    this.#rawConfig = once(async () => (raw ? raw() : Buffer.from(JSON.stringify(await this.#config()))));
    this.#manifest = once(async () => {
      const rawConfig = await this.#rawConfig();
      const mediaType = await this.#mediaType();
      const manifest: Manifest = {
        schemaVersion: 2,
        mediaType,
        config: {
          mediaType: configMediaTypeFor(mediaType),
          digest: sha256(rawConfig),
          size: rawConfig.length,
        },
        layers: await src.layerDescriptors(),
      };
      const subject = await src.subject?.();
      if (subject) manifest.subject = subject;
      const annotations = await src.annotations?.();
      if (annotations && Object.keys(annotations).length > 0) manifest.annotations = { ...annotations };
      return manifest;
    });
    this.#rawManifest = once(async () => Buffer.from(JSON.stringify(await this.#manifest())));
  }

  mediaType(): Promise<string> {
    return this.#mediaType();
  }
  rawManifest(): Promise<Uint8Array> {
    return this.#rawManifest();
  }
  manifest(): Promise<Manifest> {
    return this.#manifest();
  }
  async digest(): Promise<Digest> {
    return sha256(await this.#rawManifest());
  }
  rawConfig(): Promise<Uint8Array> {
    return this.#rawConfig();
  }
  configFile(): Promise<ConfigFile> {
    return this.#config();
  }
  layers(): Promise<readonly Layer[]> {
    return this.#layers();
  }
}

/** configMediaTypeFor returns the config media type that belongs with a manifest media type. */
export function configMediaTypeFor(manifestMediaType: string): string {
  return manifestMediaType === MediaType.DockerManifest ? MediaType.DockerConfig : MediaType.OciConfig;
}

/** manifestMediaTypeOf maps a format name to its manifest media type. */
export function manifestMediaTypeOf(format: ManifestFormat): string {
  return format === 'docker' ? MediaType.DockerManifest : MediaType.OciManifest;
}

/** descriptorOfLayer builds a manifest layer descriptor, carrying the layer's annotations. */
export async function descriptorOfLayer(layer: Layer): Promise<Descriptor> {
  const [digest, size] = await Promise.all([layer.digest(), layer.size()]);
  const d: Descriptor = { mediaType: layer.mediaType, digest, size };
  if (layer.annotations && Object.keys(layer.annotations).length > 0)
    d.annotations = { ...layer.annotations };
  return d;
}

/** Options of imageFrom. */
export interface ImageFromOptions {
  /** The config; its rootfs.diff_ids are replaced by the layers' diffIDs. */
  readonly config: ConfigFile | Omit<ConfigFile, 'rootfs'>;
  readonly layers?: readonly Layer[];
  /** Manifest family (default 'oci'). */
  readonly format?: ManifestFormat;
  /** Manifest annotations. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/**
 * imageFrom constructs an Image from a config and layers (bottom first). The diff_ids are
 * derived from the layers so they can never disagree; the manifest is computed once, lazily.
 */
export function imageFrom(opts: ImageFromOptions): Image {
  const layers = [...(opts.layers ?? [])];
  const mediaType = manifestMediaTypeOf(opts.format ?? 'oci');
  return new LazyImage({
    mediaType,
    layers: async () => layers,
    config: async () => {
      const diffIDs = await Promise.all(layers.map((l) => l.diffID()));
      return { ...structuredClone(opts.config), rootfs: { type: 'layers', diff_ids: diffIDs } } as ConfigFile;
    },
    layerDescriptors: () => Promise.all(layers.map(descriptorOfLayer)),
    annotations: async () => opts.annotations,
  });
}

/** emptyImage is an image with no layers for `platform` (default linux/amd64). */
export function emptyImage(
  platform: Platform = { os: 'linux', architecture: 'amd64' },
  format: ManifestFormat = 'oci',
): Image {
  const config: Omit<ConfigFile, 'rootfs'> = { architecture: platform.architecture, os: platform.os };
  if (platform.variant) config.variant = platform.variant;
  if (platform['os.version']) config['os.version'] = platform['os.version'];
  return imageFrom({ config: { ...config, config: {} }, format });
}

/** Parts of an image as stored: exact manifest and config bytes, and the layers they describe. */
export interface StoredImageParts {
  readonly rawManifest: Uint8Array;
  readonly rawConfig: () => Promise<Uint8Array>;
  /** Builds the layers from the parsed manifest and config (descriptor i goes with diff_ids[i]). */
  readonly layers: (manifest: Manifest, config: ConfigFile) => Promise<readonly Layer[]>;
  /** Where the image came from, for error messages. */
  readonly what: string;
}

/**
 * StoredImage is an Image read from a source (layout, archive, registry): the manifest and
 * config bytes are kept exactly as stored, so the digest never changes on a round trip.
 */
export class StoredImage implements Image {
  readonly #raw: Uint8Array;
  readonly #manifest: Manifest;
  readonly #rawConfig: () => Promise<Uint8Array>;
  readonly #config: () => Promise<ConfigFile>;
  readonly #layers: () => Promise<readonly Layer[]>;

  constructor(parts: StoredImageParts) {
    this.#raw = parts.rawManifest;
    this.#manifest = parseJson(ManifestSchema, parts.rawManifest, `manifest of ${parts.what}`);
    this.#rawConfig = once(async () => {
      const raw = await parts.rawConfig();
      const got = sha256(raw);
      if (got !== this.#manifest.config.digest)
        throw new Error(
          `config of ${parts.what}: digest mismatch: expected ${this.#manifest.config.digest}, got ${got}`,
        );
      return raw;
    });
    this.#config = once(async () =>
      parseJson(ConfigFileSchema, await this.#rawConfig(), `config of ${parts.what}`),
    );
    this.#layers = once(async () => {
      const cfg = await this.#config();
      if (cfg.rootfs.diff_ids.length !== this.#manifest.layers.length)
        throw new Error(
          `${parts.what}: manifest has ${this.#manifest.layers.length} layers but config has ${cfg.rootfs.diff_ids.length} diff_ids`,
        );
      return parts.layers(this.#manifest, cfg);
    });
  }

  async mediaType(): Promise<string> {
    return this.#manifest.mediaType ?? MediaType.OciManifest;
  }
  async rawManifest(): Promise<Uint8Array> {
    return this.#raw;
  }
  async manifest(): Promise<Manifest> {
    return this.#manifest;
  }
  async digest(): Promise<Digest> {
    return sha256(this.#raw);
  }
  rawConfig(): Promise<Uint8Array> {
    return this.#rawConfig();
  }
  configFile(): Promise<ConfigFile> {
    return this.#config();
  }
  layers(): Promise<readonly Layer[]> {
    return this.#layers();
  }
}

/**
 * bytesLayer is a Layer held in memory (small synthetic layers, tests). `blob` is the stored
 * form in `mediaType`'s compression; `tar` is the uncompressed form.
 */
export function bytesLayer(opts: {
  blob: Uint8Array;
  tar: Uint8Array;
  mediaType: string;
  annotations?: Readonly<Record<string, string>>;
}): Layer {
  const digest = sha256(opts.blob);
  const diffID = sha256(opts.tar);
  const layer: Layer = {
    mediaType: opts.mediaType,
    digest: async () => digest,
    diffID: async () => diffID,
    size: async () => opts.blob.length,
    compressed: async () => Readable.from([Buffer.from(opts.blob)]),
    uncompressed: async () => Readable.from([Buffer.from(opts.tar)]),
  };
  return opts.annotations ? { ...layer, annotations: opts.annotations } : layer;
}
