/**
 * The launcher's own SBOM (RFC 0095 "lifecycle SBOMs"): the exporter ships it as the
 * `buildpacksio/lifecycle:launcher` entry of the SBOM layer, from
 * `<layers>/sbom/launch/buildpacksio_lifecycle/launcher/sbom.{cdx,spdx,syft}.json`.
 * It describes the launcher binary (name, version, sha256) and the musl C library linked into it
 * statically (the Debian package version recorded at build time). Documents carry no clock
 * values, so the SBOM layer stays reproducible.
 */
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
import type { LauncherInfo } from './index.ts';

/** The three documents, as JSON text. */
export interface LauncherSbomFiles {
  readonly cdx: string;
  readonly spdx: string;
  readonly syft: string;
}

const FIXED_TIME = '1980-01-01T00:00:01Z';

function launcherPurl(i: LauncherInfo): string {
  // The architecture is part of what the binary is: the arm64 and amd64 launchers are two packages.
  return `pkg:generic/kiln-launcher@${encodeURIComponent(i.version)}?arch=${i.arch}&checksum=sha256:${i.sha256}`;
}

function muslPurl(i: LauncherInfo): string {
  const m = i.musl;
  return `pkg:deb/debian/${m.source}@${encodeURIComponent(m.version)}?arch=${m.arch}&distro=${m.distro}`;
}

/** launcherSbom renders the CycloneDX 1.6, SPDX 2.3 and Syft JSON documents for `launcher`. */
export function launcherSbom(launcher: LauncherInfo): LauncherSbomFiles {
  const lp = launcherPurl(launcher);
  const mp = muslPurl(launcher);
  const tool = { name: 'kiln', version: launcher.version };
  const cdx = {
    ...cyclonedxHeader(`urn:uuid:${contentUuid(launcher.sha256, 4)}`),
    metadata: {
      tools: cyclonedxTools(tool),
      component: {
        'bom-ref': lp,
        type: 'application',
        name: 'kiln-launcher',
        version: launcher.version,
        purl: lp,
      },
    },
    components: [
      {
        'bom-ref': lp,
        type: 'application',
        name: 'kiln-launcher',
        version: launcher.version,
        description: 'CNB launcher of kiln (/cnb/lifecycle/launcher), static binary',
        hashes: [{ alg: 'SHA-256', content: launcher.sha256 }],
        licenses: [{ license: { id: 'Apache-2.0' } }],
        purl: lp,
        properties: [{ name: 'kiln:path', value: '/cnb/lifecycle/launcher' }],
      },
      {
        'bom-ref': mp,
        type: 'library',
        name: launcher.musl.source,
        version: launcher.musl.version,
        description: 'musl C library, linked statically into the launcher',
        licenses: [{ license: { id: 'MIT' } }],
        purl: mp,
        properties: [{ name: 'kiln:linkage', value: 'static' }],
      },
    ],
    dependencies: [
      { ref: lp, dependsOn: [mp] },
      { ref: mp, dependsOn: [] },
    ],
  };

  const spdx = {
    ...spdxHeader(`kiln-launcher-${launcher.version}`),
    documentNamespace: `https://kiln.invalid/spdx/kiln-launcher/${launcher.sha256}`,
    creationInfo: spdxCreationInfo(FIXED_TIME, tool),
    packages: [
      {
        SPDXID: 'SPDXRef-Package-kiln-launcher',
        name: 'kiln-launcher',
        versionInfo: launcher.version,
        downloadLocation: 'NOASSERTION',
        filesAnalyzed: false,
        checksums: [{ algorithm: 'SHA256', checksumValue: launcher.sha256 }],
        licenseConcluded: 'Apache-2.0',
        licenseDeclared: 'Apache-2.0',
        copyrightText: 'NOASSERTION',
        primaryPackagePurpose: 'APPLICATION',
        externalRefs: [spdxPurlRef(lp)],
      },
      {
        SPDXID: 'SPDXRef-Package-musl',
        name: launcher.musl.source,
        versionInfo: launcher.musl.version,
        supplier: 'Organization: Debian',
        downloadLocation: 'NOASSERTION',
        filesAnalyzed: false,
        licenseConcluded: 'MIT',
        licenseDeclared: 'MIT',
        copyrightText: 'NOASSERTION',
        primaryPackagePurpose: 'LIBRARY',
        externalRefs: [spdxPurlRef(mp)],
      },
    ],
    relationships: [
      {
        spdxElementId: 'SPDXRef-DOCUMENT',
        relationshipType: 'DESCRIBES',
        relatedSpdxElement: 'SPDXRef-Package-kiln-launcher',
      },
      {
        spdxElementId: 'SPDXRef-Package-musl',
        relationshipType: 'STATIC_LINK',
        relatedSpdxElement: 'SPDXRef-Package-kiln-launcher',
      },
    ],
  };

  const syft = syftDocument(
    [
      {
        id: launcher.sha256.slice(0, 16),
        name: 'kiln-launcher',
        version: launcher.version,
        type: 'binary',
        foundBy: 'kiln',
        locations: [{ path: '/cnb/lifecycle/launcher' }],
        licenses: [{ value: 'Apache-2.0', spdxExpression: 'Apache-2.0', type: 'declared' }],
        language: 'c',
        cpes: [],
        purl: lp,
      },
      {
        id: `musl-${launcher.musl.version}`,
        name: launcher.musl.source,
        version: launcher.musl.version,
        type: 'deb',
        foundBy: 'kiln',
        locations: [{ path: '/cnb/lifecycle/launcher' }],
        licenses: [{ value: 'MIT', spdxExpression: 'MIT', type: 'declared' }],
        language: '',
        cpes: [],
        purl: mp,
      },
    ],
    [{ parent: launcher.sha256.slice(0, 16), child: `musl-${launcher.musl.version}`, type: 'dependency-of' }],
    {
      id: launcher.sha256,
      name: 'kiln-launcher',
      version: launcher.version,
      path: '/cnb/lifecycle/launcher',
    },
    launcher.version,
  );

  return { cdx: sbomText(cdx), spdx: sbomText(spdx), syft: sbomText(syft) };
}

/** The launcher's SBOM folder under a layers directory. */
export const LAUNCHER_SBOM_DIR = 'sbom/launch/buildpacksio_lifecycle/launcher';

/** writeLauncherSbom writes the three files under `<layersDir>/sbom/launch/buildpacksio_lifecycle/launcher/`. */
export async function writeLauncherSbom(layersDir: string, launcher: LauncherInfo): Promise<string[]> {
  const dir = path.join(layersDir, LAUNCHER_SBOM_DIR);
  const docs = launcherSbom(launcher);
  const written: string[] = [];
  for (const [ext, body] of [
    ['cdx', docs.cdx],
    ['spdx', docs.spdx],
    ['syft', docs.syft],
  ] as const) {
    const file = path.join(dir, `sbom.${ext}.json`);
    await writeFileAtomic(file, body);
    written.push(file);
  }
  return written;
}
