import { gunzipSync } from 'node:zlib';
import { FLAVOUR_LABEL } from '../builder/run-flavour.ts';
import {
  BUILD_METADATA_LABEL,
  BUILD_USER_LABEL,
  LIFECYCLE_METADATA_LABEL,
  PROJECT_METADATA_LABEL,
  parseBuildMetadata,
  parseLifecycleMetadata,
  parseProjectMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { Image, Layer } from '../oci/image.ts';

// `kiln inspect IMAGE`: what a CNB app image says about itself in its io.buildpacks.* labels —
// base (run) image, run images and mirrors, buildpacks, processes, rebasable, labels — plus a
// summary of its SBOM layer (component counts by ecosystem). Works on any image that carries the
// reference lifecycle's labels (built by kiln or by pack/kpack).

/** A buildpack that took part in the build. */
export interface InspectBuildpack {
  readonly id: string;
  readonly version: string;
  readonly homepage?: string;
}

/** A process the image can run. */
export interface InspectProcess {
  readonly type: string;
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly default: boolean;
  readonly workingDir?: string;
  readonly buildpackId?: string;
}

/**
 * Who wrote the image and who runs it. The CNB platform spec recommends a run user other than the
 * build user, so that the app cannot rewrite what buildpacks wrote.
 */
export interface InspectUsers {
  /**
   * The build user (`uid:gid`) that owns the app's layers: kiln's io.kiln.build.user label, else
   * the owner of the lifecycle's config layer (images built by pack or kpack); absent if neither.
   */
  readonly build?: string;
  /** The image's `User`: what the app runs as ('' means root). */
  readonly run: string;
  /** The run user's uid is the build user's: the app can rewrite its own layers. */
  readonly sameUid?: boolean;
}

/** One SBOM file of the SBOM layer. */
export interface InspectSbomFile {
  readonly path: string;
  readonly format: 'cyclonedx' | 'spdx' | 'syft' | 'other';
  readonly components: number;
  /** Package names (`ecosystem:name@version`), only with `bom: true`. */
  readonly packages?: readonly string[];
  /** Each package's name, version and purl, only with `bom: true` (`kiln inspect --bom`). */
  readonly items?: readonly SbomItem[];
}

/** One package of an SBOM file. */
export interface SbomItem {
  readonly name: string;
  readonly version?: string;
  readonly purl?: string;
}

/** The SBOM summary: counts by ecosystem (purl type), one format per buildpack layer. */
export interface InspectSbom {
  readonly layer: string;
  readonly files: readonly InspectSbomFile[];
  readonly ecosystems: Readonly<Record<string, number>>;
}

/** ImageReport is everything `kiln inspect` prints. Field order is the output order. */
export interface ImageReport {
  readonly image: {
    readonly reference: string;
    readonly digest: string;
    readonly platform: string;
    readonly created?: string;
  };
  readonly base: {
    readonly reference: string;
    readonly topLayer: string;
    readonly id?: string;
    readonly distro?: string;
    /** The run-image flavour (label io.kiln.stack.flavour, inherited from kiln's run images). */
    readonly flavour?: string;
  };
  readonly runImages: ReadonlyArray<{ readonly image: string; readonly mirror: boolean }>;
  readonly rebasable: boolean | undefined;
  readonly users: InspectUsers;
  readonly buildpacks: readonly InspectBuildpack[];
  readonly processes: readonly InspectProcess[];
  readonly project?: Readonly<Record<string, unknown>>;
  readonly sbom?: InspectSbom;
  /** Artifacts attached to the image as OCI referrers (SBOMs, provenance, signatures), when read. */
  readonly referrers?: readonly InspectReferrer[];
  readonly labels: Readonly<Record<string, string>>;
}

/** One OCI referrer of the image. */
export interface InspectReferrer {
  readonly digest: string;
  readonly artifactType: string;
  /** The attested predicate type of a sigstore bundle or in-toto statement, when annotated. */
  readonly predicateType?: string;
}

/** Labels shown in their own sections (and too large to list). */
const STRUCTURED = [LIFECYCLE_METADATA_LABEL, BUILD_METADATA_LABEL, PROJECT_METADATA_LABEL];

/** Options of inspectImage. */
export interface InspectOptions {
  /** How to name the image in the report (the argument as the user gave it). */
  readonly reference: string;
  /** Read the SBOM layer for the summary (default true; it is small but must be downloaded). */
  readonly sbom?: boolean;
  /** Keep the package list of each SBOM file (`--bom`). */
  readonly bom?: boolean;
}

/**
 * inspectImage reads an app image's labels (and SBOM layer) into a report. An image without the
 * lifecycle label is not a buildpacks app image: a KilnError says so.
 */
export async function inspectImage(image: Image, opts: InspectOptions): Promise<ImageReport> {
  const cfg = await image.configFile();
  const labels = cfg.config?.Labels ?? {};
  const rawLifecycle = labels[LIFECYCLE_METADATA_LABEL];
  if (rawLifecycle === undefined)
    throw new KilnError(
      `${opts.reference} is not a buildpacks app image (no ${LIFECYCLE_METADATA_LABEL} label); for builders use kiln builder inspect`,
    );
  const md = parseLifecycleMetadata(rawLifecycle);
  const build = labels[BUILD_METADATA_LABEL] ? parseBuildMetadata(labels[BUILD_METADATA_LABEL]) : undefined;
  const project = labels[PROJECT_METADATA_LABEL]
    ? parseProjectMetadata(labels[PROJECT_METADATA_LABEL])
    : undefined;

  const runImages: Array<{ image: string; mirror: boolean }> = [];
  const seen = new Set<string>();
  const addRun = (image: string | undefined, mirror: boolean) => {
    if (image && !seen.has(image)) {
      seen.add(image);
      runImages.push({ image, mirror });
    }
  };
  addRun(md.runImage.image, false);
  for (const m of md.runImage.mirrors ?? []) addRun(m, true);
  addRun(md.stack?.runImage?.image, false);
  for (const m of md.stack?.runImage?.mirrors ?? []) addRun(m, true);

  const entrypoint = cfg.config?.Entrypoint ?? [];
  const fromEntrypoint =
    entrypoint.length === 1 ? /^\/cnb\/process\/(.+)$/.exec(entrypoint[0]!)?.[1] : undefined;
  const defaultType = fromEntrypoint ?? build?.['buildpack-default-process-type'];
  const processes: InspectProcess[] = (build?.processes ?? []).map((p) => ({
    type: p.type,
    command: p.command,
    args: p.args ?? [],
    default: p.type === defaultType,
    ...(p['working-dir'] !== undefined && { workingDir: p['working-dir'] }),
    ...(p.buildpackID !== undefined && { buildpackId: p.buildpackID }),
  }));

  const distroName = labels['io.buildpacks.base.distro.name'];
  const distroVersion = labels['io.buildpacks.base.distro.version'];
  const baseId = labels['io.buildpacks.base.id'] ?? labels['io.buildpacks.stack.id'];
  const rebasableLabel = labels['io.buildpacks.rebasable'];
  const shown: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) if (!STRUCTURED.includes(k)) shown[k] = labels[k]!;

  let sbom: InspectSbom | undefined;
  if (opts.sbom !== false && md.sbom?.sha) sbom = await summarizeSbom(image, md.sbom.sha, opts.bom ?? false);
  const buildUser = validUser(labels[BUILD_USER_LABEL]) ?? (await configLayerOwner(image, md.config.sha));
  const runUser = cfg.config?.User ?? '';
  const flavourLabel = /^[a-z][a-z0-9-]{0,31}$/.test(labels[FLAVOUR_LABEL] ?? '')
    ? labels[FLAVOUR_LABEL]
    : undefined;
  const uidOf = (u: string) => /^(\d+)(?::\d+)?$/.exec(u)?.[1];

  return {
    image: {
      reference: opts.reference,
      digest: await image.digest(),
      platform: [cfg.os, cfg.architecture, cfg.variant].filter(Boolean).join('/'),
      ...(cfg.created !== undefined && { created: cfg.created }),
    },
    base: {
      reference: md.runImage.reference,
      topLayer: md.runImage.topLayer,
      ...(baseId !== undefined && { id: baseId }),
      ...(distroName !== undefined && { distro: [distroName, distroVersion].filter(Boolean).join(' ') }),
      ...(flavourLabel !== undefined && { flavour: flavourLabel }),
    },
    runImages,
    rebasable: rebasableLabel === undefined ? undefined : rebasableLabel === 'true',
    users: {
      ...(buildUser !== undefined && { build: buildUser }),
      run: runUser,
      ...(buildUser !== undefined &&
        uidOf(runUser) !== undefined && { sameUid: uidOf(runUser) === uidOf(buildUser) }),
    },
    buildpacks: (build?.buildpacks ?? []).map((b) => ({
      id: b.id,
      version: b.version,
      ...(b.homepage ? { homepage: b.homepage } : {}),
    })),
    processes,
    ...(project?.source !== undefined && { project: project.source as Record<string, unknown> }),
    ...(sbom !== undefined && { sbom }),
    labels: shown,
  };
}

