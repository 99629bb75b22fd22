// Temp dirs for a test file: each one made is removed in the file's after() hook.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

/**
 * tempDirs registers (at the top level of a test file) an after() hook that removes every dir it
 * made, and returns the maker: a fresh dir under the OS temp dir named `prefix` (or the default).
 */
export function tempDirs(defaultPrefix: string): (prefix?: string) => Promise<string> {
  const made: string[] = [];
  after(async () => {
    for (const d of made) await rm(d, { recursive: true, force: true });
  });
  return async (prefix = defaultPrefix) => {
    const d = await mkdtemp(path.join(tmpdir(), prefix));
    made.push(d);
    return d;
  };
}
