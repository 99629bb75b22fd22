import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mapBounded } from '../internal/bounded.ts';
import { DigestMismatchError } from '../internal/errors.ts';
import type { HttpClient } from '../internal/http/client.ts';
import { downloadVerified } from './archive.ts';

/** DebRef names one .deb to fetch: where from and what its sha256 must be. */
export interface DebRef {
  readonly name: string;
  readonly version: string;
  readonly url: string;
  readonly sha256: string;
  readonly size: number;
}

/** DownloadProgress reports bytes as they arrive and packages as they complete. */
export interface DownloadProgress {
  onBytes?(n: number, ref: DebRef): void;
  onDone?(ref: DebRef, cached: boolean): void;
}

/**
 * DebCache is a content-addressed directory of .deb files named `<sha256>.deb`. A file only ever
 * appears there by rename after its hash checked out, so an interrupted run leaves at most a
 * stray temp file (removed on the way out) and never a corrupt entry.
 */
export class DebCache {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  /** pathOf returns where the .deb with this sha256 lives (whether or not it is there yet). */
  pathOf(sha256: string): string {
    return join(this.dir, `${sha256}.deb`);
  }

  /** has tells whether the .deb is already cached. */
  async has(sha256: string): Promise<boolean> {
    return stat(this.pathOf(sha256)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  /**
   * fetchAll makes sure every ref is cached, downloading the missing ones `parallel` at a time.
   * Returns the cached paths in the order of `refs`. A hash mismatch throws a KilnError naming
   * the package; nothing of it is kept.
   */
  async fetchAll(
    refs: readonly DebRef[],
    opts: { parallel?: number; http?: HttpClient; progress?: DownloadProgress } = {},
  ): Promise<string[]> {
    await mkdir(this.dir, { recursive: true });
    // mapBounded waits for every running download, not just the first failure, so that none is
    // still writing (or renaming into the cache) when the caller sees the error.
    await mapBounded(refs, Math.max(1, opts.parallel ?? 6), async (ref) => {
      if (await this.has(ref.sha256)) {
        opts.progress?.onDone?.(ref, true);
        return;
      }
      try {
        const onBytes = opts.progress?.onBytes;
        await downloadVerified(
          ref.url,
          ref.sha256,
          ref.size,
          this.pathOf(ref.sha256),
          opts.http,
          onBytes ? (n) => onBytes(n, ref) : undefined,
        );
      } catch (e) {
        if (e instanceof DigestMismatchError)
          throw new DigestMismatchError(`package ${ref.name} ${ref.version}: ${e.message}`, e);
        throw e;
      }
      opts.progress?.onDone?.(ref, false);
    });
    return refs.map((r) => this.pathOf(r.sha256));
  }
}
