import { writeLayer, writeTarLayer } from '../layers/layer-writer.ts';
import type { DirListings, WalkOptions } from '../layers/walk.ts';
import { StoredLayer } from '../layout/blob-layer.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Layer } from '../oci/image.ts';
import type { CachedLayer } from './cache.ts';
import {
  dirCheck,
  dirContent,
  type HashedTar,
  hashTar,
  type LayerContent,
  type TarSettings,
  touchBlob,
} from './layer-reuse.ts';

// The one owner of a build's layer-reuse state (see layer-reuse.ts for the three steps:
// fingerprint, hash, compress). Restore teaches it what it brought back, export and the cache
// phase ask it for layers; nothing else holds the maps, so what one phase learnt is what the next
// one finds, and no phase can replace another's state by accident.

/** Counters of what layer resolution did (the no-op rebuild test and the bench read them). */
export interface ReuseStats {
  /** Layers tarred and compressed into the blob store. */
  compressed: number;
  /** Layers tarred only to compute a diffID (no compression). */
  hashed: number;
  /** Layers whose diffID came from a fingerprint (nothing read). */
  fingerprinted: number;
}

/**
 * Tars up to this size are kept in memory by a hash pass (see identify): a changed layer of that
 * size (a compiled binary, a build cache's latest entries) is then read and tarred once.
 */
const KEEP_TAR_BYTES = 32 << 20;

/** A compression at least this large keeps the thread pool busy for a while (see compressing). */
const LONG_COMPRESSION_BYTES = 1 << 20;

/** What resolve() found. */
export interface ResolvedLayer {
  readonly layer: Layer;
  readonly diffID: Digest;
  /** 'reused': an existing layer of the previous image; 'stored': an existing blob; 'new': compressed now. */
  readonly how: 'reused' | 'stored' | 'new';
  /** Blob record for fingerprints and the cache (absent for a previous-image layer not in the store). */
  readonly record?: CachedLayer;
}

/** What a LayerResolver starts from. */
export interface LayerResolverOptions {
  /** Where new layer blobs are written (the local store's blobs). */
  readonly blobs: BlobStore;
  readonly settings: TarSettings;
  /** Layers of the previous image by diffID (analyze's result); none on a first build. */
  readonly previous?: ReadonlyMap<string, Layer>;
  /**
   * Fingerprints known up front: a cache snapshot's record (copied), or a Map this resolver then
   * keeps and adds to (one index shared by several resolvers in a row).
   */
  readonly fingerprints?: Readonly<Record<string, CachedLayer>> | Map<string, CachedLayer>;
}

/** The state every view of one resolver shares (withSettings gives another view of it). */
interface ReuseState {
  /** Known fingerprints (from the cache, restore, earlier exports) -> their blob. */
  readonly fingerprints: Map<string, CachedLayer>;
  /** Blobs already in hand by diffID (e.g. the cache's, or layers resolved earlier in this run). */
  readonly known: Map<string, CachedLayer>;
  /** Directory listings of layer dirs walked earlier in this build (host path -> listings). */
  readonly listings: Map<string, DirListings>;
  readonly previous: Map<string, Layer>;
  readonly stats: ReuseStats;
  /** Resolves when the first long compression starts (see compressing). */
  readonly compressing: { readonly started: Promise<void>; readonly start: () => void };
}

/** LayerResolver turns layer content into layers, reusing whatever already holds the same bytes. */
export class LayerResolver {
  readonly blobs: BlobStore;
  readonly settings: TarSettings;
  readonly #state: ReuseState;

