import type { ImageRef, ImageSink, ImageSource } from '../lifecycle/creator.ts';
import type { RunImageSboms } from '../lifecycle/export.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../sbom/cyclonedx.ts';
import { sbomBytes } from '../sbom/referrers.ts';
import { SPDX_MEDIA_TYPE } from '../sbom/spdx.ts';
import type { ImageTarget } from '../transport/image-target.ts';

// The creator's image source and sink over the targets the CLI parsed: where the previous image
// is, where the app image goes (a fan-out for --tag), and how run images are found by name.

/** Where a build's images come from and go to. */
export interface ImageAccess {
  /** The image to reuse layers from (`--previous-image`, default the destination). */
  readonly previous: ImageTarget;
  /** Where the app image is written (the destination and every extra tag). */
  readonly destination: ImageTarget;
  /** Where a run image (or builder) named by a user or a builder is read from. */
  locate(name: string): Promise<ImageTarget>;
}

/**
 * imageSource reads the previous image, run images by name (each read once), and a run image's
 * SBOM documents from the referrers of the location it was read from (store, layout or registry).
 */
export function imageSource(access: ImageAccess, previousName: string): ImageSource {
  const runs = new Map<string, Promise<ImageRef & { target: ImageTarget }>>();
  const readFrom = new Map<Digest, ImageTarget>();
  return {
    previousName,
    previous: async () => {
      const image = await access.previous.find();
      if (!image) return undefined;
      return { image, reference: access.previous.digestReference(await image.digest()) };
    },
    runImage: (name) => {
      let p = runs.get(name);
      if (!p) {
        p = (async () => {
          const target = await access.locate(name);
          const image = await target.read();
          const digest = await image.digest();
          readFrom.set(digest, target);
          return { image, reference: target.digestReference(digest), target };
        })();
        runs.set(name, p);
      }
      return p;
    },
    runImageSboms: async (image) => {
      const target = readFrom.get(await image.digest());
      return target ? runImageSbomsOf(target, image) : undefined;
    },
  };
}

/** imageSink writes to the destination. */
export function imageSink(access: ImageAccess): ImageSink {
  return { write: (image) => access.destination.write(image) };
}

/**
 * runImageSbomsOf reads the OS-package SBOM documents attached to the run image as OCI referrers
 * (`kiln stack create` attaches them in the store or layout, and pushes them with the image);
 * undefined when there are none.
 */
async function runImageSbomsOf(target: ImageTarget, image: Image): Promise<RunImageSboms | undefined> {
  try {
    const digest = await image.digest();
    const cdx = await firstDocument(target, digest, CYCLONEDX_MEDIA_TYPE);
    const spdx = await firstDocument(target, digest, SPDX_MEDIA_TYPE);
    if (!cdx && !spdx) return undefined;
    return { ...(cdx ? { cdx } : {}), ...(spdx ? { spdx } : {}) };
  } catch {
    return undefined;
  }
}

// The first referrer of `mediaType` that carries a document of that type, in kiln's one
// serialisation (the bytes, and so the SBOM layer's digest, do not depend on where it was read).
async function firstDocument(
  target: ImageTarget,
  digest: Digest,
  mediaType: string,
): Promise<Uint8Array | undefined> {
  for (const r of await target.referrers.list(digest, mediaType)) {
    const blob = r.manifest.layers.find((l) => l.mediaType === mediaType);
    if (blob) return sbomBytes(JSON.parse(new TextDecoder().decode(await r.blob(blob))));
  }
  return undefined;
}
