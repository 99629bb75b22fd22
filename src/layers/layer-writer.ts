import { createHash } from 'node:crypto';
import fs, { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import zlib from 'node:zlib';
import { StoredLayer } from '../layout/blob-layer.ts';
import type { BlobStore } from '../layout/blob-store.ts';
import { hasZstd } from '../oci/compression.ts';
import type { Digest } from '../oci/digest.ts';
import { type Compression, layerMediaType } from '../oci/media-types.ts';
import { packTar } from './tar-packer.ts';
import type { TarEntry } from './tar-writer.ts';
import { type WalkOptions, walk } from './walk.ts';

/** Options of writeLayer. */
export interface WriteLayerOptions {
  /** Where the blob goes (temp file + rename). */
  readonly store: BlobStore;
  /** Default 'gzip'. */
  readonly compression?: Compression;
  /** gzip 1-9 (default 6), zstd 1-19 (default 3). */
  readonly level?: number;
  /** mtime of every entry (SOURCE_DATE_EPOCH as resolved by the CLI; default 1980-01-01T00:00:01Z). */
  readonly epoch?: number;
  /** Annotations for the layer's manifest descriptor. */
  readonly annotations?: Readonly<Record<string, string>>;
}

function compressor(c: Compression, level: number | undefined): Transform | undefined {
  // Big chunks keep the per-call overhead of the thread pool small.
  const chunkSize = 1 << 20;
  if (c === 'gzip') return zlib.createGzip({ level: level ?? 6, chunkSize }); // header: mtime 0, OS 3, fixed
  if (c === 'zstd') {
    if (!hasZstd) throw new Error('zstd layers need Node.js >= 22.15 (node:zlib zstd)');
    return zlib.createZstdCompress({
      chunkSize,
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level ?? 3 },
    });
  }
  return undefined;
}

/**
 * writeLayer streams `entries` through the normalizing tar writer and the compressor into the
 * blob store, hashing the tar (diffID) and the blob (digest) and counting both sizes in the same
 * single pass. Nothing is buffered beyond stream chunks; a failure leaves no file behind.
 */
export async function writeLayer(entries: Iterable<TarEntry>, opts: WriteLayerOptions): Promise<StoredLayer> {
  const compression = opts.compression ?? 'gzip';
  const comp = compressor(compression, opts.level);
  const temp = await opts.store.tempPath();
  // The blob is appended with synchronous writes as the compressor hands out its output: to
  // the page cache these cost microseconds, where a write stream adds a thread hand-off and a
  // pipeline of transforms per chunk, all on the thread that also feeds the compressor.
  const fd = fs.openSync(temp, 'wx', 0o644);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    fs.closeSync(fd);
  };
  const outHash = createHash('sha256');
  let outSize = 0;
  const append = (b: Uint8Array) => {
    outHash.update(b);
    outSize += b.length;
    for (let o = 0; o < b.length; ) o += fs.writeSync(fd, b, o, b.length - o);
  };
  // packTar reuses each buffer once `write` resolves, so `write` must resolve only when the
  // bytes are no longer referenced: a compressor's write callback fires once it consumed its
  // input (its output is fresh memory); an append has copied them once it returns.
  let done: Promise<void> = Promise.resolve();
  let write: (b: Buffer) => Promise<void>;
  if (comp) {
    comp.on('data', (b: Buffer) => {
      try {
        append(b);
      } catch (e) {
        comp.destroy(e as Error);
      }
    });
    done = finished(comp);
    done.catch(() => {});
    write = (b) => new Promise<void>((resolve, reject) => comp.write(b, (e) => (e ? reject(e) : resolve())));
  } else {
    write = async (b) => append(b);
  }
  try {
    const tar = await packTar(entries, write, opts.epoch === undefined ? {} : { epoch: opts.epoch });
    comp?.end();
    await done;
    close();
    const digest: Digest = `sha256:${outHash.digest('hex')}`;
    await opts.store.commit(temp, digest);
    return new StoredLayer(
      opts.store,
      {
        mediaType: layerMediaType(compression),
        digest,
        size: outSize,
        diffID: tar.diffID,
        uncompressedSize: tar.size,
      },
      opts.annotations,
    );
  } catch (e) {
    comp?.destroy(e as Error);
    await done.catch(() => {});
    close();
    await fsp.rm(temp, { force: true });
    throw e;
  }
}

/** layerFromDirectory walks `dir` (see walk) and writes the result as one layer. */
export async function layerFromDirectory(
  dir: string,
  opts: WriteLayerOptions & WalkOptions,
): Promise<StoredLayer> {
  return writeLayer(await walk(dir, opts), opts);
}

/**
 * layerFromFile stores an existing layer blob (a file) in the store without recompressing it.
 * Known digests skip the work they describe: a known `digest` already in the store is not read;
 * a known `diffID` is trusted (keyed caches), otherwise it is derived when first asked for.
 */
export async function layerFromFile(
  blobPath: string,
  mediaType: string,
  store: BlobStore,
  known: { digest?: Digest; diffID?: Digest; annotations?: Readonly<Record<string, string>> } = {},
): Promise<StoredLayer> {
  let digest: Digest;
  let size: number;
  if (known.digest && (await store.has(known.digest))) {
    digest = known.digest;
    size = await store.size(digest);
  } else {
    const r = await store.put(createReadStream(blobPath), known.digest);
    digest = r.digest;
    size = r.size;
  }
  const k: { mediaType: string; digest: Digest; size: number; diffID?: Digest } = { mediaType, digest, size };
  if (known.diffID) k.diffID = known.diffID;
  return new StoredLayer(store, k, known.annotations);
}