async function layerByDiffID(image: Image, diffID: string): Promise<Layer | undefined> {
  const cfg = await image.configFile();
  const i = cfg.rootfs.diff_ids.indexOf(diffID as (typeof cfg.rootfs.diff_ids)[number]);
  if (i < 0) return undefined;
  return (await image.layers())[i];
}

/** Largest config layer read for its owner (the lifecycle's is under a few KiB). */
const MAX_CONFIG_LAYER = 1 << 20;

/** validUser keeps a `uid:gid` value (labels are the image author's: nothing else is shown). */
function validUser(v: string | undefined): string | undefined {
  return v !== undefined && /^\d{1,10}:\d{1,10}$/.test(v) ? v : undefined;
}

/**
 * configLayerOwner is the owner of `layers/config/metadata.toml` in the lifecycle's config layer
 * (a few hundred bytes): the lifecycle writes it as CNB_USER_ID:CNB_GROUP_ID, so it names the build
 * user of images that carry no io.kiln.build.user label. Undefined when the layer is absent or
 * unreadable (the report is informational).
 */
async function configLayerOwner(image: Image, diffID: string): Promise<string | undefined> {
  if (!diffID) return undefined;
  try {
    const layer = await layerByDiffID(image, diffID);
    // The label names the layer: a big one is not the lifecycle's config layer, and is not read.
    if (!layer || (await layer.size()) > MAX_CONFIG_LAYER) return undefined;
    for await (const e of readTar(await layer.uncompressed())) {
      const p = e.header.path.replace(/^\.?\/+/, '');
      if (p === 'layers/config/metadata.toml' && e.header.type === 'file')
        return `${e.header.uid}:${e.header.gid}`;
    }
  } catch {
    // A missing blob or a bad tar: the build user is just not known.
  }
  return undefined;
}

