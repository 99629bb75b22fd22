import { createHash } from 'node:crypto';
import {
  cyclonedxHeader,
  cyclonedxTools,
  sbomText,
  spdxCreationInfo,
  spdxHeader,
  spdxPurlRef,
} from '../../src/sbom/document.ts';
import { contentUuid } from '../../src/sbom/uuid.ts';
import { writeFileAtomic } from './fsutil.ts';

/**
 * SBOM documents for what a buildpack contributes, in the three formats the CNB spec names:
 * CycloneDX 1.6 JSON, SPDX 2.3 JSON and Syft JSON. Output is deterministic (no wall-clock time:
 * SOURCE_DATE_EPOCH or the CNB constant 1980-01-01T00:00:01Z) so unchanged layers keep their SBOMs.
 */

/** Component is one package in an SBOM. */
export interface Component {
  readonly name: string;
  readonly version: string;
  readonly purl: string;
  /** CycloneDX component type. */
  readonly type: 'library' | 'application' | 'framework' | 'platform';
  /** Syft package type, e.g. `npm` or `binary`. */
  readonly ecosystem: string;
  /** An SPDX licence expression as declared by the package, if any. */
  readonly license?: string;
  /** SHA-512 of the package archive, hex. */
  readonly sha512?: string;
  readonly sha1?: string;
}

/** Tool names the buildpack that wrote the SBOM. */
export interface Tool {
  readonly name: string;
  readonly version: string;
}

