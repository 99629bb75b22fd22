import type { Readable } from 'node:stream';
import { decompress } from '../oci/compression.ts';
import type { Digest } from '../oci/digest.ts';
import type { Layer } from '../oci/image.ts';
import { once } from '../oci/lazy.ts';
import { compressionOf } from '../oci/media-types.ts';
import { digestStream } from '../oci/validate.ts';
import type { BlobStore } from './blob-store.ts';

/** Everything known about a stored layer blob. */
export interface LayerInfo {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly diffID: Digest;
  readonly uncompressedSize?: number;
}

/**
 * StoredLayer is a Layer backed by a blob in a BlobStore. Reads verify the digest (the store may
 * be shared with other tools); an unknown diffID is derived by decompressing, once.
 */
export class StoredLayer implements Layer {
  readonly mediaType: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly store: BlobStore;
  readonly #digest: Digest;
  readonly #size: () => Promise<number>;
  readonly #diffID: () => Promise<Digest>;
  /** Size of the uncompressed tar when known (set by writeLayer). */
  readonly uncompressedSize: number | undefined;

  constructor(
    store: BlobStore,
    known: { mediaType: string; digest: Digest; size?: number; diffID?: Digest; uncompressedSize?: number },
    annotations?: Readonly<Record<string, string>>,
  ) {
    this.store = store;
    this.mediaType = known.mediaType;
    this.#digest = known.digest;
    this.uncompressedSize = known.uncompressedSize;
    if (annotations && Object.keys(annotations).length > 0) this.annotations = { ...annotations };
    const size = known.size;
    this.#size = size !== undefined ? async () => size : once(() => store.size(known.digest));
    const diffID = known.diffID;
    this.#diffID =
      diffID !== undefined
        ? async () => diffID
        : once(async () => (await digestStream(await this.uncompressed())).digest);
  }

  async digest(): Promise<Digest> {
    return this.#digest;
  }
  diffID(): Promise<Digest> {
    return this.#diffID();
  }
  size(): Promise<number> {
    return this.#size();
  }
  compressed(opts: { readonly chunkSize?: number } = {}): Promise<Readable> {
    return this.store.open(this.#digest, opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {});
  }
  async uncompressed(): Promise<Readable> {
    return decompress(await this.compressed(), compressionOf(this.mediaType));
  }
  /** path of the blob on disk. */
  get path(): string {
    return this.store.path(this.#digest);
  }
  /** info returns what is known without reading the blob (diffID is derived when unknown). */
  async info(): Promise<LayerInfo> {
    const [size, diffID] = await Promise.all([this.size(), this.diffID()]);
    const i: LayerInfo = { mediaType: this.mediaType, digest: this.#digest, size, diffID };
    return this.uncompressedSize !== undefined ? { ...i, uncompressedSize: this.uncompressedSize } : i;
  }
}
