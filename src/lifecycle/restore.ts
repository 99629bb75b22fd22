import { lstatSync, renameSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { escapeId } from '../cnb/ids.ts';
import { writeLayerToml } from '../cnb/layer-toml.ts';
import {
  type BuildpackLayerMetadata,
  buildpackMetadataFor,
  type LifecycleMetadata,
} from '../cnb/lifecycle-metadata.ts';
import { writeStoreToml } from '../cnb/store-toml.ts';
import { KilnError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import { lstatInRoot } from '../internal/safe-read.ts';
import { tempIn, tempSibling } from '../internal/temp-name.ts';
import { autoDecompress, extract } from '../layers/extract.ts';
import { CACHE_LAYER_LIMITS, ExtractBudget } from '../layers/extract-limits.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { DirListings } from '../layers/walk.ts';
import { mkdirReadable } from '../layout/blob-store.ts';
import type { Layer } from '../oci/image.ts';
import type { CacheSnapshot } from './cache.ts';
import { LAYERS_DIR } from './export.ts';
import type { LayerResolver } from './layer-resolver.ts';
import { dirFingerprint } from './layer-reuse.ts';
import { assertNoLinks } from './safe-fs.ts';

// The restore phase: before build, give each buildpack back what the spec says survives a build
// (the "restore matrix" of the buildpack spec):
//
//   build cache launch | metadata (<layer>.toml, no [types])   | contents
//     T     T     *    | from the cache                         | from the cache
//     T     F     *    | -                                      | -
//     F     T     *    | from the cache (launch: or the image)  | from the cache
//     F     F     T    | from the previous image's label        | - (launch=true + no dir = reuse)
//     F     F     F    | -                                      | -
//
// plus store.toml from the image label. Contents are extracted only when the cache holds exactly
// the diffID the metadata names; otherwise the layer is left out entirely. A read error skips the
// layer (the buildpack rebuilds it), it never fails the build.

/** A group element as restore needs it. */
export interface RestoreBuildpack {
  readonly id: string;
  readonly version: string;
}

/** Inputs of restore. */
export interface RestoreOptions {
  /** Host path of `<layers>`. */
  readonly layersDir: string;
  readonly group: readonly RestoreBuildpack[];
  /** The previous image's lifecycle label (empty on a first build). */
  readonly previousMetadata: LifecycleMetadata;
  /** The cache's committed state, or undefined without a cache. */
  readonly cache?: CacheSnapshot;
  readonly uid: number;
  readonly gid: number;
  /** Who owns restored layer dirs on the host (the build user's host ids); default uid:gid. */
  readonly owner?: { readonly uid: number; readonly gid: number };
  /**
   * The build's layer reuse: told the fingerprint and listings of every restored layer dir, so
   * export and cache recognise it untouched; its tar settings are the exporter's.
   */
  readonly resolver: LayerResolver;
  /** Layers of the previous image by diffID (its launch SBOM layer is read from here). */
  readonly previousLayers?: ReadonlyMap<string, Layer>;
  readonly log: Logger;
}

/** What restore did, for the log and tests. */
export interface RestoreResult {
  /** `<bp>:<layer>` whose contents came from the cache. */
  readonly restored: string[];
  /** `<bp>:<layer>` whose metadata only came back. */
  readonly metadataOnly: string[];
}

/**
 * chownTree gives `dir` and everything below (down to `depth` levels) to uid:gid (when kiln runs
 * as root), touching only entries with another owner: a chown changes the ctime that layer
 * fingerprints cover.
 */
export async function chownTree(
  dir: string,
  uid: number,
  gid: number,
  depth = Number.POSITIVE_INFINITY,
): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const st = await fs.lstat(dir);
  if (st.uid !== uid || st.gid !== gid) await fs.lchown(dir, uid, gid);
  if (!st.isDirectory() || depth === 0) return;
  for (const name of await fs.readdir(dir)) await chownTree(path.join(dir, name), uid, gid, depth - 1);
}

/** restore writes layer metadata, store.toml and cached layer contents into `<layers>`. */
export async function restore(o: RestoreOptions): Promise<RestoreResult> {
  const restored: string[] = [];
  const metadataOnly: string[] = [];
  const scratch = tempSibling(path.join(o.layersDir, 'kiln-restore'));
  try {
    // What comes back, per buildpack (the restore matrix above).
    const plans = o.group.map((bp) => restorePlanOf(o, bp));
    // The SBOM layers are read while the layer contents are restored (their reads and inflating
    // run on the thread pool while the walks checking warm dirs run here).
    const sboms = readSboms(
      o,
      plans.flatMap(({ bp, plan }) => plan.map(([name]) => `${escapeId(bp.id)}/${name}`)),
    );
    // Layer tomls are written (on the thread pool) while the next layers are checked (here), and
    // awaited at the end; a layer whose toml cannot be written is left out as before.
    const tomls: LayerToml[] = [];
    const writing = (p: Promise<void>) =>
      p.then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    for (const { bp, fromImage, plan } of plans) {
      const bpDir = path.join(o.layersDir, escapeId(bp.id));
      // Root writes below it (tomls, extracted layers, rm of stale ones): never through a link.
      await assertNoLinks(o.layersDir, bpDir);
      await fs.mkdir(bpDir, { recursive: true, mode: 0o755 });
      if (fromImage?.store)
        await writeStoreToml(path.join(bpDir, 'store.toml'), { metadata: fromImage.store.metadata ?? {} });
      for (const [name, { md, contents }] of plan) {
        const id = `${bp.id}:${name}`;
        const toml = () =>
          writeLayerToml(path.join(bpDir, `${name}.toml`), (md.data ?? {}) as Record<string, unknown>);
        if (!contents) {
          tomls.push({ id, error: writing(toml()) });
          metadataOnly.push(id);
          continue;
        }
        try {
          const how = await restoreContents(o, bp, name, md.sha, scratch);
          tomls.push({ id, dir: path.join(bpDir, name), error: writing(toml()) });
          restored.push(id);
          o.log.info(`Restoring data for '${id}' from cache${how === 'warm' ? ' (kept unpacked)' : ''}`);
        } catch (e) {
          await fs.rm(path.join(bpDir, name), { recursive: true, force: true });
          o.log.warn?.(`Skipping restore of '${id}': ${(e as Error).message}`);
        }
      }
    }
    await settleLayerTomls(o, tomls, restored);
    await writeSboms(o, await sboms, [...restored, ...metadataOnly], scratch);
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
  return { restored, metadataOnly };
}

type LayerToml = { id: string; dir?: string; error: Promise<Error | undefined> };

/**
 * restorePlanOf is what comes back for one buildpack (the restore matrix above): each layer name,
 * sorted, with its metadata and whether its contents come from the cache.
 */
function restorePlanOf(o: RestoreOptions, bp: RestoreOptions['group'][number]) {
  const fromImage = buildpackMetadataFor(o.previousMetadata, bp.id);
  const fromCache = o.cache ? buildpackMetadataFor(o.cache.metadata, bp.id) : undefined;
  const plan = new Map<string, { md: BuildpackLayerMetadata; contents: boolean }>();
  for (const [name, md] of Object.entries(fromImage?.layers ?? {})) {
    if (md.cache) {
      // Launch+cache: restorable only if the cache holds the very same layer.
      if (o.cache?.layer(md.sha)) plan.set(name, { md, contents: true });
    } else if (md.launch && !md.build) plan.set(name, { md, contents: false });
  }
  for (const [name, md] of Object.entries(fromCache?.layers ?? {})) {
    if (!md.cache || plan.get(name)?.contents) continue;
    if (o.cache?.layer(md.sha)) plan.set(name, { md, contents: true });
    else o.log.debug?.(`Cached layer '${bp.id}:${name}' is missing from the cache; not restoring it`);
  }
  return { bp, fromImage, plan: [...plan].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
}

/**
 * settleLayerTomls awaits the layer toml writes: a restored layer whose toml could not be written
 * is removed and left out of `restored` (with a warning); a metadata-only one fails the restore.
 */
async function settleLayerTomls(
  o: RestoreOptions,
  tomls: readonly LayerToml[],
  restored: string[],
): Promise<void> {
  for (const t of tomls) {
    const e = await t.error;
    if (!e) continue;
    if (!t.dir) throw e;
    restored.splice(restored.indexOf(t.id), 1);
    await fs.rm(t.dir, { recursive: true, force: true });
    o.log.warn?.(`Skipping restore of '${t.id}': ${e.message}`);
  }
}

/** `<bp>/<layer>` (escaped buildpack id) of a `<bp id>:<layer>`. */
function layerKey(id: string): string {
  const i = id.lastIndexOf(':');
  return `${escapeId(id.slice(0, i))}/${id.slice(i + 1)}`;
}

/**
 * readSboms reads the SBOM files of the layers `keys` (`<bp>/<layer>`) that may come back: from
 * the previous image's launch SBOM layer, then the cache's SBOM layer (whose files replace the
 * launch ones, as unpacking one after the other would), each
 * `sbom/{launch,cache}/<bp>/<layer>/sbom.<fmt>.json` as `<bp>/<layer>.sbom.<fmt>.json`. The layers
 * are read as streams, nothing unpacked. A missing or unreadable SBOM layer only costs its files.
 */
async function readSboms(o: RestoreOptions, keys: readonly string[]): Promise<Map<string, Buffer>> {
  const docs = new Map<string, Buffer>();
  if (keys.length === 0) return docs;
  const wanted = new Set(keys);
  const sources: { kind: 'launch' | 'cache'; open: () => Promise<Readable> }[] = [];
  const launchSha = o.previousMetadata.sbom?.sha;
  const launchLayer = launchSha ? o.previousLayers?.get(launchSha) : undefined;
  if (launchLayer) sources.push({ kind: 'launch', open: () => launchLayer.compressed() });
  const cacheSha = o.cache?.metadata.sbom?.sha;
  if (cacheSha && o.cache?.layer(cacheSha))
    sources.push({ kind: 'cache', open: () => o.cache!.open(cacheSha) });
  for (const src of sources) {
    const base = `${LAYERS_DIR.slice(1)}/sbom/${src.kind}/`;
    const read = new Map<string, Buffer>();
    try {
      for await (const { header, body } of readTar(await autoDecompress(await src.open()))) {
        const p = header.path.replace(/^(\.?\/)+/, '');
        if (!p.startsWith(base)) continue;
        // <bp>/<layer>/sbom.<fmt>.json, with <bp>/<layer> one of the layers restored (so no name
        // from the tar ever becomes a path of its own).
        const m = /^([^/]+\/[^/]+)\/(sbom\.(?:cdx|spdx|syft)\.json)$/.exec(p.slice(base.length));
        if (!m || !wanted.has(m[1]!)) continue;
        let doc: Buffer | undefined;
        if (header.type === 'link') doc = read.get(header.linkname.replace(/^(\.?\/)+/, ''));
        else if (header.type === 'file') {
          const chunks: Buffer[] = [];
          for await (const c of body) chunks.push(c);
          doc = Buffer.concat(chunks);
        }
        if (!doc) continue;
        read.set(p, doc);
        docs.set(`${m[1]}.${m[2]}`, doc);
      }
    } catch (e) {
      o.log.warn?.(`Skipping restore of ${src.kind} SBOM files: ${(e as Error).message}`);
    }
  }
  return docs;
}

/**
 * writeSboms gives the layers that came back (`layerIds`) their SBOM files, as the reference
 * restorer does: `<layers>/<bp>/<layer>.sbom.<fmt>.json`. Each through a temp file on the same file
 * system (never a half-written SBOM at the real name), with synchronous calls: a handful of small
 * files, for which four thread-pool round trips each cost more than the writing.
 */
async function writeSboms(
  o: RestoreOptions,
  docs: ReadonlyMap<string, Buffer>,
  layerIds: readonly string[],
  scratch: string,
): Promise<void> {
  if (docs.size === 0) return;
  const back = new Set(layerIds.map(layerKey));
  await fs.mkdir(scratch, { recursive: true });
  for (const [rel, doc] of docs) {
    if (!back.has(rel.slice(0, rel.lastIndexOf('.sbom.')))) continue;
    const tmp = tempIn(scratch);
    writeFileSync(tmp, doc, { mode: 0o644 });
    renameSync(tmp, path.join(o.layersDir, ...rel.split('/')));
  }
}

async function restoreContents(
  o: RestoreOptions,
  bp: RestoreBuildpack,
  name: string,
  diffID: string,
  scratch: string,
): Promise<'warm' | 'extracted'> {
  const cached = o.cache!.layer(diffID)!;
  const rel = `${LAYERS_DIR.slice(1)}/${escapeId(bp.id)}/${name}`;
  const dst = path.join(o.layersDir, escapeId(bp.id), name);
  let dirs: DirListings | undefined;
  const fingerprint = async (dir: string, known?: DirListings) => {
    // The exporter's and cache's walk options: a fingerprint taken here must match theirs.
    const walkOpts = { prefix: rel, uid: o.uid, gid: o.gid, runUserModes: true };
    const c = await dirFingerprint(
      dir,
      known ? { ...walkOpts, knownDirs: known } : walkOpts,
      o.resolver.settings,
    );
    dirs = c.dirs;
    return c.fingerprint;
  };
  if (lstatSync(dst, { throwIfNoEntry: false })) await fs.rm(dst, { recursive: true, force: true });
  // Fastest: the previous build's own unpacked copy, untouched since (a rename, no extraction).
  const warm = await o.cache!.claimWarm?.(diffID, dst, fingerprint);
  if (warm) {
    // The warm copy belongs to the host ids of the build that left it; this build may hold another
    // lease (a concurrent build took that slot): give it to this build's user, then fingerprint
    // it again (a chown changes ctimes).
    const owner = o.owner ?? { uid: o.uid, gid: o.gid };
    const top = lstatSync(dst);
    if (process.getuid?.() === 0 && (top.uid !== owner.uid || top.gid !== owner.gid)) {
      await chownTree(dst, owner.uid, owner.gid);
      o.resolver.remember(await fingerprint(dst), cached, dst, dirs);
    } else o.resolver.remember(warm, cached, dst, dirs);
    return 'warm';
  }
  // The cached tar holds `layers/<bp>/<name>/...` (the exporter's paths): unpack it aside and move
  // the layer directory into place, so nothing half-extracted is ever seen at the real path.
  const tmp = path.join(scratch, `${escapeId(bp.id)}-${name}`);
  await fs.rm(tmp, { recursive: true, force: true });
  await extract(await o.cache!.open(diffID), tmp, {
    limits: new ExtractBudget(`cached layer ${diffID}`, CACHE_LAYER_LIMITS),
  }).catch(async (e: unknown) => {
    // Skipped with a warning by the caller: a bomb must not stay in the layers dir meanwhile.
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  });
  const src = path.join(tmp, ...rel.split('/'));
  // The tar is the cache's: `layers/<bp>/<name>` must be directories of its own, not a link that
  // mkdir, rename and chown would follow to a host directory.
  const st = lstatInRoot(tmp, rel, { what: 'the cached layer', shown: 'cache' });
  if (st && !st.isDirectory())
    throw new KilnError(
      `cache/${rel} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: expected a directory inside the cached layer`,
    );
  if (!st) await mkdirReadable(src);
  await fs.rename(src, dst);
  // The build user owns its layers; owners are set before fingerprinting (chown changes ctimes).
  await chownTree(dst, o.owner?.uid ?? o.uid, o.owner?.gid ?? o.gid);
  // Remember what this directory is, so export and cache recognise it untouched without tarring.
  const fp = await fingerprint(dst);
  o.resolver.remember(fp, cached, dst, dirs);
  return 'extracted';
}
