import fs from 'node:fs/promises';
import path from 'node:path';
import { escapeId } from '../cnb/ids.ts';
import {
  type BuildpackLayersMetadata,
  type CacheMetadata,
  layerMetadataFor,
} from '../cnb/lifecycle-metadata.ts';
import { isDir } from '../internal/fs.ts';
import type { Logger } from '../internal/log.ts';
import { hasZstd } from '../oci/compression.ts';
import type { Digest } from '../oci/digest.ts';
import type {
  CachedLayer,
  CacheEntry,
  CacheSnapshot,
  CommitResult,
  LayerCache,
  ProducedBlob,
  WarmDir,
} from './cache.ts';
import { LAYERS_DIR, readLayerDirs } from './export.ts';
import {
  compress,
  dirContent,
  identify,
  type LayerContent,
  layerDirContent,
  type ReuseContext,
} from './layer-reuse.ts';

// The cache phase (after export): every `cache = true` layer with contents goes into the cache,
// keyed by diffID. A layer the cache already holds (same diffID, found by fingerprint or by hashing
// its tar) is kept as is; a launch+cache layer exported a moment ago links the very blob the image
// got; only a changed cache-only layer is compressed. The commit replaces the cache's state
// atomically and prunes what the new state no longer names.

/** Inputs of saveCache. */
export interface SaveCacheOptions {
  readonly layersDir: string;
  readonly group: readonly { readonly id: string; readonly version: string }[];
  readonly cache: LayerCache;
  /** The state restore read (its blobs stay readable while we decide). */
  readonly snapshot: CacheSnapshot;
  readonly reuse: ReuseContext;
  /** Layers the exporter just produced, by diffID. */
  readonly exported: ReadonlyMap<string, CachedLayer>;
  /** Layer dir listings the exporter made (host path -> content), reused instead of walking again. */
  readonly contents?: ReadonlyMap<string, LayerContent>;
  /** Hand the unpacked cache layer dirs to the cache for the next build (they are moved away). */
  readonly keepWarm?: boolean;
  readonly uid: number;
  readonly gid: number;
  readonly log: Logger;
}

/** saveCache stores the build's cache layers and commits the cache. */
export async function saveCache(o: SaveCacheOptions): Promise<CommitResult> {
  // Cache-only layers never reach an image: compress them for speed (zstd level 1, about five
  // times faster than gzip -6) rather than for the widest compatibility.
  const cacheOnly: ReuseContext = hasZstd
    ? { ...o.reuse, settings: { ...o.reuse.settings, compression: 'zstd', level: 1 } }
    : o.reuse;
  // Writes a layer's blob afresh (a changed layer, or one a concurrent build pruned from the cache).
  const produce = async (content: LayerContent): Promise<ProducedBlob> => {
    const r = await compress(cacheOnly, content);
    staged.push(r.record!.digest);
    return { ...r.record!, file: o.reuse.blobs.path(r.record!.digest) };
  };
  const fresh = async (content: LayerContent): Promise<CacheEntry> => {
    const { file, ...blob } = await produce(content);
    return { ...blob, source: file };
  };
  // The diffID of `content`, hashed only when the cache holds the layer it had last time.
  const diffIdOf = async (content: LayerContent, previous: string | undefined) =>
    (await identify(o.reuse, content, previous !== undefined && o.snapshot.layer(previous) !== undefined))
      .diffID;
  // The cache's own blob of `diffID`, kept as is; should a concurrent build prune it before our
  // commit, it is written afresh.
  const kept = (diffID: Digest | undefined, content: LayerContent): CacheEntry | undefined => {
    const inCache = diffID ? o.snapshot.layer(diffID) : undefined;
    return inCache && { ...inCache, source: () => produce(content) };
  };
  const entries: CacheEntry[] = [];
  const warm: WarmDir[] = [];
  const staged: Digest[] = [];
  const buildpacks: BuildpackLayersMetadata[] = [];
  for (const bp of o.group) {
    const bpMd: BuildpackLayersMetadata = { key: bp.id, version: bp.version, layers: {} };
    for (const l of await readLayerDirs(o.layersDir, escapeId(bp.id))) {
      if (!l.types.cache) continue;
      const id = `${bp.id}:${l.name}`;
      if (!l.hasContents) {
        o.log.warn?.(`Failed to cache layer '${id}' because it has no contents`);
        continue;
      }
      const rel = `${LAYERS_DIR.slice(1)}/${escapeId(bp.id)}/${l.name}`;
      // The exporter walked launch layers moments ago and nothing ran since: reuse its listing.
      // Otherwise a layer restore brought back is checked by fingerprint, reading only the
      // directories that changed since restore walked it (and listed only if it changed).
      const content =
        o.contents?.get(l.path) ??
        (await layerDirContent(o.reuse, l.path, { prefix: rel, uid: o.uid, gid: o.gid, runUserModes: true }));
      const diffID = await diffIdOf(content, layerMetadataFor(o.snapshot.metadata, bp.id, l.name)?.sha);
      const inCache = kept(diffID, content);
      const justExported = diffID ? o.exported.get(diffID) : undefined;
      let entry: CacheEntry;
      if (inCache) {
        entry = inCache;
        o.log.info(`Reusing cache layer '${id}'`);
      } else if (justExported && (await o.reuse.blobs.has(justExported.digest))) {
        entry = { ...justExported, source: o.reuse.blobs.path(justExported.digest) };
        o.log.info(`Adding cache layer '${id}'`);
      } else {
        entry = await fresh(content);
        o.log.info(`Adding cache layer '${id}'`);
      }
      entries.push(entry);
      if (content.fingerprint)
        warm.push({
          diffID: entry.diffID,
          dir: l.path,
          fingerprint: content.fingerprint,
          ...(content.dirs ? { dirs: content.dirs } : {}),
        });
      bpMd.layers![l.name] = {
        sha: entry.diffID,
        data: l.metadata,
        build: l.types.build,
        launch: l.types.launch,
        cache: true,
      };
    }
    buildpacks.push(bpMd);
  }
  const metadata: CacheMetadata = { buildpacks };
  // The SBOM files of cache layers travel as one more cache layer (`sbom` in the metadata).
  const sbomDir = path.join(o.layersDir, 'sbom', 'cache');
  if (await isDir(sbomDir)) {
    const content = await dirContent(
      sbomDir,
      { prefix: `${LAYERS_DIR.slice(1)}/sbom/cache`, uid: o.uid, gid: o.gid, runUserModes: true },
      o.reuse.settings,
    );
    const diffID = await diffIdOf(content, o.snapshot.metadata.sbom?.sha);
    const entry = kept(diffID, content) ?? (await fresh(content));
    entries.push(entry);
    metadata.sbom = { sha: entry.diffID };
  }
  // Fingerprints are not persisted: they name files on disk (ctime, inode), which the next build
  // will not have.
  // The unpacked layer dirs go with it (moved): the build is over, its work dir is deleted next.
  const result = await o.cache.commit({ metadata, layers: entries, ...(o.keepWarm ? { warm } : {}) });
  // Cache-only blobs were staged in the image store's blob dir (same file system, so the cache got
  // hard links); the store does not need them.
  const keep = new Set([...o.exported.values()].map((l) => l.digest));
  for (const d of staged) if (!keep.has(d)) await fs.rm(o.reuse.blobs.path(d), { force: true });
  return result;
}
