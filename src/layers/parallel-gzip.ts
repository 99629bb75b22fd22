import os from 'node:os';
import zlib from 'node:zlib';

// gzip on every core, with output that depends only on the input: pigz's scheme. The input is cut
// into blocks of GZIP_BLOCK bytes at fixed offsets; each block is deflated on its own (on the
// thread pool, several at once), primed with the 32 KiB of input before it as its dictionary, and
// all but the last end with a sync flush (an empty stored block), which leaves the deflate stream
// byte-aligned without ending it. The blocks' outputs joined in order are one ordinary deflate
// stream, wrapped in one gzip member (header, CRC-32 and length of the whole input), so every gzip
// reader reads it as it reads any other. How many blocks run at once, and how the input was cut
// when it was written in, change nothing: a block's bytes are a function of its own input, the
// 32 KiB before it, whether it is the last one, and the level.
//
// An input of one block or less is deflated exactly as zlib.gzip does it (same header, one
// deflate call without dictionary or flush), so small layers keep the bytes they always had.

/** Input bytes per block. Part of the output format: changing it changes every large layer's digest. */
export const GZIP_BLOCK = 512 << 10;
/** deflate's window: what a block's dictionary holds. */
const WINDOW = 32 << 10;

/** Options of ParallelGzip. */
export interface ParallelGzipOptions {
  /** 1-9; default 6. */
  readonly level?: number;
  /** Blocks deflated at once (never changes the output); default defaultGzipWorkers(). */
  readonly workers?: number;
}

/**
 * Blocks deflated at once by default: two per core, up to the thread pool's four threads. More
 * blocks than cores keep every core busy while this thread is late to hand out the next block
 * (it also reads and hashes the tar, and other work shares it); measured on 2 cores, two blocks at
 * once gained nothing in a real export, four did.
 */
export function defaultGzipWorkers(): number {
  return Math.max(2, Math.min(4, 2 * os.availableParallelism()));
}

function deflateBlock(input: Buffer, opts: zlib.ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    zlib.deflateRaw(input, opts, (e, out) => (e ? reject(e) : resolve(out))),
  );
}

/**
 * The 10-byte header zlib writes for a gzip stream without a name or time: mtime 0, the level's
 * XFL flag (2 at 9, 4 at 1, else 0) and OS 3 (Unix), as zlib.createGzip() writes it.
 */
function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]);
}

/**
 * ParallelGzip compresses what is written to it into one gzip member, handing the output to
 * `out` in order. `out` returns false to say the consumer is full: no new block is started until
 * resume(). write() copies its input (the caller may reuse the buffer once it resolves) and waits
 * while `workers` blocks are in flight.
 */
export class ParallelGzip {
  readonly #out: (chunk: Buffer) => boolean;
  readonly #level: number;
  readonly #workers: number;
  #block = Buffer.allocUnsafe(GZIP_BLOCK);
  #off = 0;
  /** The block before #block (its tail is #block's dictionary); undefined before the second. */
  #prev: Buffer | undefined;
  #index = 0;
  #crc = 0;
  #size = 0;
  /** Emission of each block in flight, oldest first. */
  readonly #inflight: Promise<void>[] = [];
  /** Chain that hands outputs to `out` in block order. */
  #emitted: Promise<void> = Promise.resolve();
  #paused: { promise: Promise<void>; resolve: () => void } | undefined;
  #error: Error | undefined;
  #ended = false;
  /** The writes made so far, copied in one after the other. */
  #writes: Promise<void> = Promise.resolve();

  constructor(out: (chunk: Buffer) => boolean, opts: ParallelGzipOptions = {}) {
    this.#out = out;
    this.#level = opts.level ?? 6;
    this.#workers = opts.workers ?? defaultGzipWorkers();
    if (!Number.isInteger(this.#level) || this.#level < 1 || this.#level > 9)
      throw new RangeError(`gzip level ${this.#level}: expected 1-9`);
    if (!Number.isInteger(this.#workers) || this.#workers < 1)
      throw new RangeError(`gzip workers ${this.#workers}: expected a positive integer`);
  }

  /**
   * Copies `b` in, starting blocks as they fill; resolves once `b` was copied. Writes not awaited
   * are taken in the order they were made.
   */
  write(b: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(new Error('ParallelGzip: write after end'));
    const w = this.#writes.then(() => this.#copy(b));
    this.#writes = w.catch(() => {});
    return w;
  }

  async #copy(b: Uint8Array): Promise<void> {
    let p = 0;
    while (p < b.length) {
      this.#check();
      if (this.#off === GZIP_BLOCK) await this.#dispatch(false);
      const n = Math.min(b.length - p, GZIP_BLOCK - this.#off);
      this.#block.set(b.subarray(p, p + n), this.#off);
      this.#off += n;
      p += n;
    }
  }

  /** Deflates what is left as the last block and resolves once everything went to `out`. */
  async end(): Promise<void> {
    if (this.#ended) throw new Error('ParallelGzip: end called twice');
    this.#ended = true;
    await this.#writes;
    this.#check();
    await this.#dispatch(true);
    await this.#emitted;
    this.#check();
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(this.#crc >>> 0, 0);
    trailer.writeUInt32LE(this.#size % 2 ** 32, 4);
    this.#out(trailer);
  }

  /** The consumer caught up: blocks may start again. */
  resume(): void {
    const p = this.#paused;
    this.#paused = undefined;
    p?.resolve();
  }

  /** Fails what is pending and every later call with `e`. */
  destroy(e: Error): void {
    this.#error ??= e;
    this.resume();
  }

  #check(): void {
    if (this.#error) throw this.#error;
  }

  /** Sends #block (the first #off bytes) to the thread pool; a new, empty block follows. */
  async #dispatch(last: boolean): Promise<void> {
    while (this.#inflight.length >= this.#workers || this.#paused) {
      await (this.#paused?.promise ?? this.#inflight[0]);
      this.#check();
    }
    const input = this.#block.subarray(0, this.#off);
    const index = this.#index++;
    const opts: zlib.ZlibOptions = {
      level: this.#level,
      // One output buffer per block: one thread-pool round trip instead of one per 16 KiB.
      chunkSize: GZIP_BLOCK + (GZIP_BLOCK >> 3),
      finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
    };
    // The dictionary is copied into the stream when it is created, i.e. before this returns.
    if (this.#prev) opts.dictionary = this.#prev.subarray(GZIP_BLOCK - WINDOW);
    const deflated = deflateBlock(input, opts);
    this.#crc = zlib.crc32(input, this.#crc);
    this.#size += input.length;
    this.#prev = this.#block;
    this.#block = last ? Buffer.alloc(0) : Buffer.allocUnsafe(GZIP_BLOCK);
    this.#off = 0;
    const emit = this.#emitted.then(async () => {
      const chunk = await deflated;
      if (this.#error) return;
      if (index === 0 && !this.#out(gzipHeader(this.#level))) this.#pause();
      if (!this.#out(chunk)) this.#pause();
    });
    this.#emitted = emit;
    emit.catch((e: unknown) => this.destroy(e as Error));
    const settled = emit.then(
      () => {},
      () => {},
    );
    this.#inflight.push(settled);
    void settled.then(() => this.#inflight.splice(this.#inflight.indexOf(settled), 1));
  }

  #pause(): void {
    if (this.#paused) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#paused = { promise, resolve };
  }
}
