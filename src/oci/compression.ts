import type { Readable, Transform } from 'node:stream';
import { PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import type { Compression } from './media-types.ts';

/** hasZstd tells whether this Node.js has zstd in node:zlib (>= 22.15 / 23.8). */
export const hasZstd: boolean =
  typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';

/**
 * decompressor returns a Transform that undoes `c` ('none' passes bytes through unchanged).
 * Layer blobs can be large, so this is always a stream, never a buffer.
 */
export function decompressor(c: Compression): Transform {
  // 256 KiB output chunks (zlib's default is 16 KiB): each chunk is a thread-pool round trip.
  // A 4 MiB readable buffer lets decompression run ahead while the consumer writes files
  // (node:zlib passes stream options through; its types do not list them).
  const opts = { chunkSize: 256 * 1024, readableHighWaterMark: 4 << 20 };
  switch (c) {
    case 'gzip':
      return zlib.createGunzip(opts);
    case 'zstd':
      if (!hasZstd) throw new Error('zstd layers need Node.js >= 22.15 (node:zlib zstd)');
      return zlib.createZstdDecompress(opts);
    case 'none':
      return new PassThrough();
  }
}

/**
 * decompress streams `src` through decompressor(`c`). A failing `src` fails the result too
 * (pipe alone would leave the reader waiting forever).
 */
export function decompress(src: Readable, c: Compression): Readable {
  const d = decompressor(c);
  src.on('error', (e: Error) => d.destroy(e));
  return src.pipe(d);
}

/** compressionOfMagic detects gzip or zstd from the first bytes of a blob ('none' otherwise). */
export function compressionOfMagic(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd)
    return 'zstd';
  return 'none';
}