/** Largest SBOM file read into memory; bigger ones are counted as present but not parsed. */
const MAX_SBOM_FILE = 64 << 20;

async function summarizeSbom(image: Image, diffID: string, bom: boolean): Promise<InspectSbom | undefined> {
  const layer = await layerByDiffID(image, diffID);
  if (!layer) return undefined;
  const files: Array<InspectSbomFile & { dir: string; purls: string[]; all?: SbomItem[] }> = [];
  for await (const e of readTar(await layer.uncompressed())) {
    const p = e.header.path.replace(/^\.?\/+/, '');
    const m = /^(.*)\/([^/]*\.(cdx|spdx|syft)\.json)$/.exec(p);
    // An unread body is skipped by readTar.
    if (e.header.type !== 'file' || !m || e.header.size > MAX_SBOM_FILE) continue;
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    let doc: unknown;
    try {
      let buf = Buffer.concat(chunks);
      // Bounded: a small gzip bomb must not expand into gigabytes (over the bound it throws,
      // and the file counts as 'other').
      if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf, { maxOutputLength: MAX_SBOM_FILE });
      doc = JSON.parse(buf.toString('utf8'));
    } catch {
      files.push({ path: p, dir: m[1]!, format: 'other', components: 0, purls: [] });
      continue;
    }
    const format = m[3] === 'cdx' ? 'cyclonedx' : m[3] === 'spdx' ? 'spdx' : 'syft';
    const purls = purlsOf(doc, format);
    files.push({
      path: p,
      dir: m[1]!,
      format,
      components: purls.length,
      purls,
      ...(bom ? { all: itemsOf(doc, format) } : {}),
    });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // Buildpacks usually write the same packages in all three formats: count one per directory,
  // preferring CycloneDX, then SPDX, then Syft.
  const rank = { cyclonedx: 0, spdx: 1, syft: 2, other: 3 } as const;
  const chosen = new Map<string, (typeof files)[number]>();
  for (const f of files) {
    const cur = chosen.get(f.dir);
    if (!cur || rank[f.format] < rank[cur.format]) chosen.set(f.dir, f);
  }
  const ecosystems: Record<string, number> = {};
  for (const f of chosen.values())
    for (const purl of f.purls) {
      const eco = /^pkg:([^/]+)\//.exec(purl)?.[1] ?? 'unknown';
      ecosystems[eco] = (ecosystems[eco] ?? 0) + 1;
    }
  const sorted: Record<string, number> = {};
  for (const k of Object.keys(ecosystems).sort()) sorted[k] = ecosystems[k]!;
  return {
    layer: diffID,
    files: files.map((f) => ({
      path: f.path,
      format: f.format,
      components: f.components,
      ...(bom && { packages: f.purls, items: f.all ?? [] }),
    })),
    ecosystems: sorted,
  };
}

