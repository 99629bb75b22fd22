import { z } from 'zod';

// A zod rendering of the SPDX 2.3 JSON schema's rules for the elements kiln writes (document,
// creation info, packages, relationships, extracted licensing info): required fields, closed
// objects (the schema's additionalProperties: false), the date-time and SPDXID patterns and the
// enumerations. No npm or Debian package ships the SPDX 2.3 JSON schema, so kiln checks its own
// and merged documents with this one.

const DATE =
  /^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]|23:59:60)Z$/;
const SPDXID = /^SPDXRef-[a-zA-Z0-9.-]+$/;

const Checksum = z.strictObject({
  algorithm: z.enum([
    'SHA1',
    'BLAKE3',
    'SHA3-384',
    'SHA256',
    'SHA384',
    'BLAKE2b-512',
    'BLAKE2b-256',
    'SHA3-512',
    'MD2',
    'ADLER32',
    'MD4',
    'SHA3-256',
    'BLAKE2b-384',
    'SHA512',
    'MD6',
    'MD5',
    'SHA224',
  ]),
  checksumValue: z.string().regex(/^[0-9a-fA-F]+$/),
});

const ExternalRef = z.strictObject({
  comment: z.string().optional(),
  referenceCategory: z.enum([
    'OTHER',
    'PERSISTENT-ID',
    'PERSISTENT_ID',
    'SECURITY',
    'PACKAGE-MANAGER',
    'PACKAGE_MANAGER',
  ]),
  referenceLocator: z.string(),
  referenceType: z.string(),
});

const Package = z.strictObject({
  SPDXID: z.string().regex(SPDXID),
  name: z.string(),
  downloadLocation: z.string(),
  versionInfo: z.string().optional(),
  filesAnalyzed: z.boolean().optional(),
  licenseConcluded: z.string().optional(),
  licenseDeclared: z.string().optional(),
  copyrightText: z.string().optional(),
  externalRefs: z.array(ExternalRef).optional(),
  checksums: z.array(Checksum).optional(),
  supplier: z.string().optional(),
  originator: z.string().optional(),
  summary: z.string().optional(),
  description: z.string().optional(),
  homepage: z.string().optional(),
  comment: z.string().optional(),
  sourceInfo: z.string().optional(),
  packageFileName: z.string().optional(),
  releaseDate: z.string().regex(DATE).optional(),
  builtDate: z.string().regex(DATE).optional(),
  primaryPackagePurpose: z
    .enum([
      'OTHER',
      'INSTALL',
      'ARCHIVE',
      'FIRMWARE',
      'APPLICATION',
      'FRAMEWORK',
      'LIBRARY',
      'CONTAINER',
      'SOURCE',
      'DEVICE',
      'OPERATING-SYSTEM',
      'FILE',
    ])
    .optional(),
});

const RELATIONSHIPS = [
  'VARIANT_OF',
  'COPY_OF',
  'PATCH_FOR',
  'TEST_DEPENDENCY_OF',
  'CONTAINED_BY',
  'DATA_FILE_OF',
  'OPTIONAL_COMPONENT_OF',
  'ANCESTOR_OF',
  'GENERATES',
  'CONTAINS',
  'OPTIONAL_DEPENDENCY_OF',
  'FILE_ADDED',
  'REQUIREMENT_DESCRIPTION_FOR',
  'DEV_DEPENDENCY_OF',
  'DEPENDENCY_OF',
  'BUILD_DEPENDENCY_OF',
  'DESCRIBES',
  'PREREQUISITE_FOR',
  'HAS_PREREQUISITE',
  'PROVIDED_DEPENDENCY_OF',
  'DYNAMIC_LINK',
  'DESCRIBED_BY',
  'METAFILE_OF',
  'DEPENDENCY_MANIFEST_OF',
  'PATCH_APPLIED',
  'RUNTIME_DEPENDENCY_OF',
  'TEST_OF',
  'TEST_TOOL_OF',
  'DEPENDS_ON',
  'SPECIFICATION_FOR',
  'FILE_MODIFIED',
  'DISTRIBUTION_ARTIFACT',
  'AMENDS',
  'DOCUMENTATION_OF',
  'GENERATED_FROM',
  'STATIC_LINK',
  'OTHER',
  'BUILD_TOOL_OF',
  'TEST_CASE_OF',
  'PACKAGE_OF',
  'DESCENDANT_OF',
  'FILE_DELETED',
  'EXPANDED_FROM_ARCHIVE',
  'DEV_TOOL_OF',
  'EXAMPLE_OF',
] as const;

