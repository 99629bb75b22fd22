import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { DEFAULT_EPOCH } from '../oci/memory.ts';

// THE normalizing tar writer. Every layer kiln makes goes through here, so that the same tree
// always gives the same bytes: entries sorted by path (byte order), one fixed mtime, explicit
// uid/gid, empty user and group names, modes kept as given (setuid/setgid/sticky included),
// ustar headers with PAX records only where ustar cannot say it (long or non-ASCII names and
// link targets, ids above 2097151, sizes above 8 GiB). Headers are our own (about what Go's
// archive/tar writes) so the bytes do not depend on a library's choices.

/** Kind of a tar entry. */
export type TarEntryType = 'file' | 'dir' | 'symlink' | 'link';

/** One entry of a layer tar. Paths are relative, slash-separated; no `..` components. */
export interface TarEntry {
  readonly path: string;
  readonly type: TarEntryType;
  /** Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Byte size of a 'file' entry's content (required for files). */
  readonly size?: number;
  /** Target of a 'symlink', or the path (in this tar) a 'link' points to. */
  readonly linkname?: string;
  /** Opens the content of a 'file' entry; called once, when the entry is written. */
  readonly open?: () => Readable | Promise<Readable>;
  /**
   * Reads a small file's whole content at once. When present the writer reads a few entries
   * ahead with it, so that many small files do not each cost a round of open/read/close waits.
   */
  readonly read?: () => Promise<Buffer>;
  /**
   * Absolute path of the regular file holding the content. When present, the layer writer reads
   * it directly into its own buffers (preferred over open/read; those remain for other readers).
   */
  readonly source?: string;
  /** Extra PAX records (e.g. `SCHILY.xattr.*`), written sorted by key. */
  readonly pax?: Readonly<Record<string, string>>;
}

const SMALL_FILE = 256 * 1024;

/**
 * How a file entry's `source` is opened: never through a link (the walk saw a regular file; a
 * link swapped in since must not be followed on the host) and never blocking on a FIFO.
 */
export const SOURCE_OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** How to read a small file's whole content at once, if the entry allows it. */
function readerOf(e: TarEntry): (() => Promise<Buffer>) | undefined {
  if (e.read) return e.read;
  const src = e.source;
  if (src && !e.open && (e.size ?? 0) <= SMALL_FILE)
    return () => fs.readFile(src, { flag: SOURCE_OPEN_FLAGS });
  return undefined;
}

/** How to stream an entry's content. */
function openerOf(e: TarEntry): (() => Readable | Promise<Readable>) | undefined {
  if (e.open) return e.open;
  const src = e.source;
  const size = e.size ?? 0;
  // Buffers sized to the file: a stream allocates highWaterMark bytes per read.
  if (src)
    return async () =>
      (await fs.open(src, SOURCE_OPEN_FLAGS)).createReadStream({
        highWaterMark: Math.max(16384, Math.min(size + 1, 1 << 20)),
      });
  if (e.read) {
    const read = e.read;
    return async () => ReadableStream.from([await read()]);
  }
  return undefined;
}

/** Options of the tar writer. */
export interface TarOptions {
  /** mtime of every entry, seconds since the Unix epoch (default 1980-01-01T00:00:01Z). */
  readonly epoch?: number;
}

const BLOCK = 512;
const ZERO = Buffer.alloc(BLOCK * 2);
const MAX_OCTAL7 = 0o7777777;
const MAX_OCTAL11 = 0o77777777777;
const TYPEFLAG: Record<TarEntryType, string> = { file: '0', link: '1', symlink: '2', dir: '5' };

/** normalizeTarPath makes `p` relative and slash-clean, rejecting `..` and empty paths. */
export function normalizeTarPath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.length === 0) throw new TypeError(`invalid tar entry path "${p}": empty`);
  if (parts.includes('..')) throw new TypeError(`invalid tar entry path "${p}": ".." is not allowed`);
  return parts.join('/');
}

/**
 * comparePaths orders paths by their UTF-8 bytes, the order entries are written in. Sorting by
 * bytes (not locale, not UTF-16 code units) is what makes the order the same everywhere.
 */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e || s.charCodeAt(i) < 0x20) return false;
  return true;
}

