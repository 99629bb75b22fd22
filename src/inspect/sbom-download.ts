import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  LIFECYCLE_METADATA_LABEL,
  parseLifecycleMetadata,
  RUN_IMAGE_SBOM_DIR,
} from '../cnb/lifecycle-metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { Image } from '../oci/image.ts';
import { cyclonedxDocument } from '../sbom/cyclonedx.ts';
import type { SbomComponent } from '../sbom/model.ts';
import { spdxDocument } from '../sbom/spdx.ts';

// `kiln sbom download IMAGE --output-dir DIR`: the SBOM layer of an app image written
// out in the standard `layers/sbom/<launch|build|cache>/<buildpack>/<layer>/sbom.<ext>.json`
// layout, plus one merged CycloneDX and one merged SPDX document for the whole image: the run
// image's OS packages (its SBOM referrer, when the caller finds it), every buildpack's packages
// and the launcher (whose SBOM sits in the same layer).

/** SBOM file formats by extension. */
export const SBOM_FORMATS = ['cyclonedx', 'spdx', 'syft'] as const;
export type SbomFormat = (typeof SBOM_FORMATS)[number];
const EXT: Record<string, SbomFormat> = { cdx: 'cyclonedx', spdx: 'spdx', syft: 'syft' };

/** Options of downloadSbom. */
export interface SbomDownloadOptions {
  readonly image: Image;
  /** The image's name (the merged documents describe it). */
  readonly name: string;
  readonly outputDir: string;
  /** Formats of the per-layer files to write and of the merged documents (default all). */
  readonly formats?: readonly SbomFormat[];
  /** The run image's CycloneDX document (OS packages), when found. */
  readonly baseSbom?: Record<string, unknown>;
  /** SOURCE_DATE_EPOCH for the merged documents' timestamps. */
  readonly epoch: number;
  readonly tool: { readonly name: string; readonly version: string };
}

/** What downloadSbom wrote. */
export interface SbomDownloadResult {
  /** Per-layer files, relative to outputDir, sorted. */
  readonly files: readonly string[];
  /** Merged documents written (relative), e.g. sbom.cdx.json, sbom.spdx.json. */
  readonly merged: readonly string[];
  /** Distinct packages (by purl) in the merged documents. */
  readonly components: number;
  /** Of which from the run image. */
  readonly osPackages: number;
  /**
   * The SBOM layer's run image document describes another run image than the one the image now
   * sits on (it was rebased) and no current run image SBOM was given: it was left out of the merge.
   */
  readonly staleRunImageSbom: boolean;
}

