import type { Readable } from 'node:stream';
import type { Digest } from './digest.ts';
import type { ConfigFile, Descriptor, Index as IndexManifest, Manifest } from './schema.ts';

/**
 * Layer is a read-only layer of an image. Expensive fields are computed lazily, once.
 * Every opener returns a fresh stream; callers must consume or destroy it.
 */
export interface Layer {
  /** Media type of the blob as it appears in a manifest. */
  readonly mediaType: string;
  /** Digest of the blob as stored (compressed). */
  digest(): Promise<Digest>;
  /** Digest of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffID(): Promise<Digest>;
  /** Size in bytes of the blob as stored. */
  size(): Promise<number>;
  /**
   * The blob as stored, verified against digest() while read where the source is untrusted.
   * `chunkSize` is a hint for sources that read from disk: the most bytes one read hands over.
   */
  compressed(opts?: { readonly chunkSize?: number }): Promise<Readable>;
  /** The uncompressed tar stream. */
  uncompressed(): Promise<Readable>;
  /** Annotations to carry on this layer's descriptor, if any. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Image is a read-only single-platform image: a manifest, a config and layers. */
export interface Image {
  /** Media type of the manifest (OCI or Docker schema 2). */
  mediaType(): Promise<string>;
  /** The manifest bytes exactly as stored or as they will be written. */
  rawManifest(): Promise<Uint8Array>;
  manifest(): Promise<Manifest>;
  /** Digest of rawManifest(). */
  digest(): Promise<Digest>;
  rawConfig(): Promise<Uint8Array>;
  configFile(): Promise<ConfigFile>;
  /** Layers, bottom first, in manifest order. */
  layers(): Promise<readonly Layer[]>;
}

/** ImageIndex is a read-only multi-platform index. */
export interface ImageIndex {
  mediaType(): Promise<string>;
  rawManifest(): Promise<Uint8Array>;
  indexManifest(): Promise<IndexManifest>;
  digest(): Promise<Digest>;
  image(d: Digest): Promise<Image>;
  index(d: Digest): Promise<ImageIndex>;
}

/** Blob is any content addressed by digest: a layer, a config, or an artifact. */
export interface Blob {
  readonly descriptor: Descriptor;
  open(): Promise<Readable>;
}
