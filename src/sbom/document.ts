// The parts every SBOM document kiln writes has in common, in one place: the CycloneDX 1.6 and
// SPDX 2.3 headers, the tool and creator entries, purl references and the JSON text. The stack's
// image SBOM (cyclonedx.ts, spdx.ts), the launcher's SBOM, the --ca-certs-launch layer's SBOM and
// the bundled buildpacks' layer SBOMs are all built from these. Key order is part of the bytes, and
// the bytes are part of image digests: each helper returns its keys in the order the documents
// have always had them (golden-bytes.test.ts pins the results). No imports, so the buildpacks'
// bundle carries nothing more than these few functions.

/** CycloneDX media type, used for files and OCI referrer artifacts. */
export const CYCLONEDX_MEDIA_TYPE = 'application/vnd.cyclonedx+json';

/** SPDX JSON media type, used for files and OCI referrer artifacts. */
export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** A tool that wrote a document. */
export interface SbomTool {
  readonly name: string;
  readonly version: string;
}

/**
 * cyclonedxHeader is the start of a CycloneDX 1.6 JSON document: format, spec version, the
 * serial number (when the document has one) and the BOM version. Spread it first.
 */
export function cyclonedxHeader(serialNumber?: string): Record<string, unknown> {
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    ...(serialNumber !== undefined ? { serialNumber } : {}),
    version: 1,
  };
}

/** cyclonedxTools is `metadata.tools`: the one application that wrote the document. */
export function cyclonedxTools(tool: SbomTool): { components: Record<string, unknown>[] } {
  return { components: [{ type: 'application', name: tool.name, version: tool.version }] };
}

/** spdxHeader is the start of an SPDX 2.3 JSON document describing itself as `name`. */
export function spdxHeader(name: string): Record<string, unknown> {
  return { spdxVersion: 'SPDX-2.3', dataLicense: 'CC0-1.0', SPDXID: 'SPDXRef-DOCUMENT', name };
}

/** spdxCreationInfo is `creationInfo`: when (RFC 3339, no fraction) and by which tool. */
export function spdxCreationInfo(created: string, tool: SbomTool): { created: string; creators: string[] } {
  return { created, creators: [`Tool: ${tool.name}-${tool.version}`] };
}

/** spdxPurlRef is an SPDX external reference to a package URL. */
export function spdxPurlRef(purl: string): Record<string, string> {
  return { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl };
}

/** What a Syft JSON document says about the file it describes (its `source`). */
export interface SyftSource {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  /** Where the file is in the image. */
  readonly path: string;
}

/**
 * syftDocument is a Syft JSON (schema 16) document of `artifacts` found in one file written by
 * kiln `version`: the keys in the order kiln's documents have always had them.
 */
export function syftDocument(
  artifacts: readonly unknown[],
  relationships: readonly unknown[],
  source: SyftSource,
  version: string,
): Record<string, unknown> {
  return {
    artifacts,
    artifactRelationships: relationships,
    source: {
      id: source.id,
      name: source.name,
      version: source.version,
      type: 'file',
      metadata: { path: source.path },
    },
    distro: {},
    descriptor: { name: 'kiln', version },
    schema: {
      version: '16.0.0',
      url: 'https://raw.githubusercontent.com/anchore/syft/main/schema/json/schema-16.0.0.json',
    },
  };
}

/** sbomText is a document as written to a file or blob: two-space JSON and a final newline. */
export function sbomText(doc: unknown): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
