import { Worker } from 'node:worker_threads';

// SHA-256 of a stream of buffers on a worker thread. The layer writer's thread reads files,
// lays out the tar and hands each buffer to the compressor; hashing the same bytes there too
// (the diffID) made that thread, not the compressor, the slowest stage of a zstd layer. Here
// the buffers live in shared memory: the worker hashes them in place (no copy), in order, and
// says when it is done with each so that the writer can reuse it.

// Plain CommonJS run with `eval`: the worker needs nothing of kiln's.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = createHash('sha256');
const buffers = [];
parentPort.on('message', (m) => {
  if (m === 'digest') {
    parentPort.postMessage({ digest: hash.digest('hex') });
    hash = createHash('sha256');
  } else if (m instanceof SharedArrayBuffer) {
    buffers.push(m);
  } else {
    hash.update(new Uint8Array(buffers[m[0]], m[1], m[2]));
    parentPort.postMessage({ done: true });
  }
});
`;

/** ThreadHasher hashes, on a worker thread, buffers that `buffer()` allocated in shared memory. */
export class ThreadHasher {
  readonly #worker: Worker;
  /** Resolvers of the updates sent and not yet hashed, oldest first. */
  readonly #pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  #digest: { resolve: (hex: string) => void; reject: (e: Error) => void } | undefined;
  #failed: Error | undefined;
  /** The shared buffers the worker knows, by the index it knows them by. */
  readonly #buffers: ArrayBufferLike[] = [];

  constructor() {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.on('message', (m: { done?: true; digest?: string }) => {
      if (m.done) this.#pending.shift()?.resolve();
      else if (m.digest !== undefined) this.#digest?.resolve(m.digest);
    });
    const fail = (e: Error) => {
      this.#failed ??= e;
      for (const p of this.#pending.splice(0)) p.reject(e);
      this.#digest?.reject(e);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`hashing thread exited (code ${code})`)));
  }

  /**
   * A buffer in shared memory, for update(). The worker is given it once; updates then name it
   * by number (cloning a shared buffer into every message cost more than hashing it).
   */
  buffer(size: number): Buffer {
    const sab = new SharedArrayBuffer(size);
    this.#buffers.push(sab);
    this.#worker.postMessage(sab);
    return Buffer.from(sab);
  }

  /**
   * Hashes `chunk` (a view of a buffer from buffer()) after what was given before; resolves
   * once the worker is done with it (the caller must not change it before).
   */
  update(chunk: Buffer): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    const i = this.#buffers.indexOf(chunk.buffer);
    if (i === -1) return Promise.reject(new Error('ThreadHasher.update: not a buffer from buffer()'));
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#worker.postMessage([i, chunk.byteOffset, chunk.byteLength]);
    });
  }

  /** The hex SHA-256 of everything given to update(), once it was all hashed. */
  digest(): Promise<string> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise<string>((resolve, reject) => {
      this.#digest = { resolve, reject };
      this.#worker.postMessage('digest');
    });
  }

  /** Stops the worker (after digest(), or to give up). */
  async close(): Promise<void> {
    this.#worker.removeAllListeners('exit');
    this.#failed ??= new Error('hashing thread closed');
    await this.#worker.terminate();
  }
}