// The purl of each package of an SBOM document ('' for a package without one, counted as unknown).
function purlsOf(doc: unknown, format: 'cyclonedx' | 'spdx' | 'syft'): string[] {
  const d = doc as Record<string, unknown>;
  const out: string[] = [];
  if (format === 'cyclonedx') {
    const walk = (list: unknown) => {
      if (!Array.isArray(list)) return;
      for (const c of list as Array<Record<string, unknown>>) {
        out.push(typeof c.purl === 'string' ? c.purl : '');
        walk(c.components);
      }
    };
    walk(d.components);
  } else if (format === 'spdx') {
    for (const p of (Array.isArray(d.packages) ? d.packages : []) as Array<Record<string, unknown>>) {
      const refs = (Array.isArray(p.externalRefs) ? p.externalRefs : []) as Array<Record<string, unknown>>;
      const purl = refs.find((r) => r.referenceType === 'purl')?.referenceLocator;
      out.push(typeof purl === 'string' ? purl : '');
    }
  } else {
    for (const a of (Array.isArray(d.artifacts) ? d.artifacts : []) as Array<Record<string, unknown>>)
      out.push(typeof a.purl === 'string' ? a.purl : '');
  }
  return out;
}

/** itemsOf lists each package's name, version and purl (as purlsOf walks them). */
function itemsOf(doc: unknown, format: 'cyclonedx' | 'spdx' | 'syft'): SbomItem[] {
  const d = doc as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const item = (name: unknown, version: unknown, purl: unknown): SbomItem => {
    const v = str(version);
    const p = str(purl);
    return { name: str(name) ?? '', ...(v ? { version: v } : {}), ...(p ? { purl: p } : {}) };
  };
  const out: SbomItem[] = [];
  if (format === 'cyclonedx') {
    const walk = (list: unknown) => {
      if (!Array.isArray(list)) return;
      for (const c of list as Array<Record<string, unknown>>) {
        out.push(item(c.name, c.version, c.purl));
        walk(c.components);
      }
    };
    walk(d.components);
  } else if (format === 'spdx') {
    for (const p of (Array.isArray(d.packages) ? d.packages : []) as Array<Record<string, unknown>>) {
      const refs = (Array.isArray(p.externalRefs) ? p.externalRefs : []) as Array<Record<string, unknown>>;
      out.push(item(p.name, p.versionInfo, refs.find((r) => r.referenceType === 'purl')?.referenceLocator));
    }
  } else {
    for (const a of (Array.isArray(d.artifacts) ? d.artifacts : []) as Array<Record<string, unknown>>)
      out.push(item(a.name, a.version, a.purl));
  }
  return out;
}
