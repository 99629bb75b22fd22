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
import { LAYERS_DIR, type LayerDir, readLayerDirs } from './export.ts';
import type { LayerResolver } from './layer-resolver.ts';
import { dirContent, type HashedTar, type LayerContent } from './layer-reuse.ts';

// The cache phase (after export): every `cache = true` layer with contents goes into the cache,
// keyed by diffID. A layer the cache already holds (same diffID, found by fingerprint or by hashing
// its tar) is kept as is; a launch+cache layer exported a moment ago links the very blob the image
// got; only a changed cache-only layer is compressed. The commit replaces the cache's state
// atomically and prunes what the new state no longer names.

/** What the cache phase starts from (all known once the build phase is over). */
export interface CacheSaveBase {
  readonly layersDir: string;
  readonly group: readonly { readonly id: string; readonly version: string }[];
  readonly cache: LayerCache;
  /** The state restore read (its blobs stay readable while we decide). */
  readonly snapshot: CacheSnapshot;
  readonly resolver: LayerResolver;
  /** Hand the unpacked cache layer dirs to the cache for the next build (they are moved away). */
  readonly keepWarm?: boolean;
  readonly uid: number;
  readonly gid: number;
  readonly log: Logger;
}

/** Inputs of saveCache. */
export interface SaveCacheOptions extends CacheSaveBase {
  /** Layers the exporter just produced, by diffID. */
  readonly exported: ReadonlyMap<string, CachedLayer>;
  /** Layer dir listings the exporter made (host path -> content), reused instead of walking again. */
  readonly contents?: ReadonlyMap<string, LayerContent>;
}

/** One cache layer's entry, its content, and whether the cache already held it. */
type LayerResult = { entry: CacheEntry; content: LayerContent; reused: boolean };

/**
 * EarlyCacheWork is the cache phase's work on cache-only layers (`cache = true`, `launch = false`),
 * started while the exporter runs: nothing the exporter does reads or changes them, and their
 * fingerprint check and (when changed) compression then overlap the export's compression instead
 * of following it. Nothing is committed early: the cache phase commits after the image is written,
 * as before, and an export that fails abandons what was staged.
 */
export class EarlyCacheWork {
  /** What the work was started with (the cache phase goes on with the same). */
  readonly base: CacheSaveBase;
  readonly #saver: CacheSaver;
  readonly #layers = new Map<string, Promise<LayerResult>>();
  readonly #started: Promise<void>;

  /**
   * Starts on every cache-only layer with contents of `o.group` once `after` resolves (the
   * exporter's compression running: its own walks and hashing then go first).
   */
  constructor(o: CacheSaveBase, after: Promise<unknown> = Promise.resolve()) {
    this.base = o;
    this.#saver = new CacheSaver(o);
    this.#started = this.#start(o, after);
    this.#started.catch(() => {});
  }

  async #start(o: CacheSaveBase, after: Promise<unknown>): Promise<void> {
    await after;
    for (const bp of o.group)
      for (const l of await readLayerDirs(o.layersDir, escapeId(bp.id))) {
        if (!l.types.cache || l.types.launch || !l.hasContents) continue;
        const work = this.#saver.layer(bp.id, l, new Map(), undefined, true);
        work.catch(() => {}); // taken (and thrown) by the cache phase
        this.#layers.set(l.path, work);
      }
  }

  /** The saver whose staged blobs the cache phase drops after its commit. */
  get saver(): CacheSaver {
    return this.#saver;
  }

  /** The early result for the layer dir at `dir`, if work on it was started. */
  async take(dir: string): Promise<LayerResult | undefined> {
    await this.#started;
    const w = this.#layers.get(dir);
    this.#layers.delete(dir);
    return w;
  }

  /** abandon waits for the work started and drops the blobs it staged (the export failed). */
  async abandon(): Promise<void> {
    await this.#started.catch(() => {});
    await Promise.allSettled(this.#layers.values());
    await this.#saver.dropStaged(new Map());
  }
}

/**
 * saveCache stores the build's cache layers and commits the cache. `early` holds the work on
 * cache-only layers started during the export (the same results, only sooner).
 */
