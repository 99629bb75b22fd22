import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { KilnError } from '../internal/errors.ts';
import { decompress } from '../oci/compression.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex, Layer } from '../oci/image.ts';
import { once } from '../oci/lazy.ts';
import { compressionOf, isImageMediaType, isIndexMediaType } from '../oci/media-types.ts';
import { StoredImage } from '../oci/memory.ts';
import { DEFAULT_PLATFORM, pickManifest } from '../oci/platform.ts';
import {
  type Descriptor,
  type Index,
  IndexSchema,
  ManifestSchema,
  type Platform,
  parseJson,
} from '../oci/schema.ts';
import type { FetchedManifest, RegistryClient, RepositoryClient } from './client.ts';
import type { ProgressSink } from './progress.ts';
import {
  identifier,
  type Reference,
  type Repository,
  referenceString,
  repositoryString,
} from './reference.ts';

/**
 * HasOrigin marks values read from a registry repository: a writer to another repository of the
 * same registry can mount their blobs instead of uploading them (ggcr's optional fast path).
 */
export interface HasOrigin {
  readonly origin: Repository;
}

/** hasOrigin tells whether a layer (or image) came from a registry repository. */
export function hasOrigin(x: unknown): x is HasOrigin {
  return typeof x === 'object' && x !== null && 'origin' in x && typeof (x as HasOrigin).origin === 'object';
}

/**
 * RemoteLayer is a layer blob in a registry repository, streamed on demand and verified against
 * its digest while read.
 */
export class RemoteLayer implements Layer, HasOrigin {
  readonly mediaType: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly origin: Repository;
  readonly #repo: RepositoryClient;
  readonly #desc: Descriptor;
  readonly #diffID: () => Promise<Digest>;
  readonly #progress: ProgressSink | undefined;
  readonly #label: string | undefined;

  constructor(
    repo: RepositoryClient,
    desc: Descriptor,
    diffID: Digest | undefined,
    opts: { progress?: ProgressSink; label?: string } = {},
  ) {
    this.#repo = repo;
    this.#desc = desc;
    this.origin = repo.repo;
    this.mediaType = desc.mediaType;
    if (desc.annotations && Object.keys(desc.annotations).length > 0)
      this.annotations = { ...desc.annotations };
    this.#diffID =
      diffID !== undefined
        ? async () => diffID
        : once(async () => {
            const h = createHash('sha256');
            for await (const c of await this.uncompressed()) h.update(c as Buffer);
            return `sha256:${h.digest('hex')}` as Digest;
          });
    this.#progress = opts.progress;
    this.#label = opts.label;
  }

  async digest(): Promise<Digest> {
    return this.#desc.digest as Digest;
  }
  diffID(): Promise<Digest> {
    return this.#diffID();
  }
  async size(): Promise<number> {
    return this.#desc.size;
  }
  /** The descriptor as the manifest lists it. */
  get descriptor(): Descriptor {
    return this.#desc;
  }
  compressed(): Promise<Readable> {
    return this.#repo.openBlob(this.#desc.digest as Digest, this.#desc.size, {
      ...(this.#progress ? { progress: this.#progress } : {}),
      ...(this.#label ? { label: this.#label } : {}),
    });
  }
  async uncompressed(): Promise<Readable> {
    return decompress(await this.compressed(), compressionOf(this.mediaType));
  }
}

/** Options for reading images from a registry. */
export interface RemoteOptions {
  /** Platform to pick when a reference names an index (default DEFAULT_PLATFORM, src/oci/platform.ts). */
  readonly platform?: Platform;
  /** Progress of layer downloads. */
  readonly progress?: ProgressSink;
}

/** RemoteImage is an image in a registry; the manifest is fetched eagerly, all else lazily. */
export class RemoteImage extends StoredImage implements HasOrigin {
  readonly origin: Repository;
  /** The reference this image was read from, pinned to its digest. */
  readonly reference: Reference;

  constructor(repo: RepositoryClient, ref: Reference, manifest: FetchedManifest, opts: RemoteOptions = {}) {
    const what = referenceString(ref);
    super({
      rawManifest: manifest.bytes,
      what,
      rawConfig: async () => {
        const m = parseJson(ManifestSchema, manifest.bytes, `manifest of ${what}`);
        return readBlob(repo, m.config.digest as Digest, m.config.size);
      },
      layers: async (m, cfg) =>
        m.layers.map(
          (l, i) =>
            new RemoteLayer(repo, l, cfg.rootfs.diff_ids[i], {
              ...(opts.progress ? { progress: opts.progress } : {}),
              label: `layer ${i + 1}/${m.layers.length}`,
            }),
        ),
    });
    this.origin = repo.repo;
    this.reference = { ...ref, digest: manifest.digest };
    this.#mediaType = manifest.mediaType;
  }

