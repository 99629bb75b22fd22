import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import { decompressor } from './compression.ts';
import { type Digest, sha256 } from './digest.ts';
import type { Image } from './image.ts';
import { compressionOf, isImageMediaType, MediaType } from './media-types.ts';
import { ConfigFileSchema, ManifestSchema, parseJson } from './schema.ts';

/** Digest and byte count of everything a stream yields. */
export async function digestStream(s: Readable): Promise<{ digest: Digest; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of s) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/**
 * validateImage re-derives every digest, size and diffID of `image` by reading its bytes and
 * throws one Error listing every disagreement. Every source and sink is tested with it.
 */
export async function validateImage(image: Image): Promise<void> {
  const problems: string[] = [];
  const raw = await image.rawManifest();
  const manifest = parseJson(ManifestSchema, raw, 'manifest');
  const mt = await image.mediaType();
  if (!isImageMediaType(mt)) problems.push(`manifest media type "${mt}" is not an image manifest type`);
  if (manifest.mediaType !== undefined && manifest.mediaType !== mt)
    problems.push(`manifest mediaType field "${manifest.mediaType}" differs from mediaType() "${mt}"`);
  if (sha256(raw) !== (await image.digest())) problems.push('digest() is not the sha256 of rawManifest()');
  if (!isDeepStrictEqual({ ...(await image.manifest()) }, { ...manifest }))
    problems.push('manifest() differs from the parsed rawManifest()');
  const wantConfigMt = mt === MediaType.DockerManifest ? MediaType.DockerConfig : MediaType.OciConfig;
  if (manifest.config.mediaType !== wantConfigMt)
    problems.push(`config media type "${manifest.config.mediaType}" does not go with manifest type "${mt}"`);

  const rawConfig = await image.rawConfig();
  if (sha256(rawConfig) !== manifest.config.digest)
    problems.push(
      `config digest: manifest says ${manifest.config.digest}, bytes hash to ${sha256(rawConfig)}`,
    );
  if (rawConfig.length !== manifest.config.size)
    problems.push(`config size: manifest says ${manifest.config.size}, bytes are ${rawConfig.length}`);
  const config = parseJson(ConfigFileSchema, rawConfig, 'config');
  if (!isDeepStrictEqual({ ...(await image.configFile()) }, { ...config }))
    problems.push('configFile() differs from the parsed rawConfig()');

  const layers = await image.layers();
  const diffIDs = config.rootfs.diff_ids;
  if (layers.length !== manifest.layers.length || layers.length !== diffIDs.length)
    problems.push(
      `layer counts differ: layers() ${layers.length}, manifest ${manifest.layers.length}, diff_ids ${diffIDs.length}`,
    );
  const nonEmptyHistory = config.history?.filter((h) => !h.empty_layer).length;
  if (nonEmptyHistory !== undefined && config.history!.length > 0 && nonEmptyHistory !== diffIDs.length)
    problems.push(`history has ${nonEmptyHistory} non-empty entries for ${diffIDs.length} layers`);

  for (let i = 0; i < Math.min(layers.length, manifest.layers.length); i++) {
    const layer = layers[i]!;
    const desc = manifest.layers[i]!;
    const at = `layer ${i} (${desc.digest})`;
    if (layer.mediaType !== desc.mediaType)
      problems.push(`${at}: media type ${layer.mediaType}, manifest says ${desc.mediaType}`);
    if ((await layer.digest()) !== desc.digest) problems.push(`${at}: digest() is ${await layer.digest()}`);
    if ((await layer.size()) !== desc.size)
      problems.push(`${at}: size() is ${await layer.size()}, manifest says ${desc.size}`);
    const diffID = await layer.diffID();
    if (diffIDs[i] !== undefined && diffID !== diffIDs[i])
      problems.push(`${at}: diffID() is ${diffID}, config says ${diffIDs[i]}`);

    const comp = await digestStream(await layer.compressed());
    if (comp.digest !== desc.digest) problems.push(`${at}: compressed bytes hash to ${comp.digest}`);
    if (comp.size !== desc.size)
      problems.push(`${at}: compressed bytes are ${comp.size} long, manifest says ${desc.size}`);
    const decompressed = (await layer.compressed()).pipe(decompressor(compressionOf(desc.mediaType)));
    const un = await digestStream(decompressed);
    if (un.digest !== diffIDs[i])
      problems.push(`${at}: decompressed bytes hash to ${un.digest}, config says ${diffIDs[i]}`);
    const direct = await digestStream(await layer.uncompressed());
    if (direct.digest !== diffID)
      problems.push(`${at}: uncompressed() hashes to ${direct.digest}, diffID() is ${diffID}`);
  }
  if (problems.length > 0) throw new Error(`invalid image:\n  ${problems.join('\n  ')}`);
}
