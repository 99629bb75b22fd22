// An image's SBOM documents, attached as OCI referrer artifacts: the one serialisation, and the
// readers for a layout and a registry.
import { json } from 'node:stream/consumers';
import { KilnError } from '../internal/errors.ts';
import type { Layout } from '../layout/layout.ts';
import { mayReferTo } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { type Descriptor, type Manifest, ManifestSchema, parseJson } from '../oci/schema.ts';
import type { RepositoryClient } from '../registry/client.ts';
import { artifactImage } from './artifact.ts';
import type { CYCLONEDX_MEDIA_TYPE } from './cyclonedx.ts';
import type { SPDX_MEDIA_TYPE } from './spdx.ts';

/** sbomBytes serialises a document the one way kiln always does (stable bytes, stable digests). */
export function sbomBytes(doc: Record<string, unknown>): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
}

/** referrersOf lists the manifests in a layout whose `subject` is `digest` (with their manifests). */
export async function referrersOf(
  layout: Layout,
  digest: Digest,
): Promise<{ descriptor: Descriptor; manifest: Manifest }[]> {
  const out: { descriptor: Descriptor; manifest: Manifest }[] = [];
  for (const d of (await layout.index()).manifests) {
    if (!mayReferTo(d, digest)) continue;
    let m: Manifest;
    try {
      m = parseJson(ManifestSchema, await layout.blobs.readBytes(d.digest), `manifest ${d.digest}`);
    } catch {
      // Every manifest of the layout is read to find referrers: a broken one that is not asked
      // about must not hide the others (it names no subject kiln can trust anyway).
      continue;
    }
    if (m.subject?.digest === digest) out.push({ descriptor: d, manifest: m });
  }
  return out;
}

/**
 * readArtifact rebuilds a referrer artifact stored in a layout as an Image (artifact manifests
 * have no image config, so the layout's image reader does not apply); the result has the same
 * digest, which is checked.
 */
export async function readArtifact(
  layout: Layout,
  r: { descriptor: Descriptor; manifest: Manifest },
): Promise<Image> {
  const m = r.manifest;
  if (!m.subject || !m.artifactType)
    throw new KilnError(`manifest ${r.descriptor.digest} is not an artifact with a subject`);
  const files = [];
  for (const l of m.layers) {
    files.push({
      mediaType: l.mediaType,
      data: new Uint8Array(await layout.blobs.readBytes(l.digest)),
      title: l.annotations?.['org.opencontainers.image.title'] ?? '',
    });
  }
  const art = artifactImage({
    artifactType: m.artifactType,
    subject: m.subject,
    files,
    ...(m.annotations ? { annotations: m.annotations } : {}),
  });
  if ((await art.digest()) !== r.descriptor.digest)
    throw new KilnError(`artifact ${r.descriptor.digest} in ${layout.dir} cannot be rebuilt byte for byte`);
  return art;
}

/** The SBOM document formats kiln attaches as referrers. */
export type SbomMediaType = typeof CYCLONEDX_MEDIA_TYPE | typeof SPDX_MEDIA_TYPE;

/**
 * sbomsOfImage finds the SBOM referrers of the image `digest` in a layout (one pass over the
 * layout's manifests) and returns the first document of each of `mediaTypes` (CycloneDX or SPDX
 * JSON) it holds. The lifecycle calls this to carry the base image's OS packages into an app
 * image's SBOM.
 */
export async function sbomsOfImage(
  layout: Layout,
  digest: Digest,
  mediaTypes: readonly SbomMediaType[],
): Promise<Map<SbomMediaType, Record<string, unknown>>> {
  const out = new Map<SbomMediaType, Record<string, unknown>>();
  for (const { manifest } of await referrersOf(layout, digest)) {
    const type = mediaTypes.find((t) => t === manifest.artifactType);
    if (!type || out.has(type)) continue;
    const blob = manifest.layers.find((l) => l.mediaType === type);
    if (!blob) continue;
    out.set(type, JSON.parse((await layout.blobs.readBytes(blob.digest)).toString('utf8')));
  }
  return out;
}

/** sbomOfImage is sbomsOfImage for one format: its document, or undefined. */
export async function sbomOfImage(
  layout: Layout,
  digest: Digest,
  mediaType: SbomMediaType,
): Promise<Record<string, unknown> | undefined> {
  return (await sbomsOfImage(layout, digest, [mediaType])).get(mediaType);
}

/**
 * sbomOfRemoteImage is sbomOfImage for an image in a registry: it asks the repository for the
 * image's referrers of `mediaType` (the referrers API or the tag-schema fallback) and returns the
 * first such document, or undefined.
 */
export async function sbomOfRemoteImage(
  repo: RepositoryClient,
  digest: Digest,
  mediaType: SbomMediaType,
): Promise<Record<string, unknown> | undefined> {
  const index = await repo.referrers(digest, mediaType);
  for (const d of index.manifests) {
    if (d.artifactType !== mediaType) continue;
    const m = parseJson(ManifestSchema, (await repo.getManifest(d.digest)).bytes, `referrer ${d.digest}`);
    const blob = m.layers.find((l) => l.mediaType === mediaType);
    if (!blob) continue;
    return (await json(await repo.openBlob(blob.digest, blob.size))) as Record<string, unknown>;
  }
  return undefined;
}