/** downloadSbom writes the image's SBOM files and the merged documents into outputDir. */
export async function downloadSbom(o: SbomDownloadOptions): Promise<SbomDownloadResult> {
  const formats = new Set(o.formats ?? SBOM_FORMATS);
  const cfg = await o.image.configFile();
  const raw = cfg.config?.Labels?.[LIFECYCLE_METADATA_LABEL];
  if (raw === undefined)
    throw new KilnError(`${o.name} is not a buildpacks app image (no ${LIFECYCLE_METADATA_LABEL} label)`);
  const md = parseLifecycleMetadata(raw);
  const files: string[] = [];
  const byDir = new Map<string, Map<SbomFormat, unknown>>();
  if (md.sbom?.sha) {
    const i = cfg.rootfs.diff_ids.indexOf(md.sbom.sha as (typeof cfg.rootfs.diff_ids)[number]);
    if (i < 0) throw new KilnError(`${o.name}: its SBOM layer ${md.sbom.sha} is not among its layers`);
    const layer = (await o.image.layers())[i]!;
    for await (const e of readTar(await layer.uncompressed())) {
      const rel = safeSbomPath(e.header.path);
      const m = rel ? /\/sbom\.(cdx|spdx|syft)\.json$/.exec(rel) : null;
      const format = m ? EXT[m[1]!] : undefined;
      // An unread body is skipped by readTar.
      if (e.header.type !== 'file' || !rel || !format || !formats.has(format)) continue;
      // The image is untrusted: an SBOM file is held in memory, so its size is bounded.
      if (e.header.size > MAX_SBOM_FILE)
        throw new KilnError(
          `${o.name}: SBOM file ${JSON.stringify(rel)} is ${e.header.size} bytes, over the ${MAX_SBOM_FILE}-byte limit`,
        );
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      const body = Buffer.concat(chunks);
      const out = path.join(o.outputDir, rel);
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, body);
      files.push(rel);
      try {
        const dir = rel.slice(0, rel.lastIndexOf('/'));
        if (!byDir.has(dir)) byDir.set(dir, new Map());
        byDir.get(dir)!.set(format, JSON.parse(body.toString('utf8')));
      } catch {
        // Written as is; an unparsable document only misses from the merged ones.
      }
    }
  }
  // One document per buildpack layer (CycloneDX first, then SPDX, then Syft): buildpacks usually
  // write the same packages in each format.
  const components = new Map<string, SbomComponent>();
  const add = (c: SbomComponent | undefined) => {
    if (c && !components.has(c.purl)) components.set(c.purl, c);
  };
  let osPackages = 0;
  if (o.baseSbom) {
    for (const c of fromCycloneDx(o.baseSbom)) {
      if (!components.has(c.purl)) osPackages++;
      add(c);
    }
  }
  // The run image's SBOM the build put into the SBOM layer describes the run image of the build.
  // A rebase leaves that layer as it was, so the document is stale once the image sits on another
  // run image: the found run image SBOM (baseSbom) replaces it, and a stale one is left out of the
  // merged documents rather than listing OS package versions the image no longer contains.
  const at = md.runImage.reference.lastIndexOf('@');
  const currentRun = at >= 0 ? md.runImage.reference.slice(at + 1) : undefined;
  let staleRunImageSbom = false;
  for (const [dir, docs] of [...byDir].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (dir === `layers/${RUN_IMAGE_SBOM_DIR}`) {
      if (o.baseSbom) continue;
      const described = describedDigest(docs);
      if (described !== undefined && currentRun !== undefined && described !== currentRun) {
        staleRunImageSbom = true;
        continue;
      }
    }
    const before = components.size;
    if (docs.has('cyclonedx')) fromCycloneDx(docs.get('cyclonedx')).forEach(add);
    else if (docs.has('spdx')) fromSpdx(docs.get('spdx')).forEach(add);
    else if (docs.has('syft')) fromSyft(docs.get('syft')).forEach(add);
    if (dir === `layers/${RUN_IMAGE_SBOM_DIR}`) osPackages += components.size - before;
  }
  const meta = {
    subject: { name: o.name, digest: await o.image.digest() },
    epoch: o.epoch,
    tool: o.tool,
  };
  const all = [...components.values()];
  const merged: string[] = [];
  await mkdir(o.outputDir, { recursive: true });
  if (formats.has('cyclonedx')) {
    await writeFile(
      path.join(o.outputDir, 'sbom.cdx.json'),
      `${JSON.stringify(cyclonedxDocument(all, meta), null, 2)}\n`,
    );
    merged.push('sbom.cdx.json');
  }
  if (formats.has('spdx')) {
    await writeFile(
      path.join(o.outputDir, 'sbom.spdx.json'),
      `${JSON.stringify(spdxDocument(all, meta), null, 2)}\n`,
    );
    merged.push('sbom.spdx.json');
  }
  return { files: files.sort(), merged, components: all.length, osPackages, staleRunImageSbom };
}

