import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tempSibling } from '../internal/temp-name.ts';
import { readTar } from '../layers/tar-reader.ts';
import { type TarEntry, tarChunks } from '../layers/tar-writer.ts';
import { compressionOfMagic } from '../oci/compression.ts';
import type { Compression } from '../oci/media-types.ts';
import { DEFAULT_EPOCH } from '../oci/memory.ts';

// An image archive in one uncompressed tar file (docker-archive, OCI layout tar / `.cnb`): written
// in one streaming pass, read in place by member offsets, never unpacked. The formats differ in
// their members; the tar file handling is this.

/** Where a member's bytes sit in an uncompressed tar file. */
export interface TarMember {
  readonly offset: number;
  readonly size: number;
}

/** fileEntry is a tar file member of `size` bytes that `open` streams (root-owned, 0644). */
export function fileEntry(p: string, size: number, open: () => Readable | Promise<Readable>): TarEntry {
  return { path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, size, open };
}

/** bytesEntry is a tar file member holding `bytes`. */
export function bytesEntry(p: string, bytes: Uint8Array): TarEntry {
  const b = Buffer.from(bytes);
  return fileEntry(p, b.length, () => Readable.from([b]));
}

/** compressionAt sniffs the compression of the bytes at `offset` of `file` (`size` at most 4 bytes read). */
export async function compressionAt(file: string, offset = 0, size = 4): Promise<Compression> {
  const head = Buffer.alloc(4);
  const fh = await fs.open(file, 'r');
  try {
    await fh.read(head, 0, Math.min(4, size), offset);
  } finally {
    await fh.close();
  }
  return compressionOfMagic(head);
}

/** tarMembers lists the regular files of the uncompressed tar `file` by path (a leading `./` dropped). */
export async function tarMembers(file: string): Promise<Map<string, TarMember>> {
  const members = new Map<string, TarMember>();
  for await (const { header, offset } of readTar(createReadStream(file, { highWaterMark: 1 << 20 }))) {
    if (header.type === 'file') members.set(header.path.replace(/^\.\//, ''), { offset, size: header.size });
  }
  return members;
}

/** memberStream streams the bytes of member `m` of `file`. */
export function memberStream(file: string, m: TarMember): Readable {
  return m.size === 0
    ? Readable.from([])
    : createReadStream(file, { start: m.offset, end: m.offset + m.size - 1 });
}

/** piped pipes `src` into `dst` and fails `dst` when `src` fails (pipe alone does not). */
export function piped<T extends Duplex>(src: Readable, dst: T): T {
  src.on('error', (e: Error) => dst.destroy(e));
  return src.pipe(dst);
}

/**
 * writeTarFile writes `entries` as a normalized tar at `file`: to a temp name in the same
 * directory, then renamed, so a failure leaves nothing (the error is the one the write saw).
 */
export async function writeTarFile(file: string, entries: Iterable<TarEntry>): Promise<void> {
  const abs = path.resolve(file);
  const temp = tempSibling(abs);
  try {
    await pipeline(
      Readable.from(tarChunks(entries, { epoch: DEFAULT_EPOCH })),
      createWriteStream(temp, { mode: 0o644 }),
    );
    await fs.rename(temp, abs);
  } catch (e) {
    await fs.rm(temp, { force: true });
    throw e;
  }
}