  readonly #mediaType: string;

  override async mediaType(): Promise<string> {
    return this.#mediaType;
  }
}

/** RemoteIndex is an image index in a registry; children are fetched on demand. */
export class RemoteIndex implements ImageIndex, HasOrigin {
  readonly origin: Repository;
  readonly reference: Reference;
  readonly #repo: RepositoryClient;
  readonly #m: FetchedManifest;
  readonly #index: Index;
  readonly #opts: RemoteOptions;

  constructor(repo: RepositoryClient, ref: Reference, m: FetchedManifest, opts: RemoteOptions = {}) {
    this.#repo = repo;
    this.#m = m;
    this.#opts = opts;
    this.origin = repo.repo;
    this.reference = { ...ref, digest: m.digest };
    this.#index = parseJson(IndexSchema, m.bytes, `index ${referenceString(ref)}`);
  }

  async mediaType(): Promise<string> {
    return this.#m.mediaType;
  }
  async rawManifest(): Promise<Uint8Array> {
    return this.#m.bytes;
  }
  async indexManifest(): Promise<Index> {
    return this.#index;
  }
  async digest(): Promise<Digest> {
    return this.#m.digest;
  }
  async image(d: Digest): Promise<Image> {
    const m = await this.#repo.getManifest(d);
    if (!isImageMediaType(m.mediaType))
      throw new KilnError(`${repositoryString(this.origin)}@${d}: ${m.mediaType} is not an image manifest`);
    return new RemoteImage(this.#repo, { ...this.reference, digest: d }, m, this.#opts);
  }
  async index(d: Digest): Promise<ImageIndex> {
    const m = await this.#repo.getManifest(d);
    if (!isIndexMediaType(m.mediaType))
      throw new KilnError(`${repositoryString(this.origin)}@${d}: ${m.mediaType} is not an image index`);
    return new RemoteIndex(this.#repo, { ...this.reference, digest: d }, m, this.#opts);
  }
}

/**
 * remoteManifest fetches what a reference names: an image (RemoteImage) or an index (RemoteIndex).
 */
export async function remoteManifest(
  client: RegistryClient,
  ref: Reference,
  opts: RemoteOptions = {},
): Promise<RemoteImage | RemoteIndex> {
  const repo = client.repository(ref);
  const m = await repo.getManifest(identifier(ref));
  if (isIndexMediaType(m.mediaType)) return new RemoteIndex(repo, ref, m, opts);
  if (isImageMediaType(m.mediaType)) return new RemoteImage(repo, ref, m, opts);
  throw new KilnError(
    `${referenceString(ref)}: unsupported manifest media type ${JSON.stringify(m.mediaType)}`,
  );
}

/**
 * remoteImage reads a single-platform image; a reference to an index is resolved to `platform`
 * (default DEFAULT_PLATFORM, src/oci/platform.ts).
 */
export async function remoteImage(
  client: RegistryClient,
  ref: Reference,
  opts: RemoteOptions = {},
): Promise<RemoteImage> {
  let found = await remoteManifest(client, ref, opts);
  for (let depth = 0; found instanceof RemoteIndex; depth++) {
    if (depth > 4) throw new KilnError(`${referenceString(ref)}: image indexes nested too deep`);
    const idx = await found.indexManifest();
    const pick = pickManifest(idx.manifests, opts.platform ?? DEFAULT_PLATFORM, referenceString(ref));
    const repo = client.repository(ref);
    const m = await repo.getManifest(pick.digest);
    found = isIndexMediaType(m.mediaType)
      ? new RemoteIndex(repo, { ...ref, digest: pick.digest as Digest }, m, opts)
      : new RemoteImage(repo, { ...ref, digest: pick.digest as Digest }, m, opts);
  }
  return found;
}

// Reads a small blob (a config) fully; openBlob verifies its digest and size as it streams.
async function readBlob(repo: RepositoryClient, d: Digest, size: number): Promise<Uint8Array> {
  if (size > 32 * 1024 * 1024)
    throw new KilnError(`config blob ${d} is ${size} bytes; refusing more than 32 MiB`);
  return buffer(await repo.openBlob(d, size));
}
