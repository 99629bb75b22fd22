import { KilnError } from '../internal/errors.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { isIndexMediaType } from '../oci/media-types.ts';
import { checkPlatform, configPlatform, platformMatches } from '../oci/platform.ts';
import { type Descriptor, type Manifest, ManifestSchema, type Platform, parseJson } from '../oci/schema.ts';

// Where images live, as one interface: kiln's local store, a registry, an OCI layout and a
// docker-archive each implement it (one adapter per kind, in this folder), and a fan-out writes
// one image to several of them. Commands hold an ImageTarget and never ask what kind it is.

/** How a read picks one image out of an index. */
export interface ReadOptions {
  /** Platform to pick when the location holds an index (default: the target's, else DEFAULT_PLATFORM). */
  readonly platform?: Platform;
}

/**
 * onPlatform is `image` when it is for `want` (or nothing was asked for); a single image of
 * another platform fails with one line naming `what`, what was asked for and what it is.
 */
export async function onPlatform(image: Image, want: Platform | undefined, what: string): Promise<Image> {
  if (want) checkPlatform(await image.configFile(), want, what);
  return image;
}

/** foundOnPlatform is `image` when it is for `want`; another platform's image is none (nothing to reuse). */
export async function foundOnPlatform(
  image: Image | undefined,
  want: Platform | undefined,
): Promise<Image | undefined> {
  if (!image || !want) return image;
  return platformMatches(configPlatform(await image.configFile()), want) ? image : undefined;
}

/** What a write did. */
export interface Written {
  /** The manifest digest written. */
  readonly digest: Digest;
  /** The names the image was written under, in the order given (report.toml's tags). */
  readonly names: readonly string[];
}

/** What a location holds, read from manifests and configs only (no layer is downloaded). */
export interface Description {
  readonly digest: Digest;
  readonly mediaType: string;
  /** One entry per manifest of an index; the config's platform for a single image. */
  readonly platforms: readonly Platform[];
}

/** A referrer of an image (an artifact manifest whose `subject` is that image), e.g. an SBOM. */
export interface Referrer {
  /** The artifact manifest's descriptor (with its artifactType). */
  readonly descriptor: Descriptor;
  readonly manifest: Manifest;
  /** The manifest's bytes as stored (its digest is the descriptor's): copies keep them exactly. */
  readonly raw: Uint8Array;
  /** Reads one of the artifact's blobs, verified against its digest. */
  blob(d: Descriptor): Promise<Uint8Array>;
}

/** The OCI referrers of the images at one location. */
export interface Referrers {
  /** Lists the referrers of `subject`, only those of `artifactType` when given. */
  list(subject: Digest, artifactType?: string): Promise<Referrer[]>;
  /** Writes `artifact` (a manifest with a `subject`) so that it is listed as its subject's referrer. */
  attach(artifact: Image): Promise<Digest>;
  /**
   * Attaches several artifacts of one subject at once, where the location can do it faster; an
   * entry of the referrers index for which `replaces(old, added)` holds is dropped from it.
   */
  attachAll?(
    subject: Digest,
    artifacts: readonly Image[],
    replaces?: (old: Descriptor, added: Descriptor) => boolean,
  ): Promise<void>;
}

/** ImageTarget is one place images are read from and written to. */
export interface ImageTarget {
  /** How messages name the location (`local:…`, `oci:DIR:TAG`, `docker-archive:FILE`, a reference). */
  readonly name: string;
  /** The name an image written here goes by (the store's canonical name; otherwise `name`). */
  readonly imageName: string;
  /** The registry host, for a location in a registry (rebase prefers run-image mirrors there). */
  readonly registry?: string;
  /** Reads a single-platform image; an index is resolved to `opts.platform`. Throws when absent. */
  read(opts?: ReadOptions): Promise<Image>;
  /** Reads what the location names, keeping an index as an index where the location has one. */
  readAny(): Promise<Image | ImageIndex>;
  /** Reads the image a build reuses layers from; undefined when there is none (a first build). */
  find(): Promise<Image | undefined>;
  /** Writes `value` (blobs the location has are not written again) and points the name at it. */
  write(value: Image | ImageIndex): Promise<Written>;
  /** Digest, media type and platforms of what the location names. */
  describe(): Promise<Description>;
  readonly referrers: Referrers;
  /** The digest reference kiln records for an image read from here (`runImage.reference`). */
  digestReference(digest: string): string;
  /** Where new blobs can be written before the image is (the store's or layout's blobs), if anywhere. */
  stagingBlobs(): Promise<BlobStore | undefined>;
}

/** isIndex tells an ImageIndex from an Image. */
export function isIndex(x: Image | ImageIndex): x is ImageIndex {
  return 'indexManifest' in x;
}

/** describeValue describes an image or index from its manifest (and an image's config). */
export async function describeValue(value: Image | ImageIndex): Promise<Description> {
  const [digest, mediaType] = await Promise.all([value.digest(), value.mediaType()]);
  if (isIndex(value)) {
    const m = await value.indexManifest();
    return { digest, mediaType, platforms: m.manifests.flatMap((d) => (d.platform ? [d.platform] : [])) };
  }
  const cfg = await value.configFile();
  const platform: Platform = {
    os: cfg.os,
    architecture: cfg.architecture,
    ...(cfg.variant ? { variant: cfg.variant } : {}),
  };
  return { digest, mediaType, platforms: [platform] };
}

/**
 * referrerOf turns a listed manifest into a Referrer when it is an artifact of `subject` (and of
 * `artifactType`, when given); anything else is not one.
 */
export function referrerOf(
  descriptor: Descriptor,
  raw: Uint8Array,
  subject: Digest,
  artifactType: string | undefined,
  blob: (d: Descriptor) => Promise<Uint8Array>,
): Referrer | undefined {
  if (isIndexMediaType(descriptor.mediaType)) return undefined;
  const manifest = parseJson(ManifestSchema, raw, `referrer ${descriptor.digest}`);
  if (manifest.subject?.digest !== subject) return undefined;
  const type = manifest.artifactType ?? manifest.config.mediaType;
  if (artifactType !== undefined && type !== artifactType) return undefined;
  return { descriptor: { ...descriptor, artifactType: type }, manifest, raw, blob };
}

/** The write error of locations that take single images only. */
export function noIndexes(name: string): KilnError {
  return new KilnError(
    `${name}: a docker-archive holds one platform's image, not an index (pick one with --platform)`,
  );
}
