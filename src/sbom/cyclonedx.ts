import { createHash } from 'node:crypto';
import { isoOfEpoch } from '../oci/memory.ts';
import { spdxIdOf } from './dep5.ts';
import { cyclonedxHeader, cyclonedxTools } from './document.ts';
import { type SbomComponent, type SbomMeta, sortComponents } from './model.ts';
import { contentUuid } from './uuid.ts';

export { CYCLONEDX_MEDIA_TYPE } from './document.ts';

type CdxLicense = { license: { id: string } | { name: string } };

function cdxLicenses(names: readonly string[]): CdxLicense[] {
  return names.map((n) => {
    const id = spdxIdOf(n);
    return id ? { license: { id } } : { license: { name: n } };
  });
}

/**
 * cyclonedxDocument renders components as a CycloneDX 1.6 JSON document. It is deterministic:
 * components sorted by purl, the timestamp from SOURCE_DATE_EPOCH, and the serial number a UUID
 * derived from the document's own content.
 */
export function cyclonedxDocument(
  components: readonly SbomComponent[],
  meta: SbomMeta,
): Record<string, unknown> {
  const comps = sortComponents(components).map((c) => {
    const o: Record<string, unknown> = {
      type: 'library',
      'bom-ref': c.purl,
      name: c.name,
      version: c.version,
    };
    if (c.supplier) o.supplier = { name: c.supplier };
    if (c.description) o.description = c.description;
    if (c.sha256) o.hashes = [{ alg: 'SHA-256', content: c.sha256 }];
    if (c.licenses.length > 0) o.licenses = cdxLicenses(c.licenses);
    o.purl = c.purl;
    if (c.properties) {
      o.properties = Object.keys(c.properties)
        .sort()
        .map((k) => ({ name: k, value: c.properties![k]! }));
    }
    return o;
  });
  const subject: Record<string, unknown> = {
    type: 'container',
    'bom-ref': `kiln:image:${meta.subject.name}`,
    name: meta.subject.name,
  };
  if (meta.subject.version) subject.version = meta.subject.version;
  if (meta.subject.digest)
    subject.hashes = [{ alg: 'SHA-256', content: meta.subject.digest.replace(/^sha256:/, '') }];
  const body = {
    metadata: {
      timestamp: isoOfEpoch(meta.epoch),
      tools: cyclonedxTools(meta.tool),
      component: subject,
    },
    components: comps,
    dependencies: [{ ref: subject['bom-ref'], dependsOn: comps.map((c) => c['bom-ref'] as string) }],
  };
  const serial = `urn:uuid:${contentUuid(createHash('sha256').update(JSON.stringify(body)).digest('hex'))}`;
  return { ...cyclonedxHeader(serial), ...body };
}
