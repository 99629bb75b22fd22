import { mkdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { licensesFromCopyright } from '../debian/copyright.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import type { Layout } from '../layout/layout.ts';
import type { Descriptor } from '../oci/schema.ts';
import { sbomArtifact } from '../sbom/artifact.ts';
import { CYCLONEDX_MEDIA_TYPE, cyclonedxDocument } from '../sbom/cyclonedx.ts';
import { debPurl, type SbomComponent, type SbomMeta } from '../sbom/model.ts';
import { sbomBytes } from '../sbom/referrers.ts';
import { SPDX_MEDIA_TYPE, spdxDocument } from '../sbom/spdx.ts';
import type { StackConfig } from './config.ts';
import type { UnpackedPackage } from './rootfs.ts';

// The SBOM readers moved to src/sbom/referrers.ts (the lifecycle reads them, and must not depend
// on the stack); re-exported for the commands that import them from here.
export {
  readArtifact,
  referrersOf,
  type SbomMediaType,
  sbomBytes,
  sbomOfImage,
  sbomOfRemoteImage,
  sbomsOfImage,
} from '../sbom/referrers.ts';

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
      // A probe: a doc dir that is not a link has no other package's copyright to borrow.
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
  for (const [mediaType, doc] of [
    [CYCLONEDX_MEDIA_TYPE, docs.cyclonedx],
    [SPDX_MEDIA_TYPE, docs.spdx],
  ] as const) {
    const art = sbomArtifact(subject, mediaType, sbomBytes(doc));
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
