import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { type TarEntry, tarChunks } from '../layers/tar-writer.ts';
import { DigestVerifier } from '../layout/blob-store.ts';
import { decompress } from '../oci/compression.ts';
import { type Digest, hexOf } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { once } from '../oci/lazy.ts';
import { type Compression, layerMediaType, MediaType } from '../oci/media-types.ts';
import { DEFAULT_EPOCH, descriptorOfLayer, LazyImage } from '../oci/memory.ts';
import { ConfigFileSchema, parseJson } from '../oci/schema.ts';
import { digestStream } from '../oci/validate.ts';
import {
  bytesEntry,
  compressionAt,
  fileEntry,
  memberStream,
  piped,
  type TarMember,
  tarMembers,
  writeTarFile,
} from './tar-file.ts';

// docker-archive: the tarball `docker save` writes and `docker load` / `podman load` read:
// manifest.json ([{Config, RepoTags, Layers}]), a legacy `repositories` file, the config as
// `<hex>.json` and each layer as an uncompressed tar `<diffID hex>.tar` (the layout skopeo
// writes). Layers are uncompressed because old loaders accept nothing else.

const ArchiveManifestSchema = z.array(
  z.looseObject({
    Config: z.string(),
    RepoTags: z.array(z.string()).nullable().optional(),
    Layers: z.array(z.string()),
  }),
);

/** One image to put in an archive and the names (`name:tag`) it is loaded under. */
export interface ArchiveImage {
  readonly image: Image;
  readonly tags: readonly string[];
}

async function uncompressedSize(layer: Layer): Promise<number> {
  const known = (layer as { uncompressedSize?: number }).uncompressedSize;
  if (typeof known === 'number') return known;
  return (await digestStream(await layer.uncompressed())).size;
}

function splitTag(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/** Options of dockerArchiveEntries. */
export interface ArchiveEntryOptions {
  /**
   * Layers (by diffID) the loader already has: written as empty members, which Docker and Podman
   * do not read when they hold the layer (`docker load` of a slim archive; see src/daemon).
   */
  readonly present?: (image: Image, index: number, diffID: Digest) => boolean;
}

/**
 * dockerArchiveEntries are the tar members of a docker-archive holding `images` (layers shared
 * between images stored once).
 */
export async function dockerArchiveEntries(
  images: readonly ArchiveImage[],
  opts: ArchiveEntryOptions = {},
): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, tags } of images) {
    const [cfg, rawConfig, layers] = await Promise.all([
      image.configFile(),
      image.rawConfig(),
      image.layers(),
    ]);
    const configName = `${hexOf((await image.manifest()).config.digest)}.json`;
    if (!seen.has(configName)) {
      seen.add(configName);
      entries.push(bytesEntry(configName, rawConfig));
    }
    const names: string[] = [];
    for (const [i, layer] of layers.entries()) {
      const diffID = cfg.rootfs.diff_ids[i]!;
      const name = `${hexOf(diffID)}.tar`;
      names.push(name);
      if (seen.has(name)) continue;
      seen.add(name);
      if (opts.present?.(image, i, diffID)) {
        entries.push(bytesEntry(name, new Uint8Array(0)));
        continue;
      }
      const size = await uncompressedSize(layer);
      // The diffID is verified while the layer is copied in: an archive never holds a layer
      // that disagrees with its config.
      entries.push(
        fileEntry(name, size, async () =>
          piped(await layer.uncompressed(), new DigestVerifier(diffID, `layer ${diffID}`, size)),
        ),
      );
    }
    manifest.push({ Config: configName, RepoTags: [...tags], Layers: names });
    const top = names[names.length - 1];
    for (const t of tags) {
      const { repo, tag } = splitTag(t);
      if (!top) continue;
      repositories[repo] = { ...(repositories[repo] ?? {}), [tag]: top.replace(/\.tar$/, '') };
    }
  }
  const meta = (name: string, value: unknown): TarEntry =>
    bytesEntry(name, Buffer.from(JSON.stringify(value)));
  entries.push(meta('manifest.json', manifest), meta('repositories', repositories));
  return entries;
}

/** dockerArchiveStream streams a docker-archive of `images` (for `docker load` over the API). */
export async function dockerArchiveStream(
  images: readonly ArchiveImage[],
  opts: ArchiveEntryOptions = {},
): Promise<Readable> {
  return Readable.from(tarChunks(await dockerArchiveEntries(images, opts), { epoch: DEFAULT_EPOCH }));
}

