import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../internal/atomic-write.ts';

// The launch check's memory: run image listings by image digest, layer scans by diffID, and the
// keys of checks that passed. Everything in it is derived from content its key names, so an entry
// never goes stale; a file that does not read back as what was written is treated as absent (and
// rewritten), never trusted. Kept in kiln's own cache directory (not one a buildpack sees), and in
// memory for the life of the process.

/** What the cache holds, by kind (the directory under the cache dir). */
export type LaunchCacheKind = 'run-image' | 'layer' | 'pass';

const KEY = /^[0-9a-f]{16,128}$/;
const MEMORY_ENTRIES = 64;
const memory = new Map<string, unknown>();

/** LaunchCheckCache reads and writes the launch check's cached results. */
export class LaunchCheckCache {
  readonly dir: string | undefined;

  /** `dir` undefined: in memory only. */
  constructor(dir?: string) {
    this.dir = dir;
  }

  #file(kind: LaunchCacheKind, key: string): string | undefined {
    return this.dir && KEY.test(key) ? path.join(this.dir, kind, `${key}.json`) : undefined;
  }

  /** get returns the entry when present and `valid` accepts it. */
  async get<T>(kind: LaunchCacheKind, key: string, valid: (v: unknown) => v is T): Promise<T | undefined> {
    const mem = memory.get(`${this.dir}\0${kind}\0${key}`);
    if (mem !== undefined && valid(mem)) return mem;
    const file = this.#file(kind, key);
    if (!file) return undefined;
    try {
      const v: unknown = JSON.parse(await readFile(file, 'utf8'));
      if (!valid(v)) return undefined;
      this.#remember(kind, key, v);
      return v;
    } catch {
      return undefined;
    }
  }

  /** put stores an entry (a failure to write is only a lost speed-up). */
  async put(kind: LaunchCacheKind, key: string, value: unknown): Promise<void> {
    this.#remember(kind, key, value);
    const file = this.#file(kind, key);
    if (!file) return;
    try {
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await writeFileAtomic(file, JSON.stringify(value), 0o600);
    } catch {
      // A read-only or full cache dir makes the next build scan again; it never fails this one.
    }
  }

  #remember(kind: LaunchCacheKind, key: string, value: unknown): void {
    const k = `${this.dir}\0${kind}\0${key}`;
    memory.delete(k);
    memory.set(k, value);
    while (memory.size > MEMORY_ENTRIES) memory.delete(memory.keys().next().value!);
  }
}
