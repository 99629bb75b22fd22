import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { deepFreeze } from '../internal/data-file.ts';
import { isAbsent } from '../internal/errors.ts';
import { exists, lstatIfExists } from '../internal/fs.ts';
import { withLock as withFileLock } from '../internal/lock.ts';
import { readFileInRoot, readTextInRootIfExists } from '../internal/safe-read.ts';
import { type Digest, isDigest, sha256 } from '../oci/digest.ts';
import type { Image, ImageIndex, Layer } from '../oci/image.ts';
import { isImageMediaType, isIndexMediaType, MediaType } from '../oci/media-types.ts';
import { StoredImage } from '../oci/memory.ts';
import { DEFAULT_PLATFORM, pickManifest } from '../oci/platform.ts';
import {
  type Descriptor,
  type Index,
  IndexSchema,
  ManifestSchema,
  type Platform,
  parseJson,
} from '../oci/schema.ts';
import { StoredLayer } from './blob-layer.ts';
import { BlobStore, mkdirReadable } from './blob-store.ts';

/** Annotation naming an image in a layout's index.json (what `oci:DIR:TAG` refers to). */
export const REF_NAME = 'org.opencontainers.image.ref.name';
/**
 * On an untagged index.json entry kiln writes: the digest of the image its manifest refers to
 * (its `subject`), so that a referrers lookup reads only the manifests that may be one. A hint:
 * entries without it (or from other tools) are read as before, and a match is still checked
 * against the manifest itself.
 */
export const SUBJECT_HINT = 'dev.kiln.referrer.subject';

/**
 * mayReferTo tells whether an index.json entry can be a referrer of `subject` and is worth
 * reading: untagged, and not noted by kiln as another image's referrer.
 */
export function mayReferTo(d: Descriptor, subject: string): boolean {
  if (d.annotations?.[REF_NAME]) return false;
  const hint = d.annotations?.[SUBJECT_HINT];
  return hint === undefined || hint === subject;
}

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

/**
 * withLock runs `fn` holding `<file>.lock`. A lock left by a dead process is taken over, so a
 * killed kiln never wedges a layout.
 */
function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  return withFileLock(`${file}.lock`, fn, { timeoutMs: 60_000 });
}

/** Options of Layout.image. */
export interface ImageSelect {
  /** Platform to pick when the reference names an index (default DEFAULT_PLATFORM, src/oci/platform.ts). */
  readonly platform?: Platform;
}

/** How many layer blobs a write stores at once (see #putLayers). */
const PUT_LAYERS_AT_ONCE = 4;

/**
 * Layout is an OCI image layout directory: `oci-layout`, `index.json` and `blobs/`. Several
 * tagged images share blobs; index.json is replaced atomically under a lock; blobs are only
 * ever added, never rewritten.
 */
export class Layout {
  readonly dir: string;
  readonly blobs: BlobStore;

  private constructor(dir: string) {
    this.dir = path.resolve(dir);
    this.blobs = new BlobStore(this.dir);
  }

  /** open opens an existing layout (it must have an `oci-layout` file). */
  static async open(dir: string): Promise<Layout> {
    // Only an absent oci-layout (or dir) means "not a layout"; a link, a FIFO or a huge one is
    // refused naming it.
    let text: string | undefined;
    try {
      text = readTextInRootIfExists(dir, 'oci-layout', {
        maxBytes: 64 * 1024,
        what: 'the layout',
        shown: dir,
      });
    } catch (e) {
      if (!isAbsent(e)) throw e;
    }
    if (text === undefined) throw new Error(`not an OCI image layout: ${dir} (no oci-layout file)`);
    let version: unknown;
    try {
      version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      // Not JSON: reported just below as an unsupported layout, naming the directory.
      version = undefined;
    }
    if (typeof version !== 'string' || !version.startsWith('1.'))
      throw new Error(
        `unsupported OCI image layout in ${dir}: imageLayoutVersion ${JSON.stringify(version)}`,
      );
    return new Layout(dir);
  }

  /** init creates the layout when missing (idempotent) and opens it. */
  static async init(dir: string): Promise<Layout> {
    await mkdirReadable(path.join(dir, 'blobs', 'sha256'));
    const marker = path.join(dir, 'oci-layout');
    if (!(await exists(marker))) await writeFileAtomic(marker, LAYOUT_FILE);
    const index = path.join(dir, 'index.json');
    if (!(await exists(index)))
      await withLock(index, async () => {
        if (!(await exists(index))) await writeFileAtomic(index, emptyIndexBytes());
      });
    return Layout.open(dir);
  }