/**
 * writeDockerArchive writes `images` as one docker-archive tarball at `file` (temp + rename, so a
 * failure leaves nothing). Layers shared between images are stored once. Deterministic: same
 * images and tags, same bytes.
 */
export async function writeDockerArchive(
  file: string,
  images: readonly ArchiveImage[] | ArchiveImage,
): Promise<void> {
  const list = Array.isArray(images) ? images : [images as ArchiveImage];
  const entries = await dockerArchiveEntries(list);
  try {
    await writeTarFile(file, entries);
  } catch (e) {
    // Name the archive, not the temp file the failing call saw.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOSPC' || code === 'EROFS')
      throw new Error(
        `cannot write docker-archive ${file}: ${code === 'ENOENT' ? `directory ${path.dirname(path.resolve(file))} does not exist` : (e as Error).message}`,
      );
    throw e;
  }
}

/** Where each member of an uncompressed tar file sits. */
async function indexTar(file: string): Promise<Map<string, TarMember>> {
  const compression = await compressionAt(file).catch((e: NodeJS.ErrnoException) => {
    throw new Error(
      `cannot read docker-archive ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`,
    );
  });
  if (compression !== 'none')
    throw new Error(`docker-archive ${file} is compressed: decompress it first (e.g. gunzip)`);
  return tarMembers(file);
}

/** Options of readDockerArchive. */
export interface ReadArchiveOptions {
  /** Pick the image loaded under this `name:tag` (default: the first image of the archive). */
  readonly tag?: string;
}

/**
 * readDockerArchive reads one image from a docker-archive tarball. Layers come out as they are
 * stored (usually uncompressed tars, media type `application/vnd.oci.image.layer.v1.tar`); their
 * digests are computed lazily by reading the archive, never trusted from names.
 */
export async function readDockerArchive(file: string, opts: ReadArchiveOptions = {}): Promise<Image> {
  const index = await indexTar(file);
  const member = async (name: string): Promise<Buffer> => {
    const m = index.get(name);
    if (!m) throw new Error(`docker-archive ${file}: member ${JSON.stringify(name)} is missing`);
    const fh = await fs.open(file, 'r');
    try {
      const b = Buffer.alloc(m.size);
      await fh.read(b, 0, m.size, m.offset);
      return b;
    } finally {
      await fh.close();
    }
  };
  const manifests = parseJson(
    ArchiveManifestSchema,
    await member('manifest.json'),
    `manifest.json of ${file}`,
  );
  const entry = opts.tag
    ? manifests.find(
        (m) => m.RepoTags?.includes(opts.tag!) || m.RepoTags?.some((t) => t.endsWith(`/${opts.tag}`)),
      )
    : manifests[0];
  if (!entry)
    throw new Error(
      `docker-archive ${file}: no image${opts.tag ? ` tagged ${JSON.stringify(opts.tag)}` : ''}`,
    );
  const rawConfig = await member(entry.Config);
  const config = parseJson(ConfigFileSchema, rawConfig, `config ${entry.Config} of ${file}`);
  if (config.rootfs.diff_ids.length !== entry.Layers.length)
    throw new Error(
      `docker-archive ${file}: ${entry.Layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids`,
    );
  const layers: Layer[] = [];
  for (const [i, name] of entry.Layers.entries()) {
    const m = index.get(name);
    if (!m) throw new Error(`docker-archive ${file}: layer ${JSON.stringify(name)} is missing`);
    layers.push(
      archiveLayer(file, m, await compressionAt(file, m.offset, m.size), config.rootfs.diff_ids[i]!),
    );
  }
  return new LazyImage({
    mediaType: MediaType.OciManifest,
    rawConfig: async () => rawConfig,
    config: async () => config,
    layers: async () => layers,
    layerDescriptors: () => Promise.all(layers.map(descriptorOfLayer)),
  });
}

function archiveLayer(file: string, m: TarMember, compression: Compression, diffID: Digest): Layer {
  const range = () => memberStream(file, m);
  const digest = once(async () => (await digestStream(range())).digest);
  return {
    mediaType: layerMediaType(compression),
    digest,
    diffID: async () => (compression === 'none' ? digest() : diffID),
    size: async () => m.size,
    compressed: async () => range(),
    uncompressed: async () => decompress(range(), compression),
  };
}
