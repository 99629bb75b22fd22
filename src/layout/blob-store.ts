import { createHash } from 'node:crypto';
import fsSync, { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { lstatInRoot, openFileInRootIfExists, readFileInRootIfExists } from '../internal/safe-read.ts';
import { tempIn } from '../internal/temp-name.ts';
import { algorithmOf, type Digest, hexOf, sha256 } from '../oci/digest.ts';

/** Largest manifest, index or config read into memory (the registry client allows 32 MiB configs). */
const MAX_METADATA_BLOB = 32 * 1024 * 1024;

/** Result of storing a blob. */
export interface PutResult {
  readonly digest: Digest;
  readonly size: number;
  /** False when the blob was already present (it is never rewritten). */
  readonly added: boolean;
}

const WRITE_BUFFER = 1 << 20;
const WRITE_RING = 3;

/** Writes `len` bytes of `buf` to `fd` at `pos`, however many write calls that takes. */
function writeAt(fd: number, buf: Buffer, len: number, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number) =>
      fsSync.write(fd, buf, off, len - off, pos + off, (e, n) => {
        if (e) reject(e);
        else if (n === 0) reject(new Error(`write to ${fd} made no progress`));
        else if (off + n < len) step(off + n);
        else resolve();
      });
    step(0);
  });
}

/**
 * A stream that errors before its end unless its bytes hash to `verifies` (DigestVerifier, the
 * registry's VerifyingStream). BlobStore.put does not hash such a stream a second time when it
 * verifies the digest put expects: on a pull, every layer byte was hashed twice.
 */
export interface SelfVerifying {
  readonly verifies: Digest;
}

/**
 * DigestVerifier passes bytes through while hashing them and fails the stream at its end when
 * the bytes do not hash to `expected` (or their count differs from `size`), so a consumer never
 * sees a clean end of a corrupt blob.
 */
