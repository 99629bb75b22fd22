import { createHash } from 'node:crypto';
import { isoOfEpoch } from '../oci/memory.ts';
import { spdxIdOf } from './dep5.ts';
import { spdxCreationInfo, spdxHeader, spdxPurlRef } from './document.ts';
import { type SbomComponent, type SbomMeta, sortComponents } from './model.ts';
import { contentUuid } from './uuid.ts';

export { SPDX_MEDIA_TYPE } from './document.ts';

const SPDX_ID_SAFE = /[^A-Za-z0-9.-]/g;

function spdxRef(prefix: string, s: string): string {
  return `SPDXRef-${prefix}-${s.replace(SPDX_ID_SAFE, '-')}`;
}

function licenseRef(name: string): string {
  return `LicenseRef-${name.replace(SPDX_ID_SAFE, '-')}`;
}

/**
 * spdxDocument renders components as an SPDX 2.3 JSON document: one package for the subject
 * (the image) that CONTAINS one package per component, licences as `licenseDeclared`
 * expressions (Debian names without an SPDX id become LicenseRef-… with their extracted info).
 * Deterministic like cyclonedxDocument: the namespace is a UUID URN derived from the content.
 */
export function spdxDocument(components: readonly SbomComponent[], meta: SbomMeta): Record<string, unknown> {
  const refs = new Map<string, string>();
  const extracted = new Map<string, string>();
  const rootId = spdxRef('Image', meta.subject.name);
  const packages: Record<string, unknown>[] = [];
  const root: Record<string, unknown> = {
    SPDXID: rootId,
    name: meta.subject.name,
    versionInfo: meta.subject.version ?? meta.subject.digest ?? 'NOASSERTION',
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    primaryPackagePurpose: 'CONTAINER',
  };
  if (meta.subject.digest)
    root.checksums = [{ algorithm: 'SHA256', checksumValue: meta.subject.digest.replace(/^sha256:/, '') }];
  packages.push(root);
  const used = new Set<string>([rootId]);
  for (const c of sortComponents(components)) {
    let id = spdxRef('Package', `${c.name}-${c.version}`);
    for (let i = 2; used.has(id); i++) id = spdxRef('Package', `${c.name}-${c.version}-${i}`);
    used.add(id);
    refs.set(c.purl, id);
    const terms = c.licenses.map((n) => {
      const sid = spdxIdOf(n);
      if (sid) return sid;
      const ref = licenseRef(n);
      extracted.set(ref, n);
      return ref;
    });
    const p: Record<string, unknown> = {
      SPDXID: id,
      name: c.name,
      versionInfo: c.version,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared:
        terms.length === 0 ? 'NOASSERTION' : terms.length === 1 ? terms[0] : terms.join(' AND '),
      copyrightText: 'NOASSERTION',
      externalRefs: [spdxPurlRef(c.purl)],
      primaryPackagePurpose: 'LIBRARY',
    };
    if (c.supplier)
      p.supplier =
        c.supplier.startsWith('Organization:') || c.supplier.startsWith('Person:')
          ? c.supplier
          : `Organization: ${c.supplier}`;
    if (c.description) p.summary = c.description;
    if (c.sha256) p.checksums = [{ algorithm: 'SHA256', checksumValue: c.sha256 }];
    packages.push(p);
  }
  const relationships = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: rootId },
    ...[...refs.values()].map((id) => ({
      spdxElementId: rootId,
      relationshipType: 'CONTAINS',
      relatedSpdxElement: id,
    })),
  ];
  const body: Record<string, unknown> = {
    ...spdxHeader(meta.subject.name),
    creationInfo: spdxCreationInfo(isoOfEpoch(meta.epoch), meta.tool),
    packages,
    relationships,
  };
  if (extracted.size > 0) {
    body.hasExtractedLicensingInfos = [...extracted.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([licenseId, name]) => ({
        licenseId,
        name,
        extractedText: `Licence "${name}" as named in the package's debian/copyright file`,
      }));
  }
  const ns = contentUuid(createHash('sha256').update(JSON.stringify(body)).digest('hex'));
  return { ...body, documentNamespace: `urn:uuid:${ns}`, documentDescribes: [rootId] };
}
