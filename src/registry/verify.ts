import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { KilnError } from '../internal/errors.ts';
import { algorithmOf, type Digest, hexOf } from '../oci/digest.ts';

/**
 * VerifyingStream passes bytes through while hashing them, and fails at the end (or as soon as
 * the size is exceeded) when the content does not match `digest` (and `size`, when known).
 * Consumers that write to disk must only commit (rename) after the stream ended without error.
 */
export class VerifyingStream extends Transform {
  readonly #hash: Hash;
  readonly #digest: Digest;
  readonly #size: number | undefined;
  readonly #what: string;
  /** The digest this stream checks (a blob store need not hash the bytes again). */
  readonly verifies: Digest;
  #n = 0;

  constructor(digest: Digest, size: number | undefined, what: string) {
    super();
    this.#hash = createHash(algorithmOf(digest));
    this.#digest = digest;
    this.verifies = digest;
    this.#size = size !== undefined && size >= 0 ? size : undefined;
    this.#what = what;
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#n;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#n += chunk.length;
    if (this.#size !== undefined && this.#n > this.#size) {
      cb(new KilnError(`${this.#what}: more than the expected ${this.#size} bytes; refusing content`));
      return;
    }
    this.#hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#size !== undefined && this.#n !== this.#size) {
      cb(new KilnError(`${this.#what}: got ${this.#n} bytes, expected ${this.#size} (truncated)`));
      return;
    }
    const got = this.#hash.digest('hex');
    if (got !== hexOf(this.#digest)) {
      cb(
        new KilnError(
          `${this.#what}: content does not match its digest (got ${algorithmOf(this.#digest)}:${got.slice(0, 16)}…)`,
        ),
      );
      return;
    }
    cb();
  }
}

/** verifyBytes checks in-memory content (a manifest, a config) against its digest. */
export function verifyBytes(bytes: Uint8Array, digest: Digest, what: string): void {
  const got = createHash(algorithmOf(digest)).update(bytes).digest('hex');
  if (got !== hexOf(digest))
    throw new KilnError(
      `${what}: content does not match its digest (got ${algorithmOf(digest)}:${got.slice(0, 16)}…)`,
    );
}