  constructor(o: LayerResolverOptions, state?: ReuseState) {
    this.blobs = o.blobs;
    this.settings = o.settings;
    const fps = o.fingerprints ?? {};
    this.#state = state ?? {
      fingerprints: fps instanceof Map ? fps : new Map(Object.entries(fps)),
      known: new Map(),
      listings: new Map(),
      previous: new Map(o.previous ?? []),
      stats: { compressed: 0, hashed: 0, fingerprinted: 0 },
      compressing: (() => {
        let start!: () => void;
        const started = new Promise<void>((r) => (start = r));
        return { started, start };
      })(),
    };
  }

  /** withSettings is this resolver (same state) writing blobs with other tar settings. */
  withSettings(settings: TarSettings): LayerResolver {
    return new LayerResolver({ blobs: this.blobs, settings }, this.#state);
  }

  /**
   * Resolves once a compression of at least LONG_COMPRESSION_BYTES has started on the thread pool:
   * this thread then mostly waits for it, and other work (the cache phase's early checks) costs
   * the exporter little. A small layer's compression does not count: work started then would hold
   * this thread while the exporter still reads and hashes its large layers.
   */
  get compressing(): Promise<void> {
    return this.#state.compressing.started;
  }

  /** A copy of the counters so far. */
  get stats(): ReuseStats {
    return { ...this.#state.stats };
  }

  /** usePrevious adds the previous image's layers (analyze finds them), by diffID. */
  usePrevious(layers: ReadonlyMap<string, Layer>): void {
    for (const [diffID, layer] of layers) this.#state.previous.set(diffID, layer);
  }

  /** The previous image's layer with this diffID, if it had one. */
  previousLayer(diffID: string): Layer | undefined {
    return this.#state.previous.get(diffID);
  }

  /**
   * remember records that the directory `dir` (fingerprint `fingerprint`, listings `dirs`) holds
   * the bytes of `layer`: restore calls it for every layer it brings back.
   */
  remember(fingerprint: string, layer: CachedLayer, dir?: string, dirs?: DirListings): void {
    this.#state.fingerprints.set(fingerprint, layer);
    if (dir !== undefined && dirs) this.#state.listings.set(dir, dirs);
  }

  /**
   * dirContent is a layer dir's content in this build: checked by fingerprint (dirCheck), reading
   * only the directories that changed, when an earlier walk of this build listed it (restore);
   * walked (layer-reuse dirContent) otherwise.
   */
  dirContent(dir: string, walkOpts: WalkOptions): Promise<LayerContent> {
    const known = this.#state.listings.get(dir);
    return known
      ? dirCheck(dir, { ...walkOpts, knownDirs: known }, this.settings)
      : dirContent(dir, walkOpts, this.settings);
  }

  /**
   * resolve turns content into a layer: a layer of the previous image with that diffID, a blob in
   * the store, or (only then) a new compressed blob. `candidate` is the diffID this layer had last
   * time, which makes hashing worthwhile when the fingerprint is unknown.
   */
  async resolve(content: LayerContent, candidate?: string): Promise<ResolvedLayer> {
    const s = this.#state;
    const worthHashing = candidate !== undefined && (s.previous.has(candidate) || s.known.has(candidate));
    const { diffID, hit, tar } = await this.identify(content, worthHashing);
    if (diffID) {
      const found = await this.#existing(content.fingerprint, diffID, hit);
      if (found) return found;
    }
    return this.compress(content, tar);
  }

  /** The layer already holding `diffID` (a store blob, else the previous image's), if any. */
  async #existing(fp: string, diffID: Digest, hit?: CachedLayer): Promise<ResolvedLayer | undefined> {
    const s = this.#state;
    const prev = s.previous.get(diffID);
    const rec = hit ?? s.known.get(diffID);
    const stored = rec && (await this.blobs.has(rec.digest)) ? rec : undefined;
    if (stored) {
      await touchBlob(this.blobs, stored.digest);
      if (fp) s.fingerprints.set(fp, stored);
      s.known.set(diffID, stored);
      const layer = new StoredLayer(this.blobs, stored);
      return { layer: prev ?? layer, diffID, how: prev ? 'reused' : 'stored', record: stored };
    }
    if (!prev) return undefined;
    const record = await recordOf(prev, diffID);
    if (record) await touchBlob(this.blobs, record.digest);
    if (fp && record) s.fingerprints.set(fp, record);
    return record ? { layer: prev, diffID, how: 'reused', record } : { layer: prev, diffID, how: 'reused' };
  }

  /**
   * identify finds a content's diffID without compressing: from its fingerprint, or (when `hash`)
   * by tarring it through sha256. Returns no diffID when neither applies. A hashed tar of up to
   * KEEP_TAR_BYTES comes back with its bytes: should the layer turn out changed, compress() takes
   * them instead of reading and tarring its files a second time.
   */
  async identify(
    content: LayerContent,
    hash: boolean,
  ): Promise<{ diffID?: Digest; hit?: CachedLayer; tar?: HashedTar }> {
    const s = this.#state;
    const hit = content.fingerprint ? s.fingerprints.get(content.fingerprint) : undefined;
    if (hit) {
      s.stats.fingerprinted++;
      return { diffID: hit.diffID, hit };
    }
    if (!hash) return {};
    s.stats.hashed++;
    const tar = await hashTar(await content.entries(), this.settings.epoch, KEEP_TAR_BYTES);
    return { diffID: tar.diffID, tar };
  }

  /**
   * compress writes content as a new layer blob (the one expensive path) and records it; from
   * `tar` when identify() kept the bytes of the same content (same entries, same epoch).
   */
  async compress(content: LayerContent, tar?: HashedTar): Promise<ResolvedLayer> {
    const base: Parameters<typeof writeLayer>[1] = {
      store: this.blobs,
      compression: this.settings.compression,
      epoch: this.settings.epoch,
    };
    const opts = this.settings.level === undefined ? base : { ...base, level: this.settings.level };
    const entries = tar?.chunks ? undefined : await content.entries();
    const writing = entries ? writeLayer(entries, opts) : writeTarLayer(tar!.chunks!, tar!, opts);
    const bytes = tar?.size ?? entries!.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);
    if (bytes >= LONG_COMPRESSION_BYTES) this.#state.compressing.start();
    const layer = await writing;
    this.#state.stats.compressed++;
    const info = await layer.info();
    const record: CachedLayer = {
      diffID: info.diffID,
      digest: info.digest,
      size: info.size,
      mediaType: info.mediaType,
    };
    if (content.fingerprint) this.#state.fingerprints.set(content.fingerprint, record);
    this.#state.known.set(info.diffID, record);
    return { layer, diffID: info.diffID, how: 'new', record };
  }
}

async function recordOf(layer: Layer, diffID: Digest): Promise<CachedLayer | undefined> {
  try {
    return { diffID, digest: await layer.digest(), size: await layer.size(), mediaType: layer.mediaType };
  } catch {
    // A layer whose record cannot be made is simply not offered for reuse.
    return undefined;
  }
}
