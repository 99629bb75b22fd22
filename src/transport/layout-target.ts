import { KilnError } from '../internal/errors.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import { Layout, REF_NAME } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { isIndexMediaType } from '../oci/media-types.ts';
import { MissingPlatformError } from '../oci/platform.ts';
import type { Platform } from '../oci/schema.ts';
import {
  type Description,
  describeValue,
  foundOnPlatform,
  type ImageTarget,
  isIndex,
  onPlatform,
  type ReadOptions,
  type Referrers,
  type Written,
} from './image-target.ts';
import { layoutReferrers } from './layout-referrers.ts';

// An OCI image layout directory as an ImageTarget (`oci:DIR[:TAG]`, skopeo's syntax). Reading
// never creates the directory; writing creates it when missing.

/** LayoutTarget is one image (by tag) of an OCI image layout. */
export class LayoutTarget implements ImageTarget {
  readonly name: string;
  readonly imageName: string;
  readonly referrers: Referrers;
  readonly dir: string;
  readonly tag: string | undefined;
  /** The platform reads pick from an index, and that single images must be for. */
  readonly platform: Platform | undefined;

  constructor(dir: string, tag: string | undefined, platform?: Platform) {
    this.dir = dir;
    this.tag = tag;
    this.platform = platform;
    this.name = `oci:${dir}${tag ? `:${tag}` : ''}`;
    this.imageName = this.name;
    this.referrers = layoutReferrers(() => this.#open());
  }

  async read(opts: ReadOptions = {}): Promise<Image> {
    const layout = await this.#open();
    const platform = opts.platform ?? this.platform;
    const image = await layout
      .image(await this.#ref(layout), platform ? { platform } : {})
      .catch((e: unknown) => {
        // Named as the user wrote it (oci:DIR:TAG), not by the layout's directory.
        throw e instanceof MissingPlatformError ? new MissingPlatformError(this.name, e.platform, e.has) : e;
      });
    return onPlatform(image, platform, this.name);
  }

  async readAny(): Promise<Image | ImageIndex> {
    const layout = await this.#open();
    const desc = await layout.resolve(await this.#ref(layout));
    // As it is: an index whole, a single image whatever its platform (read() is the checked pick).
    return isIndexMediaType(desc.mediaType)
      ? layout.indexByDigest(desc.digest as Digest)
      : layout.imageByDigest(desc.digest as Digest);
  }

  async find(): Promise<Image | undefined> {
    // A missing layout or tag is a first build; the tag defaults to "latest" as written.
    const layout = await Layout.open(this.dir).catch(() => undefined);
    if (!layout) return undefined;
    const platform = this.platform ? { platform: this.platform } : {};
    const found = await layout.image(this.tag ?? 'latest', platform).catch(() => undefined);
    return foundOnPlatform(found, this.platform);
  }

  async write(value: Image | ImageIndex): Promise<Written> {
    const layout = await Layout.init(this.dir);
    const tag = this.tag ?? 'latest';
    const desc = isIndex(value) ? await layout.writeIndex(value, tag) : await layout.writeImage(value, tag);
    return { digest: desc.digest as Digest, names: [this.imageName] };
  }

  async describe(): Promise<Description> {
    const layout = await this.#open();
    const desc = await layout.resolve(await this.#ref(layout));
    const value = isIndexMediaType(desc.mediaType)
      ? await layout.indexByDigest(desc.digest as Digest)
      : await layout.imageByDigest(desc.digest as Digest);
    return describeValue(value);
  }

  digestReference(digest: string): string {
    return `oci:${this.dir}@${digest}`;
  }

  async stagingBlobs(): Promise<BlobStore> {
    return (await Layout.init(this.dir)).blobs;
  }

  async #open(): Promise<Layout> {
    try {
      return await Layout.open(this.dir);
    } catch (e) {
      throw new KilnError((e as Error).message);
    }
  }

  // Without a tag, a layout holding exactly one image means that image (skopeo's rule); else "latest".
  async #ref(layout: Layout): Promise<string> {
    if (this.tag) return this.tag;
    const manifests = (await layout.index()).manifests;
    if (manifests.length === 1) return manifests[0]!.annotations?.[REF_NAME] ?? manifests[0]!.digest;
    return 'latest';
  }
}
