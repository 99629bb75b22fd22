import { type Digest, sha256 } from './digest.ts';
import type { Image, ImageIndex } from './image.ts';
import { once } from './lazy.ts';
import { MediaType } from './media-types.ts';
import type { Descriptor, Index, Platform } from './schema.ts';

/** One manifest of an index: an image (platform taken from its config unless given) or a nested index. */
export interface IndexAddendum {
  readonly image?: Image;
  readonly index?: ImageIndex;
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
}

async function platformOf(image: Image): Promise<Platform> {
  const c = await image.configFile();
  const p: Platform = { architecture: c.architecture, os: c.os };
  if (c.variant) p.variant = c.variant;
  if (c['os.version']) p['os.version'] = c['os.version'];
  return p;
}

/**
 * indexFrom builds a multi-platform ImageIndex from images (and nested indexes), in order. The
 * index manifest is computed lazily, once; `image(d)` / `index(d)` return the children by digest.
 */
export function indexFrom(
  entries: readonly IndexAddendum[],
  opts: { annotations?: Readonly<Record<string, string>>; format?: 'oci' | 'docker' } = {},
): ImageIndex {
  const mediaType = opts.format === 'docker' ? MediaType.DockerManifestList : MediaType.OciIndex;
  const manifest = once(async (): Promise<Index> => {
    const manifests: Descriptor[] = [];
    for (const e of entries) {
      const child = e.image ?? e.index;
      if (!child || (e.image && e.index))
        throw new TypeError('indexFrom: each entry needs exactly one of image or index');
      const raw = await child.rawManifest();
      const d: Descriptor = { mediaType: await child.mediaType(), digest: sha256(raw), size: raw.length };
      const platform = e.platform ?? (e.image ? await platformOf(e.image) : undefined);
      if (platform) d.platform = platform;
      if (e.annotations && Object.keys(e.annotations).length > 0) d.annotations = { ...e.annotations };
      manifests.push(d);
    }
    const idx: Index = { schemaVersion: 2, mediaType, manifests };
    if (opts.annotations && Object.keys(opts.annotations).length > 0)
      idx.annotations = { ...opts.annotations };
    return idx;
  });
  const raw = once(async () => Buffer.from(JSON.stringify(await manifest())));
  const child = async (d: Digest) => {
    for (const e of entries) {
      const c = e.image ?? e.index!;
      if ((await c.digest()) === d) return e;
    }
    throw new Error(`index has no manifest ${d}`);
  };
  return {
    mediaType: async () => mediaType,
    rawManifest: raw,
    indexManifest: manifest,
    digest: async () => sha256(await raw()),
    async image(d) {
      const e = await child(d);
      if (!e.image) throw new Error(`manifest ${d} of the index is an index, not an image`);
      return e.image;
    },
    async index(d) {
      const e = await child(d);
      if (!e.index) throw new Error(`manifest ${d} of the index is an image, not an index`);
      return e.index;
    },
  };
}