// The image digest a run image SBOM document describes (CycloneDX metadata.component hashes,
// else the SPDX container package's checksum), when it says.
function describedDigest(docs: Map<SbomFormat, unknown>): string | undefined {
  const cdx = docs.get('cyclonedx') as Obj | undefined;
  const meta = (cdx?.metadata as Obj | undefined)?.component as Obj | undefined;
  for (const h of (Array.isArray(meta?.hashes) ? meta.hashes : []) as Obj[])
    if (h.alg === 'SHA-256' && str(h.content)) return `sha256:${h.content}`;
  const spdx = docs.get('spdx') as Obj | undefined;
  for (const p of (Array.isArray(spdx?.packages) ? spdx.packages : []) as Obj[]) {
    if (p.primaryPackagePurpose !== 'CONTAINER') continue;
    for (const c of (Array.isArray(p.checksums) ? p.checksums : []) as Obj[])
      if (c.algorithm === 'SHA256' && str(c.checksumValue)) return `sha256:${c.checksumValue}`;
  }
  return undefined;
}

// Only `layers/sbom/...` paths, relative and without `..`: the layer is untrusted input.
/** Largest SBOM file downloaded (read into memory to merge). */
const MAX_SBOM_FILE = 64 << 20;

function safeSbomPath(p: string): string | undefined {
  const rel = p.replace(/^\.?\/+/, '');
  const parts = rel.split('/');
  if (parts.some((x) => x === '..' || x === '' || x === '.' || x.includes('\0'))) return undefined;
  if (parts[0] !== 'layers' || parts[1] !== 'sbom' || parts.length < 4) return undefined;
  return rel;
}

type Obj = Record<string, unknown>;
const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

function component(
  name: unknown,
  version: unknown,
  purl: unknown,
  licenses: string[],
): SbomComponent | undefined {
  const n = str(name);
  if (!n) return undefined;
  const v = str(version) ?? '';
  return {
    name: n,
    version: v,
    purl: str(purl) ?? `pkg:generic/${encodeURIComponent(n)}${v ? `@${encodeURIComponent(v)}` : ''}`,
    licenses,
  };
}

function fromCycloneDx(doc: unknown): SbomComponent[] {
  const out: SbomComponent[] = [];
  const walk = (list: unknown) => {
    if (!Array.isArray(list)) return;
    for (const c of list as Obj[]) {
      const lic: string[] = [];
      for (const l of (Array.isArray(c.licenses) ? c.licenses : []) as Obj[]) {
        const x = (l.license ?? {}) as Obj;
        const s = str(x.id) ?? str(x.name) ?? str(l.expression);
        if (s) lic.push(s);
      }
      const comp = component(c.name, c.version, c.purl, lic);
      if (comp) out.push(comp);
      walk(c.components);
    }
  };
  walk((doc as Obj)?.components);
  return out;
}

function fromSpdx(doc: unknown): SbomComponent[] {
  const out: SbomComponent[] = [];
  for (const p of (Array.isArray((doc as Obj)?.packages) ? (doc as Obj).packages : []) as Obj[]) {
    const refs = (Array.isArray(p.externalRefs) ? p.externalRefs : []) as Obj[];
    const purl = refs.find((r) => r.referenceType === 'purl')?.referenceLocator;
    const lic = [str(p.licenseDeclared), str(p.licenseConcluded)].filter(
      (l): l is string => l !== undefined && l !== 'NOASSERTION' && l !== 'NONE',
    );
    const comp = component(p.name, p.versionInfo, purl, lic.slice(0, 1));
    if (comp) out.push(comp);
  }
  return out;
}

function fromSyft(doc: unknown): SbomComponent[] {
  const out: SbomComponent[] = [];
  for (const a of (Array.isArray((doc as Obj)?.artifacts) ? (doc as Obj).artifacts : []) as Obj[]) {
    const lic = (Array.isArray(a.licenses) ? a.licenses : [])
      .map((l) => (typeof l === 'string' ? l : str((l as Obj).value)))
      .filter((l): l is string => Boolean(l));
    const comp = component(a.name, a.version, a.purl, lic);
    if (comp) out.push(comp);
  }
  return out;
}
