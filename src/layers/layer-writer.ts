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

function compressor(compression: 'gzip' | 'zstd', level: number | undefined): Transform {
  // Big chunks keep the per-call overhead of the thread pool small.
  const chunkSize = 1 << 20;
  // One deflate stream, as every earlier kiln wrote it: the layer's bytes (and so the digests of
  // images and caches already pushed) stay what they were. Header: mtime 0, OS 3, fixed.
  if (compression === 'gzip') return zlib.createGzip({ level: level ?? 6, chunkSize });
  if (!hasZstd) throw new Error('zstd layers need Node.js >= 22.15 (node:zlib zstd)');
  return zlib.createZstdCompress({
    chunkSize,
    params: { [zlib.constants.ZSTD_c_compressionLevel]: level ?? 3 },
  });
}

/** Bytes of compressed output queued for the disk before the compressor is paused. */
const APPEND_QUEUE = 4 << 20;

/**
 * BlobAppender appends buffers to `fd` on the thread pool, in order, gathering what queued up
 * behind a write into one writev. push() says false once APPEND_QUEUE bytes are queued; `drained`
 * runs when the queue is below half of that again. A failed write is reported to `failed` once
 * (and fails flush()); what is pushed after it is dropped.
 */
class BlobAppender {
  readonly #fd: number;
  readonly #drained: () => void;
  readonly #failed: (e: Error) => void;
  #queue: Buffer[] = [];
  #queued = 0;
  #position = 0;
  #writing = false;
  #full = false;
  #error: Error | undefined;
  #idle: (() => void)[] = [];

  constructor(fd: number, drained: () => void, failed: (e: Error) => void) {
    this.#fd = fd;
    this.#drained = drained;
    this.#failed = failed;
  }

  push(b: Buffer): boolean {
    if (this.#error) return true;
    this.#queue.push(b);
    this.#queued += b.length;
    if (!this.#writing) this.#next();
    if (this.#queued >= APPEND_QUEUE) this.#full = true;
    return !this.#full;
  }

  /** Resolves once everything pushed is written (or rejects with the first write error). */
  flush(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (!this.#writing) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idle.push(resolve)).then(() => {
      if (this.#error) throw this.#error;
    });
  }

  #next(): void {
    if (this.#error || this.#queue.length === 0) {
      this.#writing = false;
      for (const f of this.#idle.splice(0)) f();
      return;
    }
    this.#writing = true;
    const bufs = this.#queue;
    this.#queue = [];
    fs.writev(this.#fd, bufs, this.#position, (e, n) => {
      if (e) {
        this.#error = e;
        this.#queue = [];
        this.#queued = 0;
        this.#failed(e);
      } else {
        this.#position += n;
        this.#queued -= n;
        // A short write: what is left goes first in the next one.
        let skip = n;
        const rest: Buffer[] = [];
        for (const b of bufs) {
          if (skip >= b.length) skip -= b.length;
          else {
            rest.push(b.subarray(skip));
            skip = 0;
          }
        }
        this.#queue = [...rest, ...this.#queue];
      }
      if (this.#full && this.#queued < APPEND_QUEUE / 2) {
        this.#full = false;
        this.#drained();
      }
      this.#next();
    });
  }
}

/**
 * Where the tar goes: `write` resolves once the buffer may be reused (packTar reuses it), `end`
 * once every byte is on disk, `abort` stops whatever is still running.
 */
interface LayerSink {
  write(b: Buffer): Promise<void>;
  end(): Promise<void>;
  abort(e: Error): Promise<void>;
}

/**
 * The compressed output (fresh memory, never reused) is written on the thread pool, so that a
 * write the kernel holds back (dirty-page throttling on a busy disk) stalls neither this thread
 * nor the compressor it feeds. Past APPEND_QUEUE bytes queued, the compressor is paused until the
 * disk catches up. `count` sees every output byte, in order (the blob's digest and size).
 */
function compressedSink(
  fd: number,
  compression: 'gzip' | 'zstd',
  opts: WriteLayerOptions,
  count: (b: Buffer) => void,
): LayerSink {
  const comp = compressor(compression, opts.level);
  const a = new BlobAppender(
    fd,
    () => comp.resume(),
    (e) => comp.destroy(e),
  );
  comp.on('data', (b: Buffer) => {
    count(b);
    if (!a.push(b)) comp.pause();
  });
  const done = finished(comp).then(() => a.flush());
  done.catch(() => {});
  return {
    // The compressor's write callback fires once it consumed its input.
    write: (b) => new Promise<void>((resolve, reject) => comp.write(b, (e) => (e ? reject(e) : resolve()))),
    end: () => {
      comp.end();
      return done;
    },
    abort: async (e) => {
      comp.destroy(e);
      await done.catch(() => {});
      await a.flush().catch(() => {});
    },
  };
}

/**
 * writeLayer streams `entries` through the normalizing tar writer and the compressor into the
 * blob store, hashing the tar (diffID) and the blob (digest) and counting both sizes in the same
 * single pass. Nothing is buffered beyond stream chunks; a failure leaves no file behind.
 */
export function writeLayer(entries: Iterable<TarEntry>, opts: WriteLayerOptions): Promise<StoredLayer> {
  return storeLayer(
    (write) => packTar(entries, write, opts.epoch === undefined ? {} : { epoch: opts.epoch }),
    opts,
  );
}

/**
 * writeTarLayer stores a tar already in memory (`chunks`, whose size and digest an earlier pass
 * over the same bytes computed) as a layer blob: compressed and hashed, never tarred again.
 */
export function writeTarLayer(
  chunks: readonly Uint8Array[],
  tar: { readonly diffID: Digest; readonly size: number },
  opts: WriteLayerOptions,
): Promise<StoredLayer> {
  return storeLayer(async (write) => {
    for (const c of chunks) await write(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    return tar;
  }, opts);
}

/** storeLayer sends the tar `pack` writes through the compressor into the blob store. */
async function storeLayer(
  pack: (write: (b: Buffer) => Promise<void>) => Promise<{ readonly diffID: Digest; readonly size: number }>,
  opts: WriteLayerOptions,
): Promise<StoredLayer> {
  const compression = opts.compression ?? 'gzip';
  const temp = await opts.store.tempPath();
  const fd = fs.openSync(temp, 'wx', 0o644);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    fs.closeSync(fd);
  };
  const outHash = createHash('sha256');
  let outSize = 0;
  const count = (b: Buffer) => {
    outHash.update(b);
    outSize += b.length;
  };
  let sink: LayerSink | undefined;
  try {
    // An uncompressed buffer is written out before `write` returns.
    sink =
      compression === 'none'
        ? {
            write: async (b) => {
              count(b);
              for (let o = 0; o < b.length; ) o += fs.writeSync(fd, b, o, b.length - o);
            },
            end: async () => {},
            abort: async () => {},
          }
        : compressedSink(fd, compression, opts, count);
    const tar = await pack(sink.write);
    await sink.end();
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
    await sink?.abort(e as Error);
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
