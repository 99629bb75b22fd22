import { mkdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { json } from 'node:stream/consumers';
import { KilnError } from '../cnb/exit-codes.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import type { Layout } from '../layout/layout.ts';
import { REF_NAME } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { type Descriptor, type Manifest, ManifestSchema, parseJson } from '../oci/schema.ts';
import type { RepositoryClient } from '../registry/client.ts';
import { artifactImage } from '../sbom/artifact.ts';
import { CYCLONEDX_MEDIA_TYPE, cyclonedxDocument } from '../sbom/cyclonedx.ts';
import { licensesFromCopyright } from '../sbom/dep5.ts';
import { debPurl, type SbomComponent, type SbomMeta } from '../sbom/model.ts';
import { SPDX_MEDIA_TYPE, spdxDocument } from '../sbom/spdx.ts';
import type { StackConfig } from './config.ts';
import type { UnpackedPackage } from './rootfs.ts';

/** KILN_TOOL names kiln in SBOM documents. */
export const KILN_TOOL = { name: 'kiln', version: '0.1.0' } as const;

/** distroTag is the purl `distro` qualifier of a stack: "debian-12". */
export function distroTag(config: StackConfig): string {
  return `${config.distro.name}-${config.distro.version}`;
}

/**
 * packageComponents turns installed packages into SBOM components, with licences read from each
 * package's machine-readable copyright file (following `/usr/share/doc/<pkg>` symlinks to the
 * package that holds it, as Debian does for library packages built from one source).
 */
export async function packageComponents(
  root: string,
  pkgs: readonly UnpackedPackage[],
  config: StackConfig,
): Promise<SbomComponent[]> {
  const copyrights = new Map<string, string>();
  for (const u of pkgs) for (const [k, v] of u.copyrights) copyrights.set(k, v);
  const distro = distroTag(config);
  const out: SbomComponent[] = [];
  for (const u of pkgs) {
    let doc = `usr/share/doc/${u.pkg.name}`;
    let text = copyrights.get(`${doc}/copyright`);
    if (text === undefined) {
      const link = await readlink(join(root, doc)).catch(() => undefined);
      if (link) {
        doc = posix.normalize(posix.join(posix.dirname(doc), link)).replace(/^\/+/, '');
        text = copyrights.get(`${doc}/copyright`);
      }
    }
    const maintainer = u.control.control.get('maintainer');
    const description = u.control.control.get('description')?.split('\n', 1)[0];
    out.push({
      name: u.pkg.name,
      version: u.pkg.version,
      purl: debPurl(u.pkg.name, u.pkg.version, u.pkg.arch, distro, config.distro.name),
      licenses: text ? licensesFromCopyright(text) : [],
      ...(maintainer ? { supplier: supplierOf(maintainer) } : {}),
      ...(description ? { description } : {}),
      sha256: u.pkg.sha256,
      properties: { 'kiln:deb:source': u.pkg.source, 'kiln:deb:suite': u.pkg.suite },
    });
  }
  return out;
}

/** supplierOf renders a Debian `Maintainer: Name <mail>` as SPDX's `Person: Name (mail)`. */
function supplierOf(maintainer: string): string {
  const m = /^(.*?)\s*<([^>]+)>\s*$/.exec(maintainer);
  return m ? `Person: ${m[1]} (${m[2]})` : `Person: ${maintainer}`;
}

/** SbomDocs are the two documents of one image. */
export interface SbomDocs {
  readonly cyclonedx: Record<string, unknown>;
  readonly spdx: Record<string, unknown>;
}

/** sbomDocuments renders components as CycloneDX 1.6 and SPDX 2.3 for an image. */
export function sbomDocuments(components: readonly SbomComponent[], meta: SbomMeta): SbomDocs {
  return { cyclonedx: cyclonedxDocument(components, meta), spdx: spdxDocument(components, meta) };
}

/** sbomBytes serialises a document the one way kiln always does (stable bytes, stable digests). */
export function sbomBytes(doc: Record<string, unknown>): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
}

/** writeSbomFiles writes `<dir>/<base>.sbom.cdx.json` and `.sbom.spdx.json` atomically. */
export async function writeSbomFiles(dir: string, base: string, docs: SbomDocs): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = [join(dir, `${base}.sbom.cdx.json`), join(dir, `${base}.sbom.spdx.json`)];
  await writeFileAtomic(files[0]!, sbomBytes(docs.cyclonedx));
  await writeFileAtomic(files[1]!, sbomBytes(docs.spdx));
  return files;
}

/**
 * attachSbom writes each document as an OCI referrer artifact of `subject` into the layout
 * (untagged manifests whose `subject` is the image), the layout form of `cosign attach sbom` /
 * `oras attach`. Registries get the same manifests pushed; they then show up in the referrers API.
 */
export async function attachSbom(layout: Layout, subject: Descriptor, docs: SbomDocs): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  const present = new Set((await layout.index()).manifests.map((m) => m.digest));
  for (const [mediaType, doc, title] of [
    [CYCLONEDX_MEDIA_TYPE, docs.cyclonedx, 'sbom.cdx.json'],
    [SPDX_MEDIA_TYPE, docs.spdx, 'sbom.spdx.json'],
  ] as const) {
    const art = artifactImage({
      artifactType: mediaType,
      subject,
      files: [{ mediaType, data: sbomBytes(doc), title }],
    });
    const digest = await art.digest();
    if (present.has(digest)) {
      // Already attached by an earlier run (same image, same packages): nothing to add.
      out.push({ mediaType: await art.mediaType(), digest, size: (await art.rawManifest()).length });
      continue;
    }
    out.push(await layout.writeImage(art));
  }
  return out;
}

/** referrersOf lists the manifests in a layout whose `subject` is `digest` (with their manifests). */
export async function referrersOf(
  layout: Layout,
  digest: Digest,
): Promise<{ descriptor: Descriptor; manifest: Manifest }[]> {
  const out: { descriptor: Descriptor; manifest: Manifest }[] = [];
  for (const d of (await layout.index()).manifests) {
    if (d.annotations?.[REF_NAME]) continue;
    let m: Manifest;
    try {
      m = parseJson(ManifestSchema, await layout.blobs.readBytes(d.digest), `manifest ${d.digest}`);
    } catch {
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