  /**
   * The last index.json read and its parse: a build reads index.json a dozen times and it rarely
   * changes in between, so the same bytes are not parsed and validated again. Frozen: shared.
   */
  #lastIndex: { readonly raw: Buffer; readonly index: Index } | undefined;

  /** index returns the parsed index.json (read each time; a value not to be modified). */
  async index(): Promise<Index> {
    // Not through a link, not a FIFO, not unbounded: an oci:DIR layout may be anyone's.
    const raw = readFileInRoot(this.dir, 'index.json', {
      what: 'the OCI layout',
      shown: this.dir,
      maxBytes: 32 << 20,
    });
    if (this.#lastIndex?.raw.equals(raw)) return this.#lastIndex.index;
    const index = deepFreeze(parseJson(IndexSchema, raw, `index.json of ${this.dir}`));
    this.#lastIndex = { raw, index };
    return index;
  }

  /** tags lists the ref names in index.json in order. */
  async tags(): Promise<string[]> {
    return (await this.index()).manifests.flatMap((d) =>
      d.annotations?.[REF_NAME] ? [d.annotations[REF_NAME]] : [],
    );
  }

  /** resolve finds the index.json descriptor of a tag, or of a digest listed there. */
  async resolve(ref: string): Promise<Descriptor> {
    const manifests = (await this.index()).manifests;
    const found = isDigest(ref)
      ? manifests.find((d) => d.digest === ref)
      : manifests.find((d) => d.annotations?.[REF_NAME] === ref);
    if (!found) {
      const names = manifests.flatMap((d) => d.annotations?.[REF_NAME] ?? []);
      throw new Error(
        `image "${ref}" not found in layout ${this.dir}${names.length ? ` (tags: ${names.join(', ')})` : ' (no tags)'}`,
      );
    }
    return found;
  }

  /** image reads the image a tag or digest names; an index is resolved to one platform. */
  async image(ref: string, select: ImageSelect = {}): Promise<Image> {
    let desc = await this.resolve(ref);
    const what = `${this.dir}:${ref}`;
    for (let depth = 0; isIndexMediaType(desc.mediaType); depth++) {
      if (depth > 4) throw new Error(`${what}: image indexes nested too deep`);
      const index = parseJson(
        IndexSchema,
        await this.blobs.readBytes(desc.digest),
        `index ${desc.digest} of ${what}`,
      );
      const pick = pickManifest(index.manifests, select.platform ?? DEFAULT_PLATFORM, what);
      desc = pick;
    }
    if (desc.mediaType && !isImageMediaType(desc.mediaType))
      throw new Error(`${what}: ${desc.mediaType} is not an image manifest`);
    return this.imageByDigest(desc.digest, what);
  }

  /** imageIndex reads the index a tag or digest names (a multi-platform image). */
  async imageIndex(ref: string): Promise<ImageIndex> {
    const desc = await this.resolve(ref);
    if (!isIndexMediaType(desc.mediaType))
      throw new Error(`${this.dir}:${ref}: ${desc.mediaType} is not an image index`);
    return this.indexByDigest(desc.digest, `${this.dir}:${ref}`);
  }

  /** indexByDigest reads the index blob `d`. */
  async indexByDigest(d: Digest, what = `${this.dir}@${d}`): Promise<ImageIndex> {
    const raw = await this.blobs.readBytes(d);
    const parsed = parseJson(IndexSchema, raw, `index ${what}`);
    const listed = (c: Digest) => {
      if (!parsed.manifests.some((m) => m.digest === c))
        throw new Error(`${what}: the index has no manifest ${c}`);
    };
    return {
      mediaType: async () => parsed.mediaType ?? MediaType.OciIndex,
      rawManifest: async () => raw,
      indexManifest: async () => parsed,
      digest: async () => d,
      image: async (c) => {
        listed(c);
        return this.imageByDigest(c, `${what}@${c}`);
      },
      index: async (c) => {
        listed(c);
        return this.indexByDigest(c, `${what}@${c}`);
      },
    };
  }

  /**
   * writeIndex writes every image of `index` (recursively), then the index itself, and tags it.
   * As with writeImage, a failure removes the blobs this call added.
   */
  async writeIndex(index: ImageIndex, tag?: string): Promise<Descriptor> {
    return this.#writeTagged(index, (added) => this.#writeIndexBlobs(index, added), tag);
  }

  async #writeIndexBlobs(index: ImageIndex, added: Digest[]): Promise<Digest> {
    for (const m of (await index.indexManifest()).manifests) {
      if (await this.blobs.has(m.digest)) continue;
      if (isIndexMediaType(m.mediaType)) await this.#writeIndexBlobs(await index.index(m.digest), added);
      else await this.#writeImageBlobs(await index.image(m.digest), added);
    }
    const raw = await index.rawManifest();
    const digest = sha256(raw);
    if ((await this.blobs.putBytes(raw, digest)).added) added.push(digest);
    return digest;
  }

