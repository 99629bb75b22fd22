import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Digest } from '../oci/digest.ts';
import { DEFAULT_EPOCH } from '../oci/memory.ts';
import { entryHeader, SOURCE_OPEN_FLAGS, sortEntries, type TarEntry, type TarOptions } from './tar-writer.ts';

// The layer writer's hot path. It writes the same bytes as tarChunks() (same sorting, same
// headers) but with almost no garbage: the tar is assembled in a ring of a few 1 MiB buffers
// that are handed to the consumer and reused once it says it is done with them; files with a
// `source` path are read straight into those buffers; small files are read ahead (several
// in flight, so their open/read/close round trips overlap) into one reusable arena. Memory
// stays flat whatever the layer size, and the garbage collector has little to do.

const CHUNK = 1 << 20;
const RING = 3;
const ARENA = 8 << 20;
const AHEAD = 32;
const SMALL = 256 * 1024;

/** Result of packTar: the uncompressed tar's size and digest (the diffID). */
export interface PackResult {
  readonly size: number;
  readonly diffID: Digest;
}

/** A circular arena with in-order release, for read-ahead of small files. */
class Arena {
  readonly buf = Buffer.allocUnsafe(ARENA);
  #head = 0;
  #used = 0;
  readonly #queue: { size: number; waste: number }[] = [];
  alloc(size: number): number | undefined {
    if (this.#queue.length === 0) {
      this.#head = 0;
      this.#used = 0;
    }
    let off = this.#head;
    let waste = 0;
    if (off + size > ARENA) {
      waste = ARENA - off;
      off = 0;
    }
    if (this.#used + waste + size > ARENA) return undefined;
    this.#used += waste + size;
    this.#head = off + size;
    this.#queue.push({ size, waste });
    return off;
  }
  release(): void {
    const r = this.#queue.shift()!;
    this.#used -= r.size + r.waste;
  }
}

function changed(path: string, size: number, got: number | string): Error {
  return new Error(`file "${path}" changed while being archived: expected ${size} bytes, read ${got}`);
}

// Plain fd calls rather than FileHandle: thousands of small files make FileHandle objects
// (and their finalizers) a measurable share of the garbage collector's work.
// The walk lstat'ed each entry as a regular file; opening with O_NOFOLLOW|O_NONBLOCK keeps a
// file swapped for a link (or a FIFO) since then from being followed (or blocking) on the host.
const openFd = (p: string) =>
  new Promise<number>((res, rej) => fs.open(p, SOURCE_OPEN_FLAGS, (e, fd) => (e ? rej(e) : res(fd))));
const sizeOfFd = (fd: number) =>
  new Promise<number>((res, rej) => fs.fstat(fd, (e, st) => (e ? rej(e) : res(st.size))));
const readFd = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((res, rej) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? rej(e) : res(n))));
const closeFd = (fd: number) => new Promise<void>((res) => fs.close(fd, () => res()));

/** Reads a whole small file at `source` into `buf` at `off`, checking its size. */
async function readSmall(
  source: string,
  path: string,
  size: number,
  buf: Buffer,
  off: number,
): Promise<void> {
  const fd = await openFd(source);
  try {
    const actual = await sizeOfFd(fd);
    if (actual !== size) throw changed(path, size, actual);
    let pos = 0;
    while (pos < size) {
      const n = await readFd(fd, buf, off + pos, size - pos, pos);
      if (n === 0) throw changed(path, size, pos);
      pos += n;
    }
  } finally {
    await closeFd(fd);
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
  const hash = createHash('sha256');
  let total = 0;
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafe(CHUNK));
  const busy: (Promise<void> | undefined)[] = new Array(RING).fill(undefined);
  let slot = 0;
  let cur = ring[0]!;
  let off = 0;

  const flush = async (): Promise<void> => {
    if (off === 0) return;
    const chunk = cur.subarray(0, off);
    hash.update(chunk);
    total += off;
    const p = write(chunk);
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
      const n = Math.min(b.length - p, CHUNK - off);
      cur.set(b.subarray(p, p + n), off);
      off += n;
      p += n;
      if (off === CHUNK) await flush();
    }
  };
  const zeros = async (n: number): Promise<void> => {
    while (n > 0) {
      const k = Math.min(n, CHUNK - off);
      cur.fill(0, off, off + k);
      off += k;
      n -= k;
      if (off === CHUNK) await flush();
    }
  };

  // Read-ahead of small files into the arena, in entry order.
  const arena = new Arena();
  const ahead = new Map<number, { off: number; done: Promise<void> }>();
  let next = 0;
  const prefetch = (from: number): void => {
    if (next < from) next = from;
    while (next < sorted.length && next < from + AHEAD) {
      const { entry, path } = sorted[next]!;
      if (entry.type === 'file' && entry.source && (entry.size ?? 0) <= SMALL && (entry.size ?? 0) > 0) {
        const at = arena.alloc(entry.size!);
        if (at === undefined) return; // arena full: continue once earlier entries are consumed
        const done = readSmall(entry.source, path, entry.size!, arena.buf, at);
        done.catch(() => {});
        ahead.set(next, { off: at, done });
      }
      next++;
    }
  };

  try {
    for (let i = 0; i < sorted.length; i++) {
      const { entry, path } = sorted[i]!;
      prefetch(i);
      await put(entryHeader(entry, path, epoch));
      if (entry.type !== 'file') continue;
      const size = entry.size!;
      const pre = ahead.get(i);
      if (pre) {
        ahead.delete(i);
        await pre.done;
        await put(arena.buf.subarray(pre.off, pre.off + size));
        arena.release();
      } else if (entry.source && size > 0) {
        const fd = await openFd(entry.source);
        try {
          const actual = await sizeOfFd(fd);
          if (actual !== size) throw changed(path, size, actual);
          let pos = 0;
          while (pos < size) {
            const n = await readFd(fd, cur, off, Math.min(size - pos, CHUNK - off), pos);
            if (n === 0) throw changed(path, size, pos);
            off += n;
            pos += n;
            if (off === CHUNK) await flush();
          }
        } finally {
          await closeFd(fd);
        }
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
  } finally {
    // Let read-ahead finish before the arena goes away (its errors were already surfaced or
    // do not matter any more).
    await Promise.allSettled([...ahead.values()].map((a) => a.done));
  }
  return { size: total, diffID: `sha256:${hash.digest('hex')}` };
}
