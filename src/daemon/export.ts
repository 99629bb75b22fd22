import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { KilnError } from '../internal/errors.ts';
import { readTar } from '../layers/tar-reader.ts';
import { StoredLayer } from '../layout/blob-layer.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import { compressionOfMagic } from '../oci/compression.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { layerMediaType, MediaType } from '../oci/media-types.ts';
import { descriptorOfLayer, LazyImage } from '../oci/memory.ts';
import { ConfigFileSchema, parseJson } from '../oci/schema.ts';
import { digestStream } from '../oci/validate.ts';

// An image exported by a daemon (`GET /images/{name}/get`: a docker-archive tar stream) taken
// into kiln's blob store as it streams: every member is a blob named by its own digest, then
// manifest.json says which blobs are the config and the layers. Member names are never used as
// paths, and the daemon's word is checked: each layer must hash to the diffID its config names.

const ArchiveManifestSchema = z.array(
  z.looseObject({
    Config: z.string(),
    RepoTags: z.array(z.string()).nullable().optional(),
    Layers: z.array(z.string()),
  }),
);

/** Largest manifest.json read into memory. */
const MAX_MANIFEST = 4 << 20;

/** A blob's digest guessed from a member name (`<hex>.tar`, `<hex>.json`, `blobs/sha256/<hex>`). */
function nameDigest(name: string): Digest | undefined {
  const m = /(?:^|\/)([0-9a-f]{64})(?:\.tar|\.json|\/layer\.tar)?$/.exec(name);
  return m ? (`sha256:${m[1]}` as Digest) : undefined;
}

/**
 * importExport reads the docker-archive stream `tar` into `blobs` and returns its (first) image.
 * A member whose name is a digest the store already holds is skipped unread (a run image read
 * again costs the stream, not the disk); otherwise the name is checked against the content.
 */
export async function importExport(tar: Readable, blobs: BlobStore, what: string): Promise<Image> {
  const members = new Map<string, { digest: Digest; size: number }>();
  let manifestBytes: Buffer | undefined;
  for await (const entry of readTar(tar)) {
    if (entry.header.type !== 'file') continue;
    const name = entry.header.path.replace(/^\.\//, '');
    if (name === 'manifest.json') {
      if (entry.header.size > MAX_MANIFEST) throw new KilnError(`${what}: manifest.json too large`);
      const chunks: Buffer[] = [];
      for await (const c of entry.body) chunks.push(Buffer.from(c));
      manifestBytes = Buffer.concat(chunks);
      continue;
    }
    const expected = nameDigest(name);
    const put = await blobs.put(entry.body, expected, entry.header.size).catch((e: unknown) => {
      throw new KilnError(`${what}: member ${JSON.stringify(name)}: ${(e as Error).message}`, { cause: e });
    });
    members.set(name, { digest: put.digest, size: put.size });
  }
  if (!manifestBytes) throw new KilnError(`${what}: the export has no manifest.json`);
  const entry = parseJson(ArchiveManifestSchema, manifestBytes, `manifest.json of ${what}`)[0];
  if (!entry) throw new KilnError(`${what}: the export holds no image`);
  const blob = (name: string) => {
    const m = members.get(name.replace(/^\.\//, ''));
    if (!m) throw new KilnError(`${what}: member ${JSON.stringify(name)} is missing`);
    return m;
  };
  const configBlob = blob(entry.Config);
  const rawConfig = await blobs.readBytes(configBlob.digest);
  const config = parseJson(ConfigFileSchema, rawConfig, `config of ${what}`);
  if (config.rootfs.diff_ids.length !== entry.Layers.length)
    throw new KilnError(
      `${what}: ${entry.Layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids`,
    );
  const layers: Layer[] = [];
  for (const [i, name] of entry.Layers.entries()) {
    layers.push(await checkedLayer(blobs, blob(name), config.rootfs.diff_ids[i]!, what));
  }
  return new LazyImage({
    mediaType: MediaType.OciManifest,
    rawConfig: async () => rawConfig,
    config: async () => config,
    layers: async () => layers,
    layerDescriptors: () => Promise.all(layers.map(descriptorOfLayer)),
  });
}

/** checkedLayer is a stored layer blob whose uncompressed content hashes to `diffID`. */
async function checkedLayer(
  blobs: BlobStore,
  m: { digest: Digest; size: number },
  diffID: Digest,
  what: string,
): Promise<Layer> {
  const head = Buffer.alloc(4);
  const fh = await fs.open(blobs.path(m.digest), 'r');
  try {
    await fh.read(head, 0, Math.min(4, m.size), 0);
  } finally {
    await fh.close();
  }
  const compression = m.size === 0 ? 'none' : compressionOfMagic(head);
  const layer = new StoredLayer(blobs, {
    mediaType: layerMediaType(compression),
    digest: m.digest,
    size: m.size,
  });
  const actual = compression === 'none' ? m.digest : (await digestStream(await layer.uncompressed())).digest;
  if (actual !== diffID)
    throw new KilnError(`${what}: layer ${m.digest} is ${actual}, its config says ${diffID}`);
  return new StoredLayer(blobs, {
    mediaType: layerMediaType(compression),
    digest: m.digest,
    size: m.size,
    diffID,
  });
}