export class DigestVerifier extends Transform implements SelfVerifying {
  readonly #hash;
  readonly #expected: Digest;
  readonly #size: number | undefined;
  readonly #what: string;
  readonly verifies: Digest;
  #count = 0;
  constructor(expected: Digest, what: string, size?: number) {
    super();
    this.#hash = createHash(algorithmOf(expected));
    this.#expected = expected;
    this.verifies = expected;
    this.#size = size;
    this.#what = what;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    this.#hash.update(chunk);
    this.#count += chunk.length;
    cb(null, chunk);
  }
  override _flush(cb: (e?: Error | null) => void): void {
    const got = `${algorithmOf(this.#expected)}:${this.#hash.digest('hex')}`;
    if (got !== this.#expected)
      cb(new Error(`${this.#what}: digest mismatch: expected ${this.#expected}, got ${got}`));
    else if (this.#size !== undefined && this.#count !== this.#size)
      cb(new Error(`${this.#what}: size mismatch: expected ${this.#size} bytes, got ${this.#count}`));
    else cb();
  }
}

/**
 * mkdirReadable creates `dir` and its missing parents with mode 0755 whatever the umask, so
 * that non-root readers (podman, skopeo as another user) can traverse what kiln writes.
 */
export async function mkdirReadable(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  if (first === undefined) return;
  // Only the directories this call created are changed; existing ones keep their modes.
  for (let d = dir; d.length >= first.length; d = path.dirname(d)) {
    await fs.chmod(d, 0o755);
    if (d === first) break;
  }
}

/**
 * BlobStore is a content-addressed directory of blobs as an OCI image layout keeps them
 * (`<root>/blobs/<alg>/<hex>`). Blobs are written to a temp name in the same file system and
 * renamed into place only once their digest is known and checked; an existing blob is never
 * rewritten. Files are 0644 and directories 0755 so non-root tools can read them.
 */
export class BlobStore {
  readonly root: string;
  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** path is where the blob `d` lives (whether or not it exists). */
  path(d: Digest): string {
    return path.join(this.root, 'blobs', algorithmOf(d), hexOf(d));
  }

  // A layout may be someone else's (oci:DIR): a blob that is a link (to a host file, to
  // /dev/zero) or a FIFO is never opened, and so neither read, sized nor waited on.
  #rel(d: Digest): string {
    return `blobs/${algorithmOf(d)}/${hexOf(d)}`;
  }

  /** has tells whether the blob is present (a regular file, not a link). */
  async has(d: Digest): Promise<boolean> {
    try {
      return (await fs.lstat(this.path(d))).isFile();
    } catch {
      // A probe: a blob that cannot be stat'ed is not held and is fetched again.
      return false;
    }
  }

  /** size of a present blob in bytes. */
  async size(d: Digest): Promise<number> {
    const st = lstatInRoot(this.root, this.#rel(d), { what: 'the blob store', shown: this.root });
    if (!st?.isFile()) throw new Error(`blob ${d} not found in ${this.root}`);
    return st.size;
  }

  /**
   * open streams a blob; with `verify` (default) the stream errors at its end on a mismatch.
   * `chunkSize` (default 1 MiB) is the size of each read. The blob is opened without following a
   * link (a blob linked to a device or a host file is refused, never read).
   */
  async open(d: Digest, opts: { verify?: boolean; chunkSize?: number } = {}): Promise<Readable> {
    const fd = openFileInRootIfExists(this.root, this.#rel(d), { what: 'the blob store', shown: this.root });
    if (fd === undefined) throw new Error(`blob ${d} not found in ${this.root}`);
    const s = createReadStream('', { fd, highWaterMark: opts.chunkSize ?? 1 << 20 });
    if (opts.verify === false) return s;
    const v = new DigestVerifier(d, `blob ${d} in ${this.root}`);
    s.on('error', (e) => v.destroy(e));
    return s.pipe(v);
  }

  /** readBytes reads a small blob (manifest, config) fully and verifies it. */
  async readBytes(d: Digest): Promise<Buffer> {
    const b = readFileInRootIfExists(this.root, this.#rel(d), {
      what: 'the blob store',
      shown: this.root,
      maxBytes: MAX_METADATA_BLOB,
    });
    if (b === undefined) throw new Error(`blob ${d} not found in ${this.root}`);
    const got = sha256(b);
    if (got !== d) throw new Error(`blob ${d} in ${this.root}: digest mismatch: got ${got}`);
    return b;
  }

  /** tempPath returns a fresh temp file name on the store's file system (not created). */
  async tempPath(): Promise<string> {
    const dir = path.join(this.root, 'blobs');
    await mkdirReadable(dir);
    return tempIn(dir);
  }

  /**
   * commit moves a finished temp file into place as blob `d`. If the blob exists already the temp
   * file is removed and the existing blob kept. Returns whether the blob was added.
   */
  async commit(temp: string, d: Digest): Promise<boolean> {
    const dest = this.path(d);
    await mkdirReadable(path.dirname(dest));
    if (await this.has(d)) {
      await fs.rm(temp, { force: true });
      return false;
    }
    await fs.chmod(temp, 0o644);
    // link() fails instead of replacing when another writer won the race, so an existing blob
    // is never rewritten; rename is the fallback for file systems without hard links.
    try {
      await fs.link(temp, dest);
      await fs.rm(temp, { force: true });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        await fs.rm(temp, { force: true });
        return false;
      }
      await fs.rename(temp, dest);
      return true;
    }
  }

  /**
   * put stores a stream. With `expected`, a mismatch fails and nothing is stored. A blob already
   * present under `expected` is not read at all.
   */
  async put(
    content: Readable | AsyncIterable<Uint8Array>,
    expected?: Digest,
    size?: number,
  ): Promise<PutResult> {
    if (expected && (await this.has(expected))) {
      if (content instanceof Readable) content.destroy();
      return { digest: expected, size: await this.size(expected), added: false };
    }
    const temp = await this.tempPath();
    // A stream that checks `expected` itself fails before its end on a mismatch, so before
    // anything is committed; hashing it here as well would only cost CPU.
    const checked = expected !== undefined && (content as Partial<SelfVerifying>).verifies === expected;
    const hash = checked ? undefined : createHash('sha256');
    // Chunks (a socket's are ~64 KiB) are gathered into a few reused 1 MiB buffers, each written
    // at its offset while the next one fills: a write stream costs a thread hand-off per chunk
    // and a transform per stage, and leaves a buffer per chunk to the garbage collector.
    const fd = fsSync.openSync(temp, 'wx', 0o644);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      fsSync.closeSync(fd);
    };
    const writing: (Promise<void> | undefined)[] = [];
    try {
      const ring = Array.from({ length: WRITE_RING }, () => Buffer.allocUnsafe(WRITE_BUFFER));
      let slot = 0;
      let used = 0;
      let count = 0;
      const flush = async () => {
        if (used === 0) return;
        const p = writeAt(fd, ring[slot]!, used, count - used);
        p.catch(() => {}); // awaited before the buffer is reused, or at the end
        writing[slot] = p;
        slot = (slot + 1) % WRITE_RING;
        used = 0;
        await writing[slot];
      };
      for await (const c of content) {
        const chunk = c as Uint8Array;
        hash?.update(chunk);
        for (let o = 0; o < chunk.length; ) {
          const n = Math.min(chunk.length - o, WRITE_BUFFER - used);
          ring[slot]!.set(chunk.subarray(o, o + n), used);
          used += n;
          count += n;
          o += n;
          if (used === WRITE_BUFFER) await flush();
        }
      }
      await flush();
      await Promise.all(writing);
      close();
      const digest: Digest = hash ? `sha256:${hash.digest('hex')}` : expected!;
      if (expected && expected !== digest)
        throw new Error(`blob ${expected}: digest mismatch: got ${digest}`);
      if (size !== undefined && size !== count)
        throw new Error(`blob ${digest}: size mismatch: expected ${size} bytes, got ${count}`);
      const added = await this.commit(temp, digest);
      return { digest, size: count, added };
    } catch (e) {
      await Promise.allSettled(writing);
      close();
      if (content instanceof Readable) content.destroy();
      await fs.rm(temp, { force: true });
      throw e;
    }
  }

  /** putBytes stores a small blob held in memory. */
  putBytes(bytes: Uint8Array, expected?: Digest): Promise<PutResult> {
    return this.put(Readable.from([Buffer.from(bytes)]), expected ?? sha256(bytes), bytes.length);
  }

  /** remove deletes a blob (used to undo what a failed write added). */
  async remove(d: Digest): Promise<void> {
    await fs.rm(this.path(d), { force: true });
  }
}
