import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { StoredLayer } from '../layout/blob-layer.ts';
import { type BlobStore, HashCounter } from '../layout/blob-store.ts';
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
  const sink = createWriteStream(temp, { mode: 0o644, highWaterMark: 1 << 20 });
  const outHash = createHash('sha256');
  let outSize = 0;
  let digestHex = '';
  // packTar reuses each buffer once `write` resolves, so `write` must resolve only when the
  // bytes are no longer referenced: a compressor's write callback fires once it consumed its
  // input (its output is fresh memory); a file stream's fires once the bytes are written.
  let done: Promise<void>;
  let head: Writable;
  if (comp) {
    const out = new HashCounter();
    done = pipeline(comp, out, sink).then(() => {
      digestHex = out.hash.digest('hex');
      outSize = out.count;
    });
    head = comp;
  } else {
    done = new Promise<void>((resolve, reject) => {
      sink.on('finish', resolve);
      sink.on('error', reject);
    });
    head = sink;
  }
  // Observed here so an early failure is not an unhandled rejection; it is awaited below.
  done.catch(() => {});
  const pass = !comp;
  const write = (b: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (pass) {
        outHash.update(b);
        outSize += b.length;
      }
      head.write(b, (e?: Error | null) => (e ? reject(e) : resolve()));
    });
  try {
    const tar = await packTar(entries, write, opts.epoch === undefined ? {} : { epoch: opts.epoch });
    head.end();
    await done;
    const digest: Digest = `sha256:${comp ? digestHex : outHash.digest('hex')}`;
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
    head.destroy(e as Error);
    // The error that destroyed the stream is the one rethrown below.
    await done.catch(() => {});
    await fs.rm(temp, { force: true });
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