const Relationship = z.strictObject({
  spdxElementId: z.string(),
  relationshipType: z.enum(RELATIONSHIPS),
  relatedSpdxElement: z.string(),
  comment: z.string().optional(),
});

/** SpdxDocumentSchema validates an SPDX 2.3 JSON document (see the file comment for its scope). */
export const SpdxDocumentSchema = z.strictObject({
  $schema: z.string().optional(),
  SPDXID: z.literal('SPDXRef-DOCUMENT'),
  spdxVersion: z.literal('SPDX-2.3'),
  dataLicense: z.literal('CC0-1.0'),
  name: z.string(),
  documentNamespace: z.string().regex(/^[a-z][a-z0-9+.-]*:\S+$/, 'expected an absolute URI'),
  creationInfo: z.strictObject({
    comment: z.string().optional(),
    created: z.string().regex(DATE),
    creators: z.array(z.string()).min(1),
    licenseListVersion: z.string().optional(),
  }),
  comment: z.string().optional(),
  documentDescribes: z.array(z.string()).optional(),
  packages: z.array(Package).optional(),
  relationships: z.array(Relationship).optional(),
  hasExtractedLicensingInfos: z
    .array(
      z.strictObject({
        licenseId: z.string().regex(/^LicenseRef-[a-zA-Z0-9.-]+$/),
        extractedText: z.string(),
        name: z.string().optional(),
        comment: z.string().optional(),
        seeAlsos: z.array(z.string()).optional(),
      }),
    )
    .optional(),
});

/**
 * validateSpdx checks a document against SpdxDocumentSchema and the cross-references the JSON
 * schema cannot express: unique SPDXIDs, relationships naming existing elements, and every
 * LicenseRef used in a licence field declared in hasExtractedLicensingInfos. Returns the problems
 * (empty when valid).
 */
export function validateSpdx(doc: unknown): string[] {
  const r = SpdxDocumentSchema.safeParse(doc);
  if (!r.success) return r.error.issues.map((i) => `${i.path.join('.') || '(document)'}: ${i.message}`);
  const d = r.data;
  const problems: string[] = [];
  const ids = new Set<string>(['SPDXRef-DOCUMENT']);
  for (const p of d.packages ?? []) {
    if (ids.has(p.SPDXID)) problems.push(`duplicate SPDXID ${p.SPDXID}`);
    ids.add(p.SPDXID);
  }
  for (const rel of d.relationships ?? []) {
    for (const id of [rel.spdxElementId, rel.relatedSpdxElement]) {
      if (!ids.has(id) && id !== 'NONE' && id !== 'NOASSERTION')
        problems.push(`relationship names unknown element ${id}`);
    }
  }
  const declared = new Set((d.hasExtractedLicensingInfos ?? []).map((x) => x.licenseId));
  for (const p of d.packages ?? []) {
    for (const f of [p.licenseDeclared, p.licenseConcluded]) {
      for (const ref of f?.match(/LicenseRef-[a-zA-Z0-9.-]+/g) ?? []) {
        if (!declared.has(ref)) problems.push(`${p.SPDXID}: ${ref} is not in hasExtractedLicensingInfos`);
      }
    }
  }
  return problems;
}
