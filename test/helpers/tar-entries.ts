// In-memory tar entries for tests that write layers (tarStream / writeLayer inputs).
import { Readable } from 'node:stream';
import type { TarEntry } from '../../src/layers/tar-writer.ts';

/** fileEntry is a regular file at `path` holding `content` (root-owned, 0644 unless told). */
export function fileEntry(path: string, content: string | Buffer, mode = 0o644, uid = 0, gid = 0): TarEntry {
  const bytes = Buffer.from(content);
  return { path, type: 'file', mode, uid, gid, size: bytes.length, open: () => Readable.from([bytes]) };
}
