import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32, inflateRawSync } from 'node:zlib';
import { KilnError } from '../internal/errors.ts';

// `kiln build --path app.zip` (or a .jar), as pack takes it: the archive's files become the app
// directory. The archive is hostile: entry names are checked (no absolute paths, no "..", no
// backslashes, no drive letters), links and devices are refused (a zip can carry symlinks in its
// external attributes), every entry is inflated with a bound and checked against its size and
// CRC, and the whole is bounded in bytes and entries. Files are created fresh (`wx`) in a new,
// empty directory, so nothing outside it can be written or replaced.

/** Bounds of one app archive. */
export interface ZipLimits {
  /** Largest archive file read (default 1 GiB). */
  readonly archiveBytes: number;
  /** Largest total of uncompressed bytes (default 4 GiB). */
  readonly totalBytes: number;
  /** Most entries (default 200k). */
  readonly entries: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  archiveBytes: 1 << 30,
  totalBytes: 4 * 2 ** 30,
  entries: 200_000,
};

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/** isAppArchive tells a zip (or jar) file from a directory by its name or magic. */
export async function isAppArchive(file: string): Promise<boolean> {
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) return false;
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    return head.readUInt32LE(0) === LOCAL || head.readUInt32LE(0) === EOCD;
  } finally {
    await fh.close();
  }
}

/** One entry of the central directory. */
interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localOffset: number;
  readonly mode: number;
}

/** extractAppZip unpacks `file` into the empty directory `dest` (created) and returns it. */
export async function extractAppZip(
  file: string,
  dest: string,
  limits = DEFAULT_ZIP_LIMITS,
): Promise<string> {
  const fail = (why: string): never => {
    throw new KilnError(`app archive ${file}: ${why}`);
  };
  const st = await stat(file);
  if (st.size > limits.archiveBytes) fail(`larger than ${limits.archiveBytes} bytes`);
  const fh = await open(file, 'r');
  let buf: Buffer;
  try {
    buf = Buffer.alloc(st.size);
    await fh.read(buf, 0, st.size, 0);
  } finally {
    await fh.close();
  }
  const entries = centralDirectory(buf, limits, fail);
  await mkdir(dest, { recursive: false, mode: 0o755 });
  let total = 0;
  for (const e of entries) {
    const rel = safeName(e.name, fail);
    if (rel === '') continue;
    const target = path.join(dest, rel);
    const type = e.mode & S_IFMT;
    if (e.name.endsWith('/') || type === S_IFDIR) {
      await mkdir(target, { recursive: true, mode: 0o755 });
      continue;
    }
    if (type !== 0 && type !== S_IFREG)
      fail(`entry ${JSON.stringify(e.name)} is a link or device, not a file`);
    total += e.size;
    if (total > limits.totalBytes) fail(`more than ${limits.totalBytes} bytes uncompressed`);
    const data = entryData(buf, e, fail);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    await writeFile(target, data, { flag: 'wx', mode: e.mode & 0o111 ? 0o755 : 0o644 });
  }
  return dest;
}

function centralDirectory(buf: Buffer, limits: ZipLimits, fail: (why: string) => never): ZipEntry[] {
  // The end record sits in the last 22 + 65535 bytes (its comment is at most 64 KiB).
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('not a zip file (no end of central directory)');
  const count = buf.readUInt16LE(eocd + 10);
  const size = buf.readUInt32LE(eocd + 12);
  const offset = buf.readUInt32LE(eocd + 16);
  if (count === 0xffff || offset === 0xffffffff) fail('zip64 archives are not supported');
  if (count > limits.entries) fail(`more than ${limits.entries} entries`);
  if (offset + size > eocd) fail('central directory out of bounds');
  const out: ZipEntry[] = [];
  let p = offset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > eocd || buf.readUInt32LE(p) !== CENTRAL) fail('corrupt central directory');
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const madeBy = buf.readUInt16LE(p + 4) >> 8;
    const external = buf.readUInt32LE(p + 38);
    if (p + 46 + nameLen > eocd) fail('corrupt central directory');
    out.push({
      name: buf.subarray(p + 46, p + 46 + nameLen).toString('utf8'),
      method: buf.readUInt16LE(p + 10),
      crc: buf.readUInt32LE(p + 16),
      compressedSize: buf.readUInt32LE(p + 20),
      size: buf.readUInt32LE(p + 24),
      localOffset: buf.readUInt32LE(p + 42),
      // Unix modes only when the archive was made on Unix (3); others carry DOS attributes.
      mode: madeBy === 3 ? external >>> 16 : 0,
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

function safeName(name: string, fail: (why: string) => never): string {
  const bad = () => fail(`entry ${JSON.stringify(name)} has an unsafe name`);
  if (name.includes('\\') || name.includes('\0') || name.startsWith('/') || /^[A-Za-z]:/.test(name)) bad();
  const parts = name.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.some((s) => s === '..')) bad();
  return parts.join('/');
}

function entryData(buf: Buffer, e: ZipEntry, fail: (why: string) => never): Buffer {
  const p = e.localOffset;
  if (p + 30 > buf.length || buf.readUInt32LE(p) !== LOCAL)
    fail(`entry ${JSON.stringify(e.name)}: bad local header`);
  const start = p + 30 + buf.readUInt16LE(p + 26) + buf.readUInt16LE(p + 28);
  if (start + e.compressedSize > buf.length) fail(`entry ${JSON.stringify(e.name)}: data out of bounds`);
  const raw = buf.subarray(start, start + e.compressedSize);
  let data: Buffer;
  if (e.method === 0) data = Buffer.from(raw);
  else if (e.method === 8) {
    try {
      // Bounded: a deflate bomb stops at its declared size (and then fails the size check).
      data = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch {
      return fail(`entry ${JSON.stringify(e.name)}: corrupt or larger than its declared ${e.size} bytes`);
    }
  } else return fail(`entry ${JSON.stringify(e.name)}: compression method ${e.method} is not supported`);
  if (data.length !== e.size)
    fail(`entry ${JSON.stringify(e.name)}: ${data.length} bytes, declared ${e.size}`);
  if (crc32(data) >>> 0 !== e.crc >>> 0) fail(`entry ${JSON.stringify(e.name)}: CRC mismatch`);
  return data;
}