export async function saveCache(o: SaveCacheOptions, early?: EarlyCacheWork): Promise<CommitResult> {
  const saver = early?.saver ?? new CacheSaver(o);
  const entries: CacheEntry[] = [];
  const warm: WarmDir[] = [];
  const buildpacks: BuildpackLayersMetadata[] = [];
  for (const bp of o.group) {
    const bpMd: BuildpackLayersMetadata = { key: bp.id, version: bp.version, layers: {} };
    for (const l of await readLayerDirs(o.layersDir, escapeId(bp.id))) {
      if (!l.types.cache) continue;
      if (!l.hasContents) {
        o.log.warn?.(`Failed to cache layer '${bp.id}:${l.name}' because it has no contents`);
        continue;
      }
      const earlier = await early?.take(l.path);
      const { entry, content } = earlier ?? (await saver.layer(bp.id, l, o.exported, o.contents));
      if (earlier) o.log.info(`${earlier.reused ? 'Reusing' : 'Adding'} cache layer '${bp.id}:${l.name}'`);
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
  const sbom = await saver.sbom();
  if (sbom) {
    entries.push(sbom);
    metadata.sbom = { sha: sbom.diffID };
  }
  // Fingerprints are not persisted: they name files on disk (ctime, inode), which the next build
  // will not have.
  // The unpacked layer dirs go with it (moved): the build is over, its work dir is deleted next.
  const result = await o.cache.commit({ metadata, layers: entries, ...(o.keepWarm ? { warm } : {}) });
  await saver.dropStaged(o.exported);
  return result;
}

/** How each cache layer's blob is found or made. */
class CacheSaver {
  readonly #o: CacheSaveBase;
  readonly #cacheOnly: LayerResolver;
  /** Blobs compressed for the cache only, staged in the store's blob dir. */
  readonly #staged: Digest[] = [];

  constructor(o: CacheSaveBase) {
    this.#o = o;
    // Cache-only layers never reach an image: compress them for speed (zstd level 1, about five
    // times faster than gzip -6) rather than for the widest compatibility.
    this.#cacheOnly = hasZstd
      ? o.resolver.withSettings({ ...o.resolver.settings, compression: 'zstd', level: 1 })
      : o.resolver;
  }

  /** Writes a layer's blob afresh (a changed layer, or one a concurrent build pruned from the cache). */
  async #produce(content: LayerContent, tar?: HashedTar): Promise<ProducedBlob> {
    const r = await this.#cacheOnly.compress(content, tar);
    this.#staged.push(r.record!.digest);
    return { ...r.record!, file: this.#o.resolver.blobs.path(r.record!.digest) };
  }

  async #fresh(content: LayerContent, tar?: HashedTar): Promise<CacheEntry> {
    const { file, ...blob } = await this.#produce(content, tar);
    return { ...blob, source: file };
  }

  /**
   * The diffID of `content`, hashed only when the cache holds the layer it had last time (with the
   * tar's bytes when small: a changed layer is then compressed from them).
   */
  async #diffIdOf(
    content: LayerContent,
    previous: string | undefined,
  ): Promise<{ diffID?: Digest; tar?: HashedTar }> {
    const hash = previous !== undefined && this.#o.snapshot.layer(previous) !== undefined;
    return this.#o.resolver.identify(content, hash);
  }

  /**
   * The cache's own blob of `diffID`, kept as is; should a concurrent build prune it before our
   * commit, it is written afresh.
   */
  #kept(diffID: Digest | undefined, content: LayerContent): CacheEntry | undefined {
    const inCache = diffID ? this.#o.snapshot.layer(diffID) : undefined;
    return inCache && { ...inCache, source: () => this.#produce(content) };
  }

  /**
   * layer finds or makes the blob of one cache layer with contents (`exported`, `contents`: what
   * the exporter produced and walked; `quiet`: the caller logs the outcome).
   */
  async layer(
    bpId: string,
    l: LayerDir,
    exported: ReadonlyMap<string, CachedLayer>,
    contents: ReadonlyMap<string, LayerContent> | undefined,
    quiet = false,
  ): Promise<LayerResult> {
    const o = this.#o;
    const id = `${bpId}:${l.name}`;
    const rel = `${LAYERS_DIR.slice(1)}/${escapeId(bpId)}/${l.name}`;
    // The exporter walked launch layers moments ago and nothing ran since: reuse its listing.
    // Otherwise a layer restore brought back is checked by fingerprint, reading only the
    // directories that changed since restore walked it (and listed only if it changed).
    const content =
      contents?.get(l.path) ??
      (await o.resolver.dirContent(l.path, { prefix: rel, uid: o.uid, gid: o.gid, runUserModes: true }));
    const { diffID, tar } = await this.#diffIdOf(
      content,
      layerMetadataFor(o.snapshot.metadata, bpId, l.name)?.sha,
    );
    const inCache = this.#kept(diffID, content);
    if (inCache) {
      if (!quiet) o.log.info(`Reusing cache layer '${id}'`);
      return { entry: inCache, content, reused: true };
    }
    const justExported = diffID ? exported.get(diffID) : undefined;
    const entry =
      justExported && (await o.resolver.blobs.has(justExported.digest))
        ? { ...justExported, source: o.resolver.blobs.path(justExported.digest) }
        : await this.#fresh(content, tar);
    if (!quiet) o.log.info(`Adding cache layer '${id}'`);
    return { entry, content, reused: false };
  }

  /** The SBOM files of cache layers travel as one more cache layer (`sbom` in the metadata). */
  async sbom(): Promise<CacheEntry | undefined> {
    const o = this.#o;
    const sbomDir = path.join(o.layersDir, 'sbom', 'cache');
    if (!(await isDir(sbomDir))) return undefined;
    const content = await dirContent(
      sbomDir,
      { prefix: `${LAYERS_DIR.slice(1)}/sbom/cache`, uid: o.uid, gid: o.gid, runUserModes: true },
      o.resolver.settings,
    );
    const { diffID, tar } = await this.#diffIdOf(content, o.snapshot.metadata.sbom?.sha);
    return this.#kept(diffID, content) ?? (await this.#fresh(content, tar));
  }

  /**
   * Cache-only blobs were staged in the image store's blob dir (same file system, so the cache got
   * hard links); the store does not need them.
   */
  async dropStaged(exported: ReadonlyMap<string, CachedLayer>): Promise<void> {
    const keep = new Set([...exported.values()].map((l) => l.digest));
    for (const d of this.#staged)
      if (!keep.has(d)) await fs.rm(this.#o.resolver.blobs.path(d), { force: true });
  }
}
