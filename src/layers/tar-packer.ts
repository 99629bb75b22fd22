import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Digest } from '../oci/digest.ts';
import { DEFAULT_EPOCH } from '../oci/memory.ts';
import { entryHeader, SOURCE_OPEN_FLAGS, sortEntries, type TarEntry, type TarOptions } from './tar-writer.ts';
import { ThreadHasher } from './thread-hasher.ts';

// The layer writer's hot path. It writes the same bytes as tarChunks() (same sorting, same
// headers) but with almost no garbage: the tar is assembled in a ring of a few 1 MiB buffers
// that are handed to the consumer and reused once it says it is done with them. Files with a
// `source` path are read with plain synchronous calls straight into those buffers, as tar does:
// for files in the page cache an open/fstat/read/close costs a few microseconds, while the same
// calls through the thread pool cost a promise and a thread hand-off each, and the main thread's
// CPU is what the compressor thread competes with. The only awaits left are one per buffer
// handed on. Memory stays flat whatever the layer size.

const CHUNK = 1 << 20;
const RING = 4;
/**
 * From this much file content on, the tar is hashed on a worker thread (see ThreadHasher): the
 * thread's start-up (some 20 ms) is then a small part of the time, and this thread keeps up
 * with a zstd compressor.
 */
export const THREAD_HASH_BYTES = 64 << 20;
/** Buffer size then: fewer, larger hand-offs to the compressor and the hashing thread. */
const THREAD_CHUNK = 2 << 20;

/** Result of packTar: the uncompressed tar's size and digest (the diffID). */
export interface PackResult {
  readonly size: number;
  readonly diffID: Digest;
}

function changed(path: string, size: number, got: number | string): Error {
  return new Error(`file "${path}" changed while being archived: expected ${size} bytes, read ${got}`);
}

/**
 * Opens the regular file at `source` without following links (see SOURCE_OPEN_FLAGS), checks
 * that it still has the size the walk saw, and hands the descriptor to `read`.
 */
async function withSource<T>(
  source: string,
  path: string,
  size: number,
  read: (fd: number) => T | Promise<T>,
): Promise<T> {
  const fd = fs.openSync(source, SOURCE_OPEN_FLAGS);
  try {
    const actual = fs.fstatSync(fd).size;
    if (actual !== size) throw changed(path, size, actual);
    return await read(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * packTar writes the normalized tar of `entries` through `write`, which must resolve once the
 * buffer it was given may be reused (a Writable's write callback). Returns the tar's size and
 * digest, computed in the same pass.
 */
export async function packTar(
  entries: Iterable<TarEntry>,
  write: (chunk: Buffer) => Promise<void>,
  opts: TarOptions = {},
): Promise<PackResult> {
  const epoch = opts.epoch ?? DEFAULT_EPOCH;
  if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`invalid tar epoch ${epoch}`);
  const sorted = sortEntries(entries);
  let content = 0;
  for (const { entry } of sorted) content += entry.type === 'file' ? (entry.size ?? 0) : 0;
  const hasher = content >= THREAD_HASH_BYTES ? new ThreadHasher() : undefined;
  try {
    return await packSorted(sorted, write, epoch, hasher, hasher ? THREAD_CHUNK : CHUNK);
  } finally {
    await hasher?.close();
  }
}

async function packSorted(
  sorted: { entry: TarEntry; path: string }[],
  write: (chunk: Buffer) => Promise<void>,
  epoch: number,
  hasher: ThreadHasher | undefined,
  chunkSize: number,
): Promise<PackResult> {
  const hash = hasher ? undefined : createHash('sha256');
  let total = 0;
  const ring = Array.from({ length: RING }, () => hasher?.buffer(chunkSize) ?? Buffer.allocUnsafe(chunkSize));
  const busy: (Promise<unknown> | undefined)[] = new Array(RING).fill(undefined);
  let slot = 0;
  let cur = ring[0]!;
  let off = 0;

  const flush = async (): Promise<void> => {
    if (off === 0) return;
    const chunk = cur.subarray(0, off);
    hash?.update(chunk);
    total += off;
    // The buffer is free again once both the consumer and the hashing thread are done with it.
    const p = hasher ? Promise.all([write(chunk), hasher.update(chunk)]) : write(chunk);
    p.catch(() => {}); // awaited below or at the end
    busy[slot] = p;
    slot = (slot + 1) % RING;
    if (busy[slot]) await busy[slot];
    cur = ring[slot]!;
    off = 0;
  };
  const put = async (b: Uint8Array): Promise<void> => {
    let p = 0;
    while (p < b.length) {
      const n = Math.min(b.length - p, chunkSize - off);
      cur.set(b.subarray(p, p + n), off);
      off += n;
      p += n;
      if (off === chunkSize) await flush();
    }
  };
  const zeros = async (n: number): Promise<void> => {
    while (n > 0) {
      const k = Math.min(n, chunkSize - off);
      cur.fill(0, off, off + k);
      off += k;
      n -= k;
      if (off === chunkSize) await flush();
    }
  };

  // Reads `size` bytes of `fd` into the ring, flushing each full buffer. A file that fits in
  // what is left of the buffer (most files) waits for nothing.
  const readAll = async (fd: number, path: string, size: number): Promise<void> => {
    let pos = 0;
    while (pos < size) {
      const n = fs.readSync(fd, cur, off, Math.min(size - pos, chunkSize - off), pos);
      if (n === 0) throw changed(path, size, pos);
      off += n;
      pos += n;
      if (off === chunkSize) await flush();
    }
  };

  for (let i = 0; i < sorted.length; i++) {
    const { entry, path } = sorted[i]!;
    await put(entryHeader(entry, path, epoch));
    if (entry.type !== 'file') continue;
    const size = entry.size!;
    if (entry.source && size > 0) {
      await withSource(entry.source, path, size, (fd) => readAll(fd, path, size));
    } else if (entry.read) {
      const b = await entry.read();
      if (b.length !== size) throw changed(path, size, b.length);
      await put(b);
    } else if (entry.open) {
      const stream = await entry.open();
      let read = 0;
      try {
        for await (const chunk of stream) {
          read += (chunk as Buffer).length;
          if (read > size) throw changed(path, size, 'more');
          await put(chunk as Buffer);
        }
      } finally {
        stream.destroy();
      }
      if (read !== size) throw changed(path, size, read);
    } else if (size !== 0) throw changed(path, size, 0);
    const pad = size % 512;
    if (pad) await zeros(512 - pad);
  }
  await zeros(1024);
  await flush();
  await Promise.all(busy);
  const hex = hasher ? await hasher.digest() : hash!.digest('hex');
  return { size: total, diffID: `sha256:${hex}` };
}