  /** imageByDigest reads the image manifest blob `d` (which need not be in index.json). */
  async imageByDigest(d: Digest, what = `${this.dir}@${d}`): Promise<Image> {
    const raw = await this.blobs.readBytes(d);
    const store = this.blobs;
    return new StoredImage({
      rawManifest: raw,
      what,
      rawConfig: async () =>
        store.readBytes(parseJson(ManifestSchema, raw, `manifest of ${what}`).config.digest),
      layers: async (manifest, config) =>
        manifest.layers.map(
          (l, i) =>
            new StoredLayer(
              store,
              { mediaType: l.mediaType, digest: l.digest, size: l.size, diffID: config.rootfs.diff_ids[i]! },
              l.annotations,
            ),
        ),
    });
  }

  /**
   * writeImage writes the image's blobs (layers not yet present, then config, then manifest) and
   * points `tag` at it in index.json, replacing an earlier image of the same tag. If anything
   * fails, the blobs this call added are removed again, so no orphan is left behind.
   */
  async writeImage(image: Image, tag?: string): Promise<Descriptor> {
    return this.#writeTagged(image, (added) => this.#writeImageBlobs(image, added), tag);
  }

  // writeImage and writeIndex: write the blobs (recording the ones added), then point `tag` at
  // the manifest in index.json; on failure the blobs this call added are removed again.
  async #writeTagged(
    top: Image | ImageIndex,
    writeBlobs: (added: Digest[]) => Promise<Digest>,
    tag: string | undefined,
  ): Promise<Descriptor> {
    const added: Digest[] = [];
    try {
      const digest = await writeBlobs(added);
      const [rawManifest, mediaType] = await Promise.all([top.rawManifest(), top.mediaType()]);
      const desc: Descriptor = { mediaType, digest, size: rawManifest.length };
      if (tag !== undefined) desc.annotations = { [REF_NAME]: tag };
      else if ('manifest' in top) {
        const subject = (await top.manifest()).subject?.digest;
        if (subject !== undefined) desc.annotations = { [SUBJECT_HINT]: subject };
      }
      // A tag moves to the new image; an untagged image (e.g. a referrer) is listed once.
      await this.#updateIndex((manifests) => [
        ...manifests.filter((m) =>
          tag === undefined
            ? m.digest !== digest || m.annotations?.[REF_NAME] !== undefined
            : m.annotations?.[REF_NAME] !== tag,
        ),
        desc,
      ]);
      return desc;
    } catch (e) {
      await Promise.all(added.map((d) => this.blobs.remove(d)));
      throw e;
    }
  }

  /** Writes layers not yet present, then config, then manifest; returns the manifest digest. */
  async #writeImageBlobs(image: Image, added: Digest[]): Promise<Digest> {
    const [manifest, layers, rawConfig, rawManifest] = await Promise.all([
      image.manifest(),
      image.layers(),
      image.rawConfig(),
      image.rawManifest(),
    ]);
    await this.#putLayers(
      manifest.layers.map((d, i) => ({ desc: d, layer: layers[i]! })),
      added,
    );
    if ((await this.blobs.putBytes(rawConfig, manifest.config.digest)).added)
      added.push(manifest.config.digest);
    const digest = sha256(rawManifest);
    if ((await this.blobs.putBytes(rawManifest, digest)).added) added.push(digest);
    return digest;
  }

  // Four at a time: a pull waits on the network as much as on this machine, and two streams
  // left the link idle between them (a 300 MB pull from a local registry: 1.53 s with two,
  // 1.27 s with four, skopeo 0.96 s with six).
  async #putLayers(items: { desc: Descriptor; layer: Layer }[], added: Digest[]): Promise<void> {
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed) {
        const item = items[next++];
        if (!item) return;
        try {
          if (await this.blobs.has(item.desc.digest)) continue;
          const r = await this.blobs.put(await item.layer.compressed(), item.desc.digest, item.desc.size);
          if (r.added) added.push(r.digest);
        } catch (e) {
          failed = true;
          throw e;
        }
      }
    };
    // Wait for every worker (not just the first failure) so that cleanup sees all it added.
    const results = await Promise.allSettled(Array.from({ length: PUT_LAYERS_AT_ONCE }, worker));
    const bad = results.find((r) => r.status === 'rejected');
    if (bad) throw (bad as PromiseRejectedResult).reason;
  }

  /**
   * gc removes blobs that nothing listed in index.json reaches (manifests, indexes, configs,
   * layers, subjects), and temp files left by killed writers. Only files older than
   * `graceMs` (default 1 hour) are touched, so blobs a concurrent build wrote but has not tagged
   * yet survive. Returns the digests removed.
   */
  async gc(opts: { graceMs?: number } = {}): Promise<string[]> {
    const grace = opts.graceMs ?? 3_600_000;
    const keep = new Set<string>();
    const visit = async (d: Descriptor): Promise<void> => {
      if (keep.has(d.digest)) return;
      keep.add(d.digest);
      if (!(isIndexMediaType(d.mediaType) || isImageMediaType(d.mediaType))) return;
      // A manifest that is not there has no children to keep; one that is there but cannot be read
      // or fails its digest stops the collection (naming the blob) rather than drop its layers.
      const raw = await this.blobs.readBytes(d.digest).catch(async (e: unknown) => {
        if (!(await this.blobs.has(d.digest))) return undefined;
        throw e;
      });
      if (!raw) return;
      const doc = JSON.parse(raw.toString('utf8')) as {
        manifests?: Descriptor[];
        config?: Descriptor;
        layers?: Descriptor[];
        subject?: Descriptor;
      };
      for (const c of [...(doc.manifests ?? []), ...(doc.layers ?? [])]) await visit(c);
      if (doc.config) keep.add(doc.config.digest);
      if (doc.subject) keep.add(doc.subject.digest);
    };
    const removed: string[] = [];
    await withLock(path.join(this.dir, 'index.json'), async () => {
      for (const d of (await this.index()).manifests) await visit(d);
      const now = Date.now();
      const blobsDir = path.join(this.dir, 'blobs');
      for (const alg of await fs.readdir(blobsDir)) {
        const p = path.join(blobsDir, alg);
        const st = await fs.lstat(p);
        if (!st.isDirectory()) {
          if (alg.startsWith('.tmp-') && now - st.mtimeMs > grace) await fs.rm(p, { force: true });
          continue;
        }
        for (const hex of await fs.readdir(p)) {
          const digest = `${alg}:${hex}`;
          if (keep.has(digest)) continue;
          const f = path.join(p, hex);
          const fst = await lstatIfExists(f);
          if (!fst || now - fst.mtimeMs <= grace) continue;
          await fs.rm(f, { force: true });
          removed.push(digest);
        }
      }
    });
    return removed;
  }

  /** dropUntagged drops the untagged entries (referrers) with these digests from index.json (blobs stay; see gc). */
  async dropUntagged(digests: ReadonlySet<string>): Promise<void> {
    await this.#updateIndex((m) =>
      m.filter((d) => d.annotations?.[REF_NAME] !== undefined || !digests.has(d.digest)),
    );
  }

  /** removeTag drops a tag from index.json (blobs stay; see gc). */
  async removeTag(tag: string): Promise<void> {
    await this.#updateIndex((m) => m.filter((d) => d.annotations?.[REF_NAME] !== tag));
  }

  async #updateIndex(change: (manifests: Descriptor[]) => Descriptor[]): Promise<void> {
    const file = path.join(this.dir, 'index.json');
    await withLock(file, async () => {
      const index = await this.index();
      const next: Index = {
        ...index,
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: change([...index.manifests]),
      };
      await writeFileAtomic(file, `${JSON.stringify(next)}`);
    });
  }
}

function emptyIndexBytes(): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
}

/** writeImage writes `image` into the layout at `dir` (created when missing) under `tag`. */
export async function writeImage(dir: string, image: Image, tag?: string): Promise<Descriptor> {
  return (await Layout.init(dir)).writeImage(image, tag);
}

/** readImage reads the image a tag or digest names in the layout at `dir`. */
export async function readImage(dir: string, ref: string, select: ImageSelect = {}): Promise<Image> {
  return (await Layout.open(dir)).image(ref, select);
}

/** listTags lists the tags of the layout at `dir`. */
export async function listTags(dir: string): Promise<string[]> {
  return (await Layout.open(dir)).tags();
}
