import { KilnError } from '../internal/errors.ts';
import { type Digest, sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { bytesLayer } from '../oci/memory.ts';
import type { ConfigFile } from '../oci/schema.ts';
import type { Referrer } from '../transport/image-target.ts';

/**
 * referrerImage is a listed referrer as an Image any location can write, byte for byte (its
 * manifest bytes are the stored ones, so the digest and the signatures over it stay valid). Its
 * blobs are read now: referrers are small, and their readers bound them.
 */
export async function referrerImage(r: Referrer): Promise<Image> {
  const digest = sha256(r.raw);
  if (digest !== r.descriptor.digest)
    throw new KilnError(`referrer ${r.descriptor.digest}: its manifest bytes hash to ${digest}`);
  const m = r.manifest;
  const rawConfig = await r.blob(m.config);
  const layers = await Promise.all(
    m.layers.map(async (l) => {
      const data = await r.blob(l);
      return bytesLayer({
        blob: data,
        tar: data,
        mediaType: l.mediaType,
        ...(l.annotations ? { annotations: l.annotations } : {}),
      });
    }),
  );
  return {
    mediaType: async () => r.descriptor.mediaType,
    rawManifest: async () => r.raw,
    manifest: async () => m,
    digest: async () => digest as Digest,
    rawConfig: async () => rawConfig,
    configFile: async () => JSON.parse(new TextDecoder().decode(rawConfig)) as ConfigFile,
    layers: async () => layers,
  };
}
