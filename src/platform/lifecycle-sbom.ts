/**
 * The lifecycle's own SBOM (RFC 0095 "lifecycle SBOMs"): kiln is the lifecycle, so a build records
 * kiln's version and its npm dependencies in
 * `<layers>/sbom/build/buildpacksio_lifecycle/sbom.{cdx,spdx,syft}.json`. Build SBOMs are not
 * exported into the image; `--sbom-output-dir` saves them and the provenance lists them.
 * Documents carry no clock values (same kiln, same bytes).
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import {
  cyclonedxHeader,
  cyclonedxTools,
  sbomText,
  spdxCreationInfo,
  spdxHeader,
  spdxPurlRef,
  syftDocument,
} from '../sbom/document.ts';
import { contentUuid } from '../sbom/uuid.ts';

/** What the lifecycle SBOM describes: kiln and the npm packages it runs with. */
export interface LifecycleFacts {
  readonly version: string;
  readonly dependencies: readonly { readonly name: string; readonly version: string }[];
}

export const LIFECYCLE_SBOM_DIR = 'sbom/build/buildpacksio_lifecycle';
const FIXED_TIME = '1980-01-01T00:00:01Z';

const npmPurl = (name: string, version: string) =>
  `pkg:npm/${name.startsWith('@') ? `%40${name.slice(1)}` : name}@${encodeURIComponent(version)}`;

/** lifecycleSbom renders the CycloneDX 1.6, SPDX 2.3 and Syft JSON documents. */
export function lifecycleSbom(f: LifecycleFacts): { cdx: string; spdx: string; syft: string } {
  const deps = [...f.dependencies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const kp = npmPurl('kiln', f.version);
  const tool = { name: 'kiln', version: f.version };
  const seed = createHash('sha256')
    .update(JSON.stringify([f.version, deps]))
    .digest('hex');
  const cdx = {
    ...cyclonedxHeader(`urn:uuid:${contentUuid(seed, 4)}`),
    metadata: {
      tools: cyclonedxTools(tool),
      component: { 'bom-ref': kp, type: 'application', name: 'kiln', version: f.version, purl: kp },
    },
    components: deps.map((d) => ({
      'bom-ref': npmPurl(d.name, d.version),
      type: 'library',
      name: d.name,
      version: d.version,
      purl: npmPurl(d.name, d.version),
    })),
    dependencies: [
      { ref: kp, dependsOn: deps.map((d) => npmPurl(d.name, d.version)) },
      ...deps.map((d) => ({ ref: npmPurl(d.name, d.version), dependsOn: [] })),
    ],
  };
  const id = (name: string) => `SPDXRef-Package-${name.replace(/[^A-Za-z0-9.-]/g, '-')}`;
  const spdx = {
    ...spdxHeader(`kiln-lifecycle-${f.version}`),
    documentNamespace: `https://kiln.invalid/spdx/kiln-lifecycle/${seed}`,
    creationInfo: spdxCreationInfo(FIXED_TIME, tool),
    packages: [{ name: 'kiln', version: f.version }, ...deps].map((d) => ({
      SPDXID: id(d.name),
      name: d.name,
      versionInfo: d.version,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      primaryPackagePurpose: d.name === 'kiln' ? 'APPLICATION' : 'LIBRARY',
      externalRefs: [spdxPurlRef(npmPurl(d.name, d.version))],
    })),
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: id('kiln') },
      ...deps.map((d) => ({
        spdxElementId: id('kiln'),
        relationshipType: 'DEPENDS_ON',
        relatedSpdxElement: id(d.name),
      })),
    ],
  };
  const syft = syftDocument(
    [{ name: 'kiln', version: f.version }, ...deps].map((d) => ({
      id: createHash('sha256').update(`${d.name}@${d.version}`).digest('hex').slice(0, 16),
      name: d.name,
      version: d.version,
      type: 'npm',
      foundBy: 'kiln',
      locations: [],
      licenses: [],
      language: 'javascript',
      cpes: [],
      purl: npmPurl(d.name, d.version),
    })),
    [],
    { id: seed, name: 'kiln', version: f.version, path: '/cnb/lifecycle' },
    f.version,
  );
  return { cdx: sbomText(cdx), spdx: sbomText(spdx), syft: sbomText(syft) };
}

/**
 * writeLifecycleSbom writes the three files under `<sbomDir>/build/buildpacksio_lifecycle/` (the
 * `--sbom-output-dir` layout of `<layers>/sbom`). What is there already came from buildpacks: a
 * link or file on the way is removed, never followed.
 */
export async function writeLifecycleSbom(sbomDir: string, f: LifecycleFacts): Promise<void> {
  let dir = sbomDir;
  await mkdir(dir, { recursive: true });
  for (const part of LIFECYCLE_SBOM_DIR.split('/').slice(1)) {
    dir = path.join(dir, part);
    const st = await lstat(dir).catch(() => undefined);
    if (st && !st.isDirectory()) await rm(dir, { force: true });
    if (!st?.isDirectory()) await mkdir(dir);
  }
  const docs = lifecycleSbom(f);
  for (const [ext, body] of Object.entries(docs))
    await writeFileAtomic(path.join(dir, `sbom.${ext}.json`), body);
}
