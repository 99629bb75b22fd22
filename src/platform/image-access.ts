import type { ImageRef, ImageSink, ImageSource } from '../lifecycle/creator.ts';
import type { RunImageSboms } from '../lifecycle/export.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../sbom/cyclonedx.ts';
import { sbomBytes, sbomsOfImage } from '../sbom/referrers.ts';
import { SPDX_MEDIA_TYPE } from '../sbom/spdx.ts';
import type { ImageStore } from '../store/store.ts';

// The creator's image source and sink over what the CLI resolved (ImageAccess, the local store).

/** Where images come from and go to: implemented by the CLI over its transports. */
export interface ImageAccess {
  /** Reads an image; undefined when it does not exist (first build). */
  findImage(name: string): Promise<ImageRef | undefined>;
  /** Reads the run image (store first, then registry). Throws when it cannot be read. */
  runImage(name: string): Promise<ImageRef>;
  /** Writes the app image to the destination and every extra tag; returns the names written. */
  writeImage(image: Image): Promise<{ digest: Digest; names: readonly string[] }>;
}

/** imageSource reads the previous image named `previousName`, run images, and their SBOMs from `store`. */
export function imageSource(access: ImageAccess, store: ImageStore, previousName: string): ImageSource {
  return {
    previousName,
    previous: () => access.findImage(previousName),
    runImage: (name) => access.runImage(name),
    runImageSboms: (image) => runImageSbomsOf(store, image),
  };
}

/** imageSink writes through `access`. */
export function imageSink(access: ImageAccess): ImageSink {
  return { write: (image) => access.writeImage(image) };
}

/**
 * runImageSbomsOf reads the OS-package SBOM documents `kiln stack create` attached to the run image
 * as referrers in the local store; undefined when there are none (e.g. a registry run image).
 */
async function runImageSbomsOf(store: ImageStore, image: Image): Promise<RunImageSboms | undefined> {
  try {
    const digest = await image.digest();
    const docs = await sbomsOfImage(store.layout, digest, [CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE]);
    const cdx = docs.get(CYCLONEDX_MEDIA_TYPE);
    const spdx = docs.get(SPDX_MEDIA_TYPE);
    if (!cdx && !spdx) return undefined;
    return { ...(cdx ? { cdx: sbomBytes(cdx) } : {}), ...(spdx ? { spdx: sbomBytes(spdx) } : {}) };
  } catch {
    return undefined;
  }
}