/** An ASCII stand-in for a field that a PAX record overrides (readers use the record). */
function asciiStandIn(s: string, max: number): string {
  let out = '';
  for (const ch of s) out += isAscii(ch) ? ch : '_';
  return out.slice(0, max);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len}${body}`;
}

function writeString(buf: Buffer, off: number, len: number, s: string): void {
  buf.write(s, off, len, 'utf8');
}

function writeOctal(buf: Buffer, off: number, len: number, n: number): void {
  buf.write(n.toString(8).padStart(len - 1, '0'), off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

interface HeaderFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function header(f: HeaderFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  writeString(b, 0, 100, f.name);
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, f.uid);
  writeOctal(b, 116, 8, f.gid);
  writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, f.mtime);
  b.fill(0x20, 148, 156);
  b.write(f.typeflag, 156, 1, 'ascii');
  writeString(b, 157, 100, f.linkname);
  b.write('ustar\u000000', 257, 8, 'ascii');
  writeOctal(b, 329, 8, 0);
  writeOctal(b, 337, 8, 0);
  writeString(b, 345, 155, f.prefix);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  b[154] = 0;
  b[155] = 0x20;
  return b;
}

/** Splits an ASCII path into ustar prefix + name, or returns undefined when it cannot. */
function splitUstar(p: string): { prefix: string; name: string } | undefined {
  if (p.length <= 100) return { prefix: '', name: p };
  if (p.length > 256) return undefined;
  for (let i = p.length - 101; i < p.length; i++) {
    if (i >= 0 && i <= 155 && p[i] === '/' && p.length - i - 1 <= 100 && p.length - i - 1 > 0)
      return { prefix: p.slice(0, i), name: p.slice(i + 1) };
  }
  return undefined;
}

function padding(size: number): Buffer | undefined {
  const r = size % BLOCK;
  return r === 0 ? undefined : ZERO.subarray(0, BLOCK - r);
}

/** The header blocks (PAX extended header first, when needed) of one normalized entry. */
export function entryHeader(e: TarEntry, path: string, epoch: number): Buffer {
  const name = e.type === 'dir' ? `${path}/` : path;
  const size = e.type === 'file' ? (e.size ?? 0) : 0;
  const linkname = e.linkname ?? '';
  const pax: Record<string, string> = { ...(e.pax ?? {}) };
  let fields: { prefix: string; name: string } | undefined;
  if (isAscii(name)) fields = splitUstar(name);
  if (!fields) {
    pax.path = name;
    fields = { prefix: '', name: asciiStandIn(name, 100) };
  }
  let link = linkname;
  if (!isAscii(linkname) || Buffer.byteLength(linkname) > 100) {
    pax.linkpath = linkname;
    link = asciiStandIn(linkname, 100);
  }
  let { uid, gid } = e;
  if (uid > MAX_OCTAL7) {
    pax.uid = String(uid);
    uid = 0;
  }
  if (gid > MAX_OCTAL7) {
    pax.gid = String(gid);
    gid = 0;
  }
  let hsize = size;
  if (size > MAX_OCTAL11) {
    pax.size = String(size);
    hsize = 0;
  }
  const main = header({
    name: fields.name,
    prefix: fields.prefix,
    mode: e.mode & 0o7777,
    uid,
    gid,
    size: hsize,
    mtime: epoch,
    typeflag: TYPEFLAG[e.type],
    linkname: link,
  });
  const keys = Object.keys(pax).sort();
  if (keys.length === 0) return main;
  const records = Buffer.from(keys.map((k) => paxRecord(k, pax[k]!)).join(''), 'utf8');
  const base = path.slice(path.lastIndexOf('/') + 1);
  const dir = path.includes('/') ? `${path.slice(0, path.lastIndexOf('/'))}/` : '';
  const paxName = asciiStandIn(`${dir}PaxHeaders.0/${base}`, 100);
  const xh = header({
    name: paxName,
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: epoch,
    typeflag: 'x',
    linkname: '',
  });
  const pad = padding(records.length);
  return Buffer.concat(pad ? [xh, records, pad, main] : [xh, records, main]);
}

/**
 * sortEntries validates and sorts entries into the order they are written, with normalized
 * paths. Duplicate paths are an error: a layer must say one thing about each path.
 */
export function sortEntries(entries: Iterable<TarEntry>): { entry: TarEntry; path: string }[] {
  const out: { entry: TarEntry; path: string; key: Buffer }[] = [];
  for (const entry of entries) {
    const path = normalizeTarPath(entry.path);
    if (entry.type === 'file' && (entry.size === undefined || !(entry.open || entry.read || entry.source)))
      throw new TypeError(`tar entry "${path}": a file needs size and one of source, open() or read()`);
    if ((entry.type === 'symlink' || entry.type === 'link') && !entry.linkname)
      throw new TypeError(`tar entry "${path}": a ${entry.type} needs a linkname`);
    if (!Number.isInteger(entry.uid) || entry.uid < 0 || !Number.isInteger(entry.gid) || entry.gid < 0)
      throw new TypeError(`tar entry "${path}": uid and gid must be non-negative integers`);
    out.push({ entry, path, key: Buffer.from(path, 'utf8') });
  }
  out.sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 1; i < out.length; i++)
    if (out[i]!.path === out[i - 1]!.path) throw new TypeError(`duplicate tar entry path "${out[i]!.path}"`);
  // A reader can only link to what it has already extracted.
  const index = new Map(out.map((o, i) => [o.path, i]));
  out.forEach((o, i) => {
    if (o.entry.type !== 'link') return;
    const target = normalizeTarPath(o.entry.linkname!);
    const at = index.get(target);
    if (at !== undefined && at > i)
      throw new TypeError(`hard link "${o.path}" points to "${target}", which comes later in sorted order`);
  });
  return out.map(({ entry, path }) => ({ entry, path }));
}

/**
 * tarChunks yields the bytes of a normalized tar of `entries` (any order in, sorted out). File
 * contents are streamed from each entry's open(); a file whose length differs from its declared
 * size (changed while archived) is an error, never a silently different layer.
 */
export async function* tarChunks(entries: Iterable<TarEntry>, opts: TarOptions = {}): AsyncGenerator<Buffer> {
  const epoch = opts.epoch ?? DEFAULT_EPOCH;
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > MAX_OCTAL11)
    throw new RangeError(`invalid tar epoch ${epoch}`);
  const sorted = sortEntries(entries);
  // Read-ahead of small files: up to AHEAD entries / AHEAD_BYTES in flight.
  const AHEAD = 32;
  const AHEAD_BYTES = 8 << 20;
  const pending = new Map<number, Promise<Buffer>>();
  let nextAhead = 0;
  let aheadBytes = 0;
  const fill = (from: number) => {
    if (nextAhead < from) nextAhead = from;
    while (nextAhead < sorted.length && nextAhead < from + AHEAD) {
      const e = sorted[nextAhead]!.entry;
      const reader = readerOf(e);
      if (e.type === 'file' && reader) {
        if (aheadBytes + (e.size ?? 0) > AHEAD_BYTES && pending.size > 0) break;
        const p = reader();
        p.catch(() => {}); // surfaced when awaited in order
        pending.set(nextAhead, p);
        aheadBytes += e.size ?? 0;
      }
      nextAhead++;
    }
  };
  try {
    for (let i = 0; i < sorted.length; i++) {
      const { entry, path } = sorted[i]!;
      fill(i);
      yield entryHeader(entry, path, epoch);
      if (entry.type !== 'file') continue;
      const size = entry.size!;
      let read = 0;
      const ahead = pending.get(i);
      if (ahead) {
        pending.delete(i);
        aheadBytes -= size;
        const b = await ahead;
        read = b.length;
        if (read === size && read > 0) yield b;
      } else if (size > 0) {
        const stream = await openerOf(entry)!();
        try {
          for await (const chunk of stream) {
            const b = chunk as Buffer;
            read += b.length;
            if (read > size) break;
            yield b;
          }
        } finally {
          stream.destroy();
        }
      }
      if (read !== size)
        throw new Error(
          `file "${path}" changed while being archived: expected ${size} bytes, read ${read > size ? 'more' : read}`,
        );
      const pad = padding(size);
      if (pad) yield pad;
    }
  } finally {
    pending.clear();
  }
  yield ZERO;
}

/** tarStream is tarChunks as a Readable. */
export function tarStream(entries: Iterable<TarEntry>, opts: TarOptions = {}): Readable {
  return ReadableStream.from(tarChunks(entries, opts), { objectMode: false });
}
