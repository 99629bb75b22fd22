import { KilnError } from '../internal/errors.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { isIndexMediaType } from '../oci/media-types.ts';
import { MissingPlatformError } from '../oci/platform.ts';
import type { Platform } from '../oci/schema.ts';
import { parseReference, repositoryString } from '../registry/reference.ts';
import { type ImageStore, storeNameOf } from '../store/store.ts';
import {
  type Description,
  describeValue,
  foundOnPlatform,
  type ImageTarget,
  onPlatform,
  type ReadOptions,
  type Referrers,
  type Written,
} from './image-target.ts';
import { layoutReferrers } from './layout-referrers.ts';

// kiln's local image store as an ImageTarget: one name in the store. The store itself is opened
// once per command by Transports and shared by every target of it.

/** StoreTarget is the image stored under one name in kiln's local store. */
export class StoreTarget implements ImageTarget {
  readonly name: string;
  readonly imageName: string;
  readonly referrers: Referrers;
  /** The name as the user gave it (any spelling of the reference). */
  readonly storeName: string;
  readonly #store: () => Promise<ImageStore>;
  /** The platform reads pick from an index, and that single images must be for. */
  readonly platform: Platform | undefined;

  constructor(storeName: string, store: () => Promise<ImageStore>, platform?: Platform) {
    this.storeName = storeName;
    this.platform = platform;
    this.imageName = storeNameOf(storeName);
    this.name = `local:${this.imageName}`;
    this.#store = store;
    this.referrers = layoutReferrers(async () => (await store()).layout);
  }

  async read(opts: ReadOptions = {}): Promise<Image> {
    const store = await this.#store();
    const platform = opts.platform ?? this.platform;
    const img = await store.find(this.storeName, platform);
    if (!img) throw new KilnError(`image ${this.imageName} not found in the local store (${store.dir})`);
    return onPlatform(img, platform, this.name);
  }

  async readAny(): Promise<Image | ImageIndex> {
    const store = await this.#store();
    const digest = await store.digestOf(this.storeName);
    const desc = (await store.layout.index()).manifests.find((d) => d.digest === digest);
    if (desc && isIndexMediaType(desc.mediaType)) return store.layout.indexByDigest(desc.digest as Digest);
    // A single image as it is, whatever its platform (read() is the checked pick).
    const img = await store.find(this.storeName);
    if (!img) throw new KilnError(`image ${this.imageName} not found in the local store (${store.dir})`);
    return img;
  }

  async find(): Promise<Image | undefined> {
    const found = await (await this.#store()).find(this.storeName, this.platform).catch((e: unknown) => {
      // An index without this platform holds nothing to reuse for it.
      if (e instanceof MissingPlatformError) return undefined;
      throw e;
    });
    return foundOnPlatform(found, this.platform);
  }

  async write(value: Image | ImageIndex): Promise<Written> {
    return writeToStore(await this.#store(), [this], value);
  }

  async describe(): Promise<Description> {
    return describeValue(await this.read());
  }

  digestReference(digest: string): string {
    // A store name is a registry name: recorded as lifecycle and pack record registry images.
    return `${repositoryString(parseReference(this.storeName))}@${digest}`;
  }

  async stagingBlobs(): Promise<BlobStore> {
    return (await this.#store()).blobs;
  }
}

/**
 * writeToStore stores `value` under the names of `targets` (one write: blobs once, each name
 * pointed at the manifest atomically), then lets the store drop blobs no image reaches any more
 * (hourly at most; blobs of builds in flight are spared).
 */
export async function writeToStore(
  store: ImageStore,
  targets: readonly StoreTarget[],
  value: Image | ImageIndex,
): Promise<Written> {
  const desc = await store.write(
    value,
    targets.map((t) => t.storeName),
  );
  // Garbage collection is best-effort: the image is written whatever it finds.
  await store.maybeGc().catch(() => undefined);
  return { digest: desc.digest as Digest, names: targets.map((t) => t.imageName) };
}
