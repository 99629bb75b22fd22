import fs from 'node:fs/promises';
import path from 'node:path';
import { statIfExists } from '../internal/fs.ts';
import { ensureOwnedDir } from '../internal/owned-dir.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import { Layout, REF_NAME } from '../layout/layout.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import type { Descriptor, Platform } from '../oci/schema.ts';
import { parseReference, referenceString } from '../registry/reference.ts';

// kiln's local image store: one OCI image layout under the data directory (by default
// ~/.local/share/kiln/images) holding every image `kiln build` made without `--publish`, tagged
// by full reference (`docker.io/library/my-app:latest`). It is the embedded default destination,
// the "daemon" of a daemonless tool: `kiln run`, `kiln rebase` and the next build's analyze phase
// read from it. Being a plain layout, skopeo, umoci and podman read it too (`oci:DIR:REF`).

/** An image in the store. */
export interface StoredEntry {
  readonly name: string;
  readonly digest: string;
}

/** storeNameOf returns the canonical name an image is stored under (`my-app` -> `docker.io/library/my-app:latest`). */
export function storeNameOf(ref: string): string {
  return referenceString(parseReference(ref));
}

/** ImageStore is kiln's local image store. */
export class ImageStore {
  readonly layout: Layout;

  private constructor(layout: Layout) {
    this.layout = layout;
  }

  /** defaultDir is the store's place under kiln's data directory. */
  static defaultDir(dataDir: string): string {
    return path.join(dataDir, 'images');
  }

  /** open opens the store at `dir`, creating it when missing. */
  static async open(dir: string): Promise<ImageStore> {
    // Builders and run images are taken from here by name: no other user may write it.
    ensureOwnedDir(dir, { what: 'the image store', mode: 0o755 });
    return new ImageStore(await Layout.init(dir));
  }

  get dir(): string {
    return this.layout.dir;
  }

  /** The blobs of every stored image; new layers are written here before an image is tagged. */
  get blobs(): BlobStore {
    return this.layout.blobs;
  }

  /**
   * find returns the image stored under `name` (any spelling of its reference), if any; an index
   * is resolved to `platform` (MissingPlatformError when it has none for it).
   */
  async find(name: string, platform?: Platform): Promise<Image | undefined> {
    const canonical = storeNameOf(name);
    const tags = await this.layout.tags();
    if (!tags.includes(canonical)) return undefined;
    return this.layout.image(canonical, platform ? { platform } : {});
  }

  /** digestOf returns the manifest digest stored under `name`, if any. */
  async digestOf(name: string): Promise<string | undefined> {
    const canonical = storeNameOf(name);
    const found = (await this.layout.index()).manifests.find((d) => d.annotations?.[REF_NAME] === canonical);
    return found?.digest;
  }

  /**
   * write stores `image` (or an index) under every name in `names` (the first is the primary). The index is
   * updated atomically per name, so a crash leaves each name pointing at the old or the new image.
   */
  async write(image: Image | ImageIndex, names: readonly string[]): Promise<Descriptor> {
    if (names.length === 0) throw new TypeError('ImageStore.write: at least one name is required');
    let desc: Descriptor | undefined;
    // A multi-platform index is stored whole (its images too): reads pick a platform from it.
    for (const n of names)
      desc =
        'indexManifest' in image
          ? await this.layout.writeIndex(image, storeNameOf(n))
          : await this.layout.writeImage(image, storeNameOf(n));
    return desc!;
  }

  /** list returns the stored images by name. */
  async list(): Promise<StoredEntry[]> {
    return (await this.layout.index()).manifests.flatMap((d) =>
      d.annotations?.[REF_NAME] ? [{ name: d.annotations[REF_NAME], digest: d.digest }] : [],
    );
  }

  /**
   * maybeGc removes blobs no stored image reaches (older than the layout's grace period, so blobs
   * of builds in flight survive), at most once per `intervalMs` (default 1 hour) across processes:
   * builds call it after writing, so the store does not grow with every rebuild.
   */
  async maybeGc(intervalMs = 3_600_000): Promise<string[] | undefined> {
    const marker = path.join(this.dir, '.kiln-gc');
    const st = await statIfExists(marker);
    if (st && Date.now() - st.mtimeMs < intervalMs) return undefined;
    await fs.writeFile(marker, `${process.pid}\n`);
    return this.layout.gc();
  }

  /** remove drops `name` from the store (its blobs stay until a gc). */
  async remove(name: string): Promise<void> {
    await this.layout.removeTag(storeNameOf(name));
  }
}