function created(env: NodeJS.ProcessEnv): string {
  const epoch = Number(env.SOURCE_DATE_EPOCH);
  const ms = Number.isFinite(epoch) && env.SOURCE_DATE_EPOCH ? epoch * 1000 : Date.UTC(1980, 0, 1, 0, 0, 1);
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** uuidFrom derives a stable UUID from content (SHA-1, as the documents have always used). */
function uuidFrom(text: string): string {
  return contentUuid(createHash('sha1').update(text).digest('hex'));
}

// A licence is only passed on as an SPDX expression when it looks like one (npm allows free text
// such as "SEE LICENSE IN LICENSE.md", which is not a valid expression).
const EXPRESSION = /^[A-Za-z0-9.+\-:() ]+$/;
function licenseExpression(license: string | undefined): string | undefined {
  if (!license || !EXPRESSION.test(license) || /\bSEE\b/i.test(license)) return undefined;
  return license;
}

function sortComponents(components: readonly Component[]): Component[] {
  return [...components].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
}

/** cycloneDx renders a CycloneDX 1.6 JSON document. */
export function cycloneDx(components: readonly Component[], tool: Tool): Record<string, unknown> {
  const sorted = sortComponents(components);
  return {
    ...cyclonedxHeader(`urn:uuid:${uuidFrom(JSON.stringify(sorted))}`),
    metadata: { tools: cyclonedxTools(tool) },
    components: sorted.map((c) => {
      const expr = licenseExpression(c.license);
      const hashes = [
        ...(c.sha512 ? [{ alg: 'SHA-512', content: c.sha512 }] : []),
        ...(c.sha1 ? [{ alg: 'SHA-1', content: c.sha1 }] : []),
      ];
      return {
        type: c.type,
        'bom-ref': c.purl,
        name: c.name,
        version: c.version,
        purl: c.purl,
        ...(expr ? { licenses: [{ expression: expr }] } : {}),
        ...(hashes.length ? { hashes } : {}),
      };
    }),
  };
}

function spdxId(index: number, c: Component): string {
  return `SPDXRef-Package-${c.ecosystem}-${c.name.replace(/[^A-Za-z0-9.-]/g, '-')}-${index}`;
}

/** spdx renders an SPDX 2.3 JSON document. */
export function spdx(
  components: readonly Component[],
  tool: Tool,
  env: NodeJS.ProcessEnv,
  name: string,
): Record<string, unknown> {
  const sorted = sortComponents(components);
  const ids = sorted.map((c, i) => spdxId(i, c));
  return {
    ...spdxHeader(name),
    documentNamespace: `urn:uuid:${uuidFrom(`${name}\n${JSON.stringify(sorted)}`)}`,
    creationInfo: spdxCreationInfo(created(env), tool),
    packages: sorted.map((c, i) => {
      const checksums = [
        ...(c.sha512 ? [{ algorithm: 'SHA512', checksumValue: c.sha512 }] : []),
        ...(c.sha1 ? [{ algorithm: 'SHA1', checksumValue: c.sha1 }] : []),
      ];
      return {
        SPDXID: ids[i],
        name: c.name,
        versionInfo: c.version,
        downloadLocation: 'NOASSERTION',
        filesAnalyzed: false,
        licenseConcluded: 'NOASSERTION',
        licenseDeclared: licenseExpression(c.license) ?? 'NOASSERTION',
        copyrightText: 'NOASSERTION',
        ...(checksums.length ? { checksums } : {}),
        externalRefs: [spdxPurlRef(c.purl)],
      };
    }),
    relationships: ids.map((id) => ({
      spdxElementId: 'SPDXRef-DOCUMENT',
      relationshipType: 'DESCRIBES',
      relatedSpdxElement: id,
    })),
  };
}

/** syft renders a Syft JSON document (schema 16). */
export function syft(components: readonly Component[], tool: Tool): Record<string, unknown> {
  const sorted = sortComponents(components);
  return {
    artifacts: sorted.map((c) => {
      const expr = licenseExpression(c.license);
      return {
        id: uuidFrom(c.purl).replaceAll('-', '').slice(0, 16),
        name: c.name,
        version: c.version,
        type: c.ecosystem,
        foundBy: tool.name,
        locations: [],
        licenses: expr
          ? [{ value: expr, spdxExpression: expr, type: 'declared', urls: [], locations: [] }]
          : [],
        language: c.ecosystem === 'npm' ? 'javascript' : '',
        cpes: [],
        purl: c.purl,
      };
    }),
    artifactRelationships: [],
    source: { id: '', name: '', version: '', type: 'directory', metadata: { path: '' } },
    distro: {},
    descriptor: { name: tool.name, version: tool.version },
    schema: {
      version: '16.0.18',
      url: 'https://raw.githubusercontent.com/anchore/syft/main/schema/json/schema-16.0.18.json',
    },
  };
}

/**
 * writeSboms writes `<prefix>.sbom.cdx.json`, `.spdx.json` and `.syft.json`, where prefix is
 * `<layers>/<bp>/<layer>` for a layer SBOM or `<layers>/<bp>/launch` for the launch SBOM.
 */
export async function writeSboms(
  prefix: string,
  components: readonly Component[],
  tool: Tool,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const name = prefix.split('/').slice(-2).join('/');
  await writeFileAtomic(`${prefix}.sbom.cdx.json`, sbomText(cycloneDx(components, tool)));
  await writeFileAtomic(`${prefix}.sbom.spdx.json`, sbomText(spdx(components, tool, env, name)));
  await writeFileAtomic(`${prefix}.sbom.syft.json`, sbomText(syft(components, tool)));
}

/** npmPurl is the package URL of an npm package (`@scope` is percent-encoded as the purl spec requires). */
export function npmPurl(name: string, version: string): string {
  const encoded = name.startsWith('@') ? `%40${name.slice(1)}` : name;
  return `pkg:npm/${encoded}@${encodeURIComponent(version)}`;
}

/** integrityHex converts an SRI `sha512-<base64>` string to hex, or undefined for other algorithms. */
export function integrityHex(integrity: string | undefined, alg = 'sha512'): string | undefined {
  if (!integrity) return undefined;
  for (const part of integrity.split(/\s+/)) {
    if (part.startsWith(`${alg}-`)) return Buffer.from(part.slice(alg.length + 1), 'base64').toString('hex');
  }
  return undefined;
}
