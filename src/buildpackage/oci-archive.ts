import type { Readable } from 'node:stream';
import {
  bytesEntry,
  compressionAt,
  fileEntry,
  memberStream,
  piped,
  type TarMember,
  tarMembers,
  writeTarFile,
} from '../archive/tar-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { DigestVerifier } from '../layout/blob-store.ts';
import { REF_NAME } from '../layout/layout.ts';
import { decompress } from '../oci/compression.ts';
import { type Digest, hexOf } from '../oci/digest.ts';
import type { Image, Layer } from '../oci/image.ts';
import { compressionOf, isIndexMediaType, MediaType } from '../oci/media-types.ts';
import { StoredImage } from '../oci/memory.ts';
import { DEFAULT_PLATFORM, pickManifest } from '../oci/platform.ts';
import { type Descriptor, IndexSchema, type Platform, parseJson } from '../oci/schema.ts';
import { verifyBytes } from '../registry/verify.ts';

// An OCI image layout in one uncompressed tar: `oci-layout`, `index.json`, `blobs/sha256/…`.
// It is what `pack buildpack package --format file` writes as a `.cnb` file and what skopeo
// calls `oci-archive:`. Written in one streaming pass (no layout directory in between) with the
// normalizing tar writer, so the same image gives the same bytes; read in place, by offset.

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

const dirEntry = (p: string): TarEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0 });

/**
 * writeOciArchive writes `image` as an OCI layout tar at `file` (temp name + rename: a failure
 * leaves nothing). `tag`, when given, becomes the manifest's ref name in index.json.
 */
export async function writeOciArchive(file: string, image: Image, tag?: string): Promise<Digest> {
  const cfg = await image.configFile();
  const rawManifest = await image.rawManifest();
  const digest = await image.digest();
  const platform: Platform = { os: cfg.os, architecture: cfg.architecture };
  if (cfg.variant) platform.variant = cfg.variant;
  const desc: Descriptor = {
    mediaType: await image.mediaType(),
    digest,
    size: rawManifest.length,
    platform,
    ...(tag ? { annotations: { [REF_NAME]: tag } } : {}),
  };
  const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [desc] };
  const blob = (d: string) => `blobs/sha256/${hexOf(d as Digest)}`;
  const entries = new Map<string, TarEntry>();
  for (const e of [
    dirEntry('blobs'),
    dirEntry('blobs/sha256'),
    bytesEntry('oci-layout', Buffer.from(LAYOUT_FILE)),
    bytesEntry('index.json', Buffer.from(JSON.stringify(index))),
    bytesEntry(blob(digest), rawManifest),
    bytesEntry(blob((await image.manifest()).config.digest), await image.rawConfig()),
  ])
    entries.set(e.path, e);
  for (const layer of await image.layers()) {
    const p = blob(await layer.digest());
    if (entries.has(p)) continue; // the same layer twice is stored once
    entries.set(
      p,
      fileEntry(p, await layer.size(), () => layer.compressed()),
    );
  }
  await writeTarFile(file, entries.values());
  return digest;
}

async function indexTar(file: string): Promise<Map<string, TarMember>> {
  if ((await compressionAt(file)) !== 'none')
    throw new UsageError(`${file}: compressed; expected an uncompressed OCI layout tar`);
  return tarMembers(file);
}

/**
 * readOciArchive opens the image in an OCI layout tar (a `.cnb` file) without unpacking it: the
 * manifest is the only one in index.json, or the one tagged `tag`; an index is resolved to
 * `platform` (default DEFAULT_PLATFORM). Blobs are read by offset and verified against their digests.
 */
/** Largest index, manifest or config read into memory (as the registry client and layouts). */
const MAX_METADATA_BYTES = 32 * 1024 * 1024;

export async function readOciArchive(
  file: string,
  opts: { tag?: string; platform?: Platform } = {},
): Promise<Image> {
  let members: Map<string, TarMember>;
  try {
    members = await indexTar(file);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new UsageError(`${file}: not a readable tar (${(e as Error).message})`);
  }
  const range = (m: TarMember): Readable => memberStream(file, m);
  const member = (d: string): TarMember => {
    const m = members.get(`blobs/sha256/${hexOf(d as Digest)}`);
    if (!m) throw new UsageError(`${file}: blob ${d} is missing`);
    return m;
  };
  // index.json, manifests and configs are read whole: bounded, and checked against the digest
  // that named them (the layers are verified as they stream).
  const readBytes = async (m: TarMember, what: string, digest?: string): Promise<Buffer> => {
    if (m.size > MAX_METADATA_BYTES)
      throw new UsageError(`${file}: ${what} is ${m.size} bytes; refusing more than ${MAX_METADATA_BYTES}`);
    const chunks: Buffer[] = [];
    for await (const c of range(m)) chunks.push(c as Buffer);
    const b = Buffer.concat(chunks);
    if (digest !== undefined) verifyBytes(b, digest as Digest, `${file}: ${what}`);
    return b;
  };
  const indexMember = members.get('index.json');
  if (!indexMember || !members.has('oci-layout'))
    throw new UsageError(`${file}: not an OCI layout archive (no oci-layout or index.json)`);
  let index = parseJson(IndexSchema, await readBytes(indexMember, 'index.json'), `index.json of ${file}`);
  let desc: Descriptor | undefined =
    opts.tag !== undefined
      ? index.manifests.find((d) => d.annotations?.[REF_NAME] === opts.tag)
      : index.manifests.length === 1
        ? index.manifests[0]
        : index.manifests.find((d) => d.annotations?.[REF_NAME] === 'latest');
  if (!desc)
    throw new UsageError(
      `${file}: ${opts.tag !== undefined ? `no image tagged "${opts.tag}"` : `${index.manifests.length} images and none tagged "latest"`}`,
    );
  const want = opts.platform ?? DEFAULT_PLATFORM;
  for (let depth = 0; isIndexMediaType(desc.mediaType); depth++) {
    if (depth > 4) throw new KilnError(`${file}: image indexes nested too deep`);
    index = parseJson(
      IndexSchema,
      await readBytes(member(desc.digest), `index ${desc.digest}`, desc.digest),
      `index ${desc.digest} of ${file}`,
    );
    desc = pickManifest(index.manifests, want, file);
  }
  const rawManifest = await readBytes(member(desc.digest), `manifest ${desc.digest}`, desc.digest);
  return new StoredImage({
    rawManifest,
    what: file,
    rawConfig: async () => readBytes(member(configDigestOf(rawManifest)), 'config'),
    layers: async (manifest, config) =>
      manifest.layers.map((d, i): Layer => {
        const m = member(d.digest);
        const compression = compressionOf(d.mediaType);
        const verified = (): Readable =>
          piped(range(m), new DigestVerifier(d.digest as Digest, `${file}: layer ${d.digest}`, d.size));
        return {
          mediaType: d.mediaType,
          digest: async () => d.digest as Digest,
          diffID: async () => config.rootfs.diff_ids[i]! as Digest,
          size: async () => d.size,
          compressed: async () => verified(),
          uncompressed: async () => decompress(verified(), compression),
          ...(d.annotations ? { annotations: d.annotations } : {}),
        };
      }),
  });
}

// StoredImage parses and checks the manifest; the config digest is needed before that.
function configDigestOf(raw: Uint8Array): string {
  return (JSON.parse(Buffer.from(raw).toString('utf8')) as { config: { digest: string } }).config.digest;
}
