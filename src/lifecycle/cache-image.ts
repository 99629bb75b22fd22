import type { Readable } from 'node:stream';
import {
  CACHE_METADATA_LABEL,
  CacheMetadataSchema,
  parseCacheMetadata,
  stringifyLabel,
} from '../cnb/lifecycle-metadata.ts';
import { StoredLayer } from '../layout/blob-layer.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { emptyImage } from '../oci/memory.ts';
import { addLabels, appendLayers } from '../oci/mutate.ts';
import type { RegistryClient } from '../registry/client.ts';
import { RegistryError } from '../registry/errors.ts';
import { type Reference, referenceString } from '../registry/reference.ts';
import { remoteImage } from '../registry/remote.ts';
import { writeImage } from '../registry/write.ts';
import {
  type CachedLayer,
  type CacheSnapshot,
  CacheStateError,
  type CommitInput,
  type CommitResult,
  type LayerCache,
} from './cache.ts';

// The cache image (`--cache-image`): the same state as the volume cache, kept in a registry as an
// image whose layers are the cache layers (keyed by diffID through the config's diff_ids) and whose
// label `io.buildpacks.lifecycle.cache.metadata` holds the metadata, as the reference lifecycle
// does. A commit pushes a new image under the same tag; layers the previous cache image already had
// are not uploaded again (the registry has them), new ones come from kiln's blob store. Concurrent
// builds race on the tag (last writer wins), which leaves a whole, consistent image either way.

/** Label of kiln's fingerprint index on a cache image (see layer-reuse.ts). */
export const CACHE_FINGERPRINTS_LABEL = 'io.kiln.cache.fingerprints';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * parseFingerprints reads the fingerprint label of a cache image, keeping only well-formed
 * entries: the image comes from a registry, and a `null` or a non-object entry must not reach
 * layer reuse (a cache is disposable, so a bad label reads as no fingerprints, never an error).
 */
export function parseFingerprints(raw: string): Record<string, CachedLayer> {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return {};
  }
  const out: Record<string, CachedLayer> = {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out;
  for (const [k, e] of Object.entries(v)) {
    const c = e as Partial<Record<keyof CachedLayer, unknown>> | null;
    if (
      typeof c === 'object' &&
      c !== null &&
      typeof c.diffID === 'string' &&
      DIGEST.test(c.diffID) &&
      typeof c.digest === 'string' &&
      DIGEST.test(c.digest) &&
      Number.isSafeInteger(c.size) &&
      (c.size as number) >= 0 &&
      typeof c.mediaType === 'string'
    )
      Object.defineProperty(out, k, {
        value: { diffID: c.diffID, digest: c.digest, size: c.size, mediaType: c.mediaType },
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}

/** Options of ImageCache. */
export interface ImageCacheOptions {
  readonly ref: Reference;
  readonly client: RegistryClient;
  /** Where new cache blobs are found (the entries' digests). */
  readonly blobs: BlobStore;
}

/** ImageCache is a LayerCache kept as an image in a registry. */
export class ImageCache implements LayerCache {
  readonly #o: ImageCacheOptions;
  /** Layers of the cache image read by the last snapshot, by diffID (reused at commit). */
  #previous = new Map<string, Layer>();

  constructor(o: ImageCacheOptions) {
    this.#o = o;
  }

  get name(): string {
    return referenceString(this.#o.ref);
  }

  async #read(): Promise<Image | undefined> {
    try {
      return await remoteImage(this.#o.client, this.#o.ref);
    } catch (e) {
      if (e instanceof RegistryError && e.status === 404) return undefined;
      throw e;
    }
  }

  async snapshot(opts: { clear?: boolean } = {}): Promise<CacheSnapshot> {
    const image = opts.clear ? undefined : await this.#read();
    const layers = new Map<string, { layer: Layer; record: CachedLayer }>();
    let metadata = CacheMetadataSchema.parse({});
    let fingerprints: Record<string, CachedLayer> = {};
    if (image) {
      const cfg = await image.configFile();
      const labels = cfg.config?.Labels ?? {};
      try {
        if (labels[CACHE_METADATA_LABEL]) metadata = parseCacheMetadata(labels[CACHE_METADATA_LABEL]);
        if (labels[CACHE_FINGERPRINTS_LABEL])
          fingerprints = parseFingerprints(labels[CACHE_FINGERPRINTS_LABEL]);
      } catch (e) {
        // Broken is not absent: the restore fails naming the image (--clear-cache starts afresh).
        throw new CacheStateError(`cache image ${this.name}: label ${CACHE_METADATA_LABEL}`, e);
      }
      const list = await image.layers();
      for (let i = 0; i < list.length; i++) {
        const layer = list[i]!;
        const diffID = cfg.rootfs.diff_ids[i]! as Digest;
        layers.set(diffID, {
          layer,
          record: {
            diffID,
            digest: await layer.digest(),
            size: await layer.size(),
            mediaType: layer.mediaType,
          },
        });
      }
    }
    this.#previous = new Map([...layers].map(([k, v]) => [k, v.layer]));
    return {
      metadata,
      fingerprints,
      layer: (diffID) => layers.get(diffID)?.record,
      async open(diffID: string): Promise<Readable> {
        const l = layers.get(diffID);
        if (!l) throw new Error(`layer ${diffID} is not in the cache image`);
        return l.layer.compressed();
      },
      async close() {},
    };
  }

  async commit(input: CommitInput): Promise<CommitResult> {
    const added: Layer[] = [];
    let reused = 0;
    let fresh = 0;
    for (const e of input.layers) {
      const prev = this.#previous.get(e.diffID);
      if (prev) {
        added.push(prev);
        reused++;
        continue;
      }
      let blob: CachedLayer = e;
      if (!(await this.#o.blobs.has(e.digest))) {
        if (typeof e.source !== 'function')
          throw new Error(`cache layer ${e.diffID}: blob ${e.digest} is not in the blob store`);
        const produced = await e.source();
        if (typeof produced !== 'string') blob = produced;
      }
      added.push(new StoredLayer(this.#o.blobs, blob));
      fresh++;
    }
    let image = appendLayers(emptyImage(), ...added);
    image = addLabels(image, {
      [CACHE_METADATA_LABEL]: stringifyLabel(input.metadata),
      [CACHE_FINGERPRINTS_LABEL]: JSON.stringify(input.fingerprints ?? {}),
    });
    await writeImage(this.#o.client, this.#o.ref, image);
    const kept = new Set(input.layers.map((l) => l.diffID as string));
    const pruned = [...this.#previous.keys()].filter((k) => !kept.has(k)).length;
    return { added: fresh, reused, pruned };
  }
}
