/**
 * Bounds of an extraction of untrusted layers (builders, run images, buildpackages, caches): a
 * gzip bomb (a few MB that inflate to tens of GB) or a layer of millions of empty files must fail
 * the unpack with one line, not fill the disk of the rootfs cache or the build directory.
 *
 * An ExtractBudget counts what extract() writes: every entry (an inode or a directory entry) and
 * every byte of file content as it is written, never as the tar header declares it. One budget
 * may span the layers of one image (the limit is the image's, so a hundred layers of a little
 * under the limit each do not add up), and the host keeps its free-space reserve whatever the
 * limit says: the filesystem's free space is checked (statfs, a few µs) every RESERVE_CHECK_BYTES
 * written and every RESERVE_CHECK_ENTRIES entries, with the same reserve the build's disk watcher
 * keeps (sandbox/disk-budget.ts).
 */

import { DEFAULT_DISK_RESERVE_BYTES, formatBytes, freeSpace, inodeReserve } from '../internal/disk-space.ts';
import { KilnError } from '../internal/errors.ts';

const GiB = 1024 ** 3;

/** How much one extraction (or the layers of one image together) may write. */
export interface ExtractLimits {
  /** Bytes of file content. */
  readonly maxBytes: number;
  /** Entries: files, directories, links (whiteouts and skipped devices count too). */
  readonly maxEntries: number;
  /** Free bytes to keep on the destination's filesystem (default: the build's disk reserve, 2 GiB). */
  readonly reserveBytes?: number;
  /** What the limit is for, in messages: "an image's root filesystem". */
  readonly name?: string;
}

/**
 * Root filesystem of a builder or run image (rootfs cache, `kiln run`): the largest real builders
 * are 2-5 GB with ~150k entries; 20 GiB and 2 million entries leave room for any real image.
 * `[rootfs-cache]` `max-image-size` / `max-image-entries` in the kiln config change it.
 */
export const ROOTFS_LIMITS: ExtractLimits = {
  maxBytes: 20 * GiB,
  maxEntries: 2_000_000,
  name: "an image's root filesystem",
};
/** A buildpackage's buildpacks (a .cnb, an image, a .tgz): offline JDK/Node buildpacks are < 2 GB. */
export const BUILDPACKAGE_LIMITS: ExtractLimits = {
  maxBytes: 10 * GiB,
  maxEntries: 1_000_000,
  name: 'a buildpackage',
};
/**
 * One cached layer restored into `<layers>`: what a build may write there is bounded by its disk
 * budget (10 GiB by default, sandbox/limits.ts), so twice that covers raised budgets too.
 */
export const CACHE_LAYER_LIMITS: ExtractLimits = {
  maxBytes: 20 * GiB,
  maxEntries: 2_000_000,
  name: 'a cached layer',
};

/** Free space is checked after this many bytes written … */
const RESERVE_CHECK_BYTES = 64 * 1024 * 1024;
/** … and after this many entries. */
const RESERVE_CHECK_ENTRIES = 4096;

/** ExtractLimitError: an extraction crossed a limit; the message is the one line users see. */
export class ExtractLimitError extends KilnError {
  constructor(message: string) {
    super(message);
    this.name = 'ExtractLimitError';
  }
}

/** Counts what one image's (or one archive's) extraction wrote against its limits. */
export class ExtractBudget {
  readonly limits: ExtractLimits;
  /** What is being unpacked, for messages: `builder sha256:…`, `cached layer sha256:…`. */
  readonly subject: string;
  /** How to raise the limits, for messages (a config key), if they can be raised. */
  readonly raise: string | undefined;
  /** The layer being unpacked now (a digest), for messages. */
  layer: string | undefined;
  bytes = 0;
  entries = 0;
  #bytesAtCheck = 0;
  #entriesAtCheck = 0;

  constructor(subject: string, limits: ExtractLimits, raise?: string) {
    this.subject = subject;
    this.limits = limits;
    this.raise = raise;
  }

  /** Counts one entry about to be created under `root` (the extraction root). */
  entry(root: string): void {
    if (++this.entries > this.limits.maxEntries)
      this.#fail(`has more than ${this.limits.maxEntries} entries, the limit`);
    if (this.entries - this.#entriesAtCheck >= RESERVE_CHECK_ENTRIES) this.#reserve(root);
  }

  /** Refuses a file whose declared size alone would cross the byte limit (before writing any of it). */
  expect(size: number): void {
    if (this.bytes + size > this.limits.maxBytes) this.#overBytes();
  }

  /** Counts `n` bytes about to be written under `root`. */
  write(n: number, root: string): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) this.#overBytes();
    if (this.bytes - this.#bytesAtCheck >= RESERVE_CHECK_BYTES) this.#reserve(root);
  }

  #overBytes(): never {
    this.#fail(`unpacks to more than ${formatBytes(this.limits.maxBytes)}, the limit`);
  }

  #reserve(root: string): void {
    this.#bytesAtCheck = this.bytes;
    this.#entriesAtCheck = this.entries;
    const reserve = this.limits.reserveBytes ?? DEFAULT_DISK_RESERVE_BYTES;
    const f = freeSpace(root);
    const why =
      f.bytes < reserve
        ? `the host filesystem of the unpack directory has only ${formatBytes(f.bytes)} free, below the ${formatBytes(reserve)} kiln keeps free`
        : f.inodes < inodeReserve(f.totalInodes)
          ? `the host filesystem of the unpack directory is running out of inodes (${f.inodes} left)`
          : undefined;
    if (why !== undefined) throw new ExtractLimitError(`${this.#where()}: stopped unpacking: ${why}`);
  }

  #where(): string {
    return this.layer ? `${this.subject}: layer ${this.layer}` : this.subject;
  }

  #fail(what: string): never {
    const of = this.limits.name ? ` for ${this.limits.name}` : '';
    const raise = this.raise ? `; raise it with ${this.raise}` : '';
    throw new ExtractLimitError(`${this.#where()} ${what}${of}${raise}`);
  }
}
