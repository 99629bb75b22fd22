import type { BuildMetadata } from '../cnb/lifecycle-metadata.ts';
import type { InspectSbom } from './inspect.ts';

// `kiln inspect --bom` in pack's shape (pack's inspectimage.BOMDisplay): {"remote": [...] | null,
// "local": [...] | null}, one entry per package: {name, version, metadata, buildpacks: {id,
// version}}. The side the image was read from gets the list, the other is null, as pack prints
// for an image only in the daemon or only in a registry. Entries are the legacy `bom` of the
// io.buildpacks.build.metadata label (Buildpack API < 0.7), then the packages of the image's
// launch SBOM files (CycloneDX preferred), which is where today's buildpacks record them.

/** One entry of pack's BOM display. */
export interface PackBomEntry {
  readonly name: string;
  readonly version?: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly buildpacks: { readonly id: string; readonly version: string };
}

/** pack's BOMDisplay. */
export interface PackBom {
  readonly remote: readonly PackBomEntry[] | null;
  readonly local: readonly PackBomEntry[] | null;
}

/** packBom builds pack's BOM display of an image read from `side`. */
export function packBom(
  build: BuildMetadata,
  sbom: InspectSbom | undefined,
  side: 'local' | 'remote',
): PackBom {
  const entries: PackBomEntry[] = [];
  const versionOf = (id: string) => build.buildpacks?.find((b) => b.id === id)?.version ?? '';
  for (const raw of build.bom ?? []) {
    if (typeof raw !== 'object' || raw === null) continue;
    const e = raw as { name?: unknown; version?: unknown; metadata?: unknown; buildpack?: { id?: unknown } };
    if (typeof e.name !== 'string') continue;
    const id = typeof e.buildpack?.id === 'string' ? e.buildpack.id : '';
    entries.push({
      name: e.name,
      ...(typeof e.version === 'string' && e.version ? { version: e.version } : {}),
      metadata:
        typeof e.metadata === 'object' && e.metadata !== null ? (e.metadata as Record<string, unknown>) : {},
      buildpacks: { id, version: versionOf(id) },
    });
  }
  // One format per SBOM directory (they list the same packages): CycloneDX, else SPDX, else Syft.
  const rank = { cyclonedx: 0, spdx: 1, syft: 2, other: 3 } as const;
  const chosen = new Map<string, NonNullable<InspectSbom['files']>[number]>();
  for (const f of sbom?.files ?? []) {
    const m = /^layers\/sbom\/launch\/([^/]+)\//.exec(f.path);
    if (!m || !f.items) continue;
    const dir = f.path.slice(0, f.path.lastIndexOf('/'));
    const cur = chosen.get(dir);
    if (!cur || rank[f.format] < rank[cur.format]) chosen.set(dir, f);
  }
  for (const f of chosen.values()) {
    const id = buildpackIdOf(/^layers\/sbom\/launch\/([^/]+)\//.exec(f.path)![1]!);
    for (const it of f.items ?? []) {
      entries.push({
        name: it.name,
        ...(it.version ? { version: it.version } : {}),
        metadata: { ...(it.purl ? { purl: it.purl } : {}), sbom: f.path },
        buildpacks: { id, version: versionOf(id) },
      });
    }
  }
  return side === 'local' ? { remote: null, local: entries } : { remote: entries, local: null };
}

/** The buildpack an SBOM directory name stands for (ids are escaped: '/' → '_'). */
function buildpackIdOf(escaped: string): string {
  // Buildpack ids hold no '_' (letters, digits, '.', '/', '-'): every '_' was a '/'.
  return escaped.replaceAll('_', '/');
}
