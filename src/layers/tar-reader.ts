import type { Readable } from 'node:stream';

// A streaming tar reader for ustar, PAX (x and g records) and GNU long names (L, K), with
// base-256 numbers. It yields one entry at a time; an entry's body must be consumed (or is
// skipped) before the next entry is read, so memory stays at one chunk whatever the archive.

/** Kind of a tar entry as read. */
export type TarReadType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo' | 'other';

/** A parsed tar header, PAX and GNU extensions applied. */
export interface TarHeader {
  /** Path as written in the archive (not normalized, not trusted). */
  readonly path: string;
  readonly type: TarReadType;
  /** The raw type flag, for 'other'. */
  readonly typeflag: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Seconds since the Unix epoch (fraction dropped). */
  readonly mtime: number;
  readonly linkname: string;
  readonly uname: string;
  readonly gname: string;
  readonly devmajor: number;
  readonly devminor: number;
  /** PAX records that applied to this entry (global and per-entry). */
  readonly pax: Readonly<Record<string, string>>;
}

/** One entry: its header and, for files, its content (read it before asking for the next entry). */
export interface TarReadEntry {
  readonly header: TarHeader;
  readonly body: AsyncIterable<Buffer>;
  /** Byte offset of the body in the (uncompressed) archive: lets callers index a tar file. */
  readonly offset: number;
}

/** TarFormatError is an archive that is not a well-formed tar stream (truncated, corrupt or malformed). */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

const BLOCK = 512;

/**
 * ByteSource serves exact byte counts from a stream of chunks. Chunks are queued, not
 * concatenated: bodies are yielded as views of the chunks as they arrived (no copy), and only
 * a header that straddles two chunks is copied.
 */
class ByteSource {
  readonly #it: AsyncIterator<Buffer | Uint8Array | string>;
  readonly #chunks: Buffer[] = [];
  #len = 0;
  #done = false;
  /** Bytes handed out so far. */
  taken = 0;
  constructor(src: AsyncIterable<Buffer | Uint8Array | string>) {
    this.#it = src[Symbol.asyncIterator]();
  }
  /** Ensures at least n bytes are buffered; false at end of input before n. */
  async fill(n: number): Promise<boolean> {
    while (this.#len < n && !this.#done) {
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else {
        const c =
          typeof r.value === 'string'
            ? Buffer.from(r.value)
            : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        if (c.length === 0) continue;
        this.#chunks.push(c);
        this.#len += c.length;
      }
    }
    return this.#len >= n;
  }
  /** Up to n bytes from the first buffered chunk, without copying. */
  #head(n: number): Buffer {
    const c = this.#chunks[0]!;
    if (c.length <= n) {
      this.#chunks.shift();
      this.#len -= c.length;
      this.taken += c.length;
      return c;
    }
    this.#chunks[0] = c.subarray(n);
    this.#len -= n;
    this.taken += n;
    return c.subarray(0, n);
  }
  /** Exactly n buffered bytes (call fill(n) first). */
  take(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#head(n);
    const out = Buffer.allocUnsafe(n);
    for (let o = 0; o < n; ) {
      const b = this.#head(n - o);
      b.copy(out, o);
      o += b.length;
    }
    return out;
  }
  /** Yields exactly n bytes in chunks as they arrive. */
  async *stream(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#len === 0 && !(await this.fill(1)))
        throw new TarFormatError(`tar archive truncated in ${what}: ${left} of ${n} bytes missing`);
      const b = this.#head(left);
      left -= b.length;
      yield b;
    }
  }
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.stream(n, what)) {
      // discard
    }
  }
  async return(): Promise<void> {
    await this.#it.return?.();
  }
}

function str(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z === -1 ? s : s.subarray(0, z)).toString('utf8');
}

function num(b: Buffer, off: number, len: number, field: string): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit as the marker.
    let v = 0n;
    for (let i = 0; i < f.length; i++) v = (v << 8n) | BigInt(i === 0 ? f[i]! & 0x7f : f[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`tar header field ${field} too large`);
    return Number(v);
  }
  const t = f.toString('ascii').replace(/\0.*$/s, '').trim();
  if (t === '') return 0;
  if (!/^[0-7]+$/.test(t))
    throw new TarFormatError(`tar header field ${field} is not octal: ${JSON.stringify(t)}`);
  return Number.parseInt(t, 8);
}

function checksumOk(b: Buffer): boolean {
  const want = num(b, 148, 8, 'chksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  return want === unsigned || want === signed;
}

function parsePax(data: Buffer, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp === -1) break;
    const len = Number.parseInt(data.subarray(off, sp).toString('ascii'), 10);
    if (!Number.isInteger(len) || len <= 0 || off + len > data.length)
      throw new TarFormatError(`bad PAX record in ${what}`);
    const rec = data.subarray(sp + 1, off + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq === -1) throw new TarFormatError(`bad PAX record in ${what}`);
    out[rec.slice(0, eq)] = rec.slice(eq + 1);
    off += len;
  }
  return out;
}

// Timestamps beyond year 10000 are clamped (utimes refuses some, and no real archive has them).
const MAX_MTIME = 253402300799;
// uid/gid 2^32-1 is "no owner" to chown(2); larger ids do not exist.
const MAX_ID = 0xfffffffe;

/**
 * paxNumber reads a numeric PAX record: decimal digits (a fraction only where `fraction`), a safe
 * integer, at most `max`. Anything else is a TarFormatError, never a NaN that reaches a syscall.
 */
function paxNumber(value: string, key: string, what: string, max: number, fraction = false): number {
  const re = fraction ? /^-?[0-9]+(\.[0-9]*)?$/ : /^[0-9]+$/;
  const n = re.test(value) ? Math.floor(Number(value)) : Number.NaN;
  if (!Number.isSafeInteger(n) || Math.abs(n) > max)
    throw new TarFormatError(
      `${what}: PAX record ${key}=${JSON.stringify(value.slice(0, 40))} is not a number in range`,
    );
  return n;
}

function idField(b: Buffer, off: number, field: string): number {
  const n = num(b, off, 8, field);
  if (n > MAX_ID) throw new TarFormatError(`tar header field ${field} too large`);
  return n;
}

const TYPES: Record<string, TarReadType> = {
  '0': 'file',
  '\0': 'file',
  '': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** What a header block said: the end of the archive, an extension record to read, or an entry. */
type Decoded =
  | { readonly kind: 'end' }
  | { readonly kind: 'meta'; readonly typeflag: string; readonly size: number; readonly what: string }
  | { readonly kind: 'entry'; readonly header: TarHeader; readonly what: string };

/**
 * HeaderDecoder turns header blocks into entries, carrying PAX (global and per-entry) and GNU
 * long-name records over to the entry they apply to. readTar and TarParser share it, so an
 * archive means the same thing, with the same checks and messages, whichever of them reads it.
 */
class HeaderDecoder {
  #global: Record<string, string> = {};
  #local: Record<string, string> = {};
  #longName: string | undefined;
  #longLink: string | undefined;
  /** Header blocks decoded so far (for messages; 0 means nothing was read yet). */
  index = 0;

  decode(h: Buffer): Decoded {
    if (isZero(h)) return { kind: 'end' };
    this.index++;
    if (!checksumOk(h))
      throw new TarFormatError(`tar header ${this.index} has a bad checksum (not a tar archive, or corrupt)`);
    const typeflag = String.fromCharCode(h[156]!);
    const size = num(h, 124, 12, 'size');
    const magic = h.subarray(257, 263).toString('latin1');
    let name = str(h, 0, 100);
    if (magic.startsWith('ustar')) {
      const prefix = str(h, 345, 155);
      if (prefix && magic === 'ustar\0') name = `${prefix}/${name}`;
    }
    const what = `tar entry ${this.index} (${JSON.stringify(name)})`;
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > 1 << 20) throw new TarFormatError(`${what}: extended header of ${size} bytes is too large`);
      return { kind: 'meta', typeflag, size, what };
    }
    const pax = { ...this.#global, ...this.#local };
    const path = pax.path ?? this.#longName ?? name;
    let type = TYPES[typeflag] ?? 'other';
    if (type === 'file' && typeflag !== '7' && path.endsWith('/')) type = 'dir';
    const header: TarHeader = {
      path,
      type,
      typeflag,
      mode: num(h, 100, 8, 'mode'),
      uid: pax.uid !== undefined ? paxNumber(pax.uid, 'uid', what, MAX_ID) : idField(h, 108, 'uid'),
      gid: pax.gid !== undefined ? paxNumber(pax.gid, 'gid', what, MAX_ID) : idField(h, 116, 'gid'),
      size: pax.size !== undefined ? paxNumber(pax.size, 'size', what, Number.MAX_SAFE_INTEGER) : size,
      mtime:
        pax.mtime !== undefined
          ? paxNumber(pax.mtime, 'mtime', what, MAX_MTIME, true)
          : Math.min(num(h, 136, 12, 'mtime'), MAX_MTIME),
      linkname: pax.linkpath ?? this.#longLink ?? str(h, 157, 100),
      uname: pax.uname ?? str(h, 265, 32),
      gname: pax.gname ?? str(h, 297, 32),
      devmajor: num(h, 329, 8, 'devmajor'),
      devminor: num(h, 337, 8, 'devminor'),
      pax,
    };
    this.#local = {};
    this.#longName = undefined;
    this.#longLink = undefined;
    return { kind: 'entry', header, what };
  }

  /** Applies the content (`size` bytes, padding removed) of a 'meta' header. */
  meta(typeflag: string, data: Buffer, what: string): void {
    if (typeflag === 'x') this.#local = { ...this.#local, ...parsePax(data, what) };
    else if (typeflag === 'g') this.#global = { ...this.#global, ...parsePax(data, what) };
    else if (typeflag === 'L') this.#longName = str(data, 0, data.length);
    else this.#longLink = str(data, 0, data.length);
  }
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const padOf = (n: number) => Math.ceil(n / BLOCK) * BLOCK - n;

/**
 * readTar parses an uncompressed tar stream. Headers are checked (checksum, octal fields) and
 * a truncated archive is an error, never a short read that looks like success.
 */
export async function* readTar(
  source: Readable | AsyncIterable<Buffer | Uint8Array>,
): AsyncGenerator<TarReadEntry> {
  const src = new ByteSource(source as AsyncIterable<Buffer>);
  const dec = new HeaderDecoder();
  try {
    for (;;) {
      if (!(await src.fill(BLOCK))) {
        if (dec.index === 0) return; // empty input: an empty archive
        throw new TarFormatError('tar archive truncated: no end-of-archive marker');
      }
      const d = dec.decode(src.take(BLOCK));
      if (d.kind === 'end') return;
      const { what } = d;
      if (d.kind === 'meta') {
        const chunks: Buffer[] = [];
        for await (const c of src.stream(d.size + padOf(d.size), what)) chunks.push(c);
        dec.meta(d.typeflag, Buffer.concat(chunks).subarray(0, d.size), what);
        continue;
      }
      const { header } = d;
      // Whatever the type, `size` bytes follow the header (hard links from some archivers carry
      // a size); they are skipped when not read, so they are never mistaken for a header.
      const contentSize = header.size;
      let consumed = false;
      let remaining = contentSize;
      const body: AsyncIterable<Buffer> = {
        [Symbol.asyncIterator]: () => {
          if (consumed) throw new Error(`${what}: body already read`);
          consumed = true;
          const gen = src.stream(contentSize, what);
          return (async function* () {
            for await (const c of gen) {
              remaining -= c.length;
              yield c;
            }
          })();
        },
      };
      yield { header, body, offset: src.taken };
      if (remaining > 0) await src.skip(remaining, what);
      const pad = padOf(contentSize);
      if (pad > 0) await src.skip(pad, what);
    }
  } finally {
    await src.return();
  }
}

/** Receives a file entry's content from a TarParser, in order, then its end. */
export interface TarBodySink {
  /** A view of the pushed chunk: use it (write it out) before returning, never keep it. */
  write(chunk: Buffer): void;
  end(): void;
}

const HEADER = 0;
const META = 1;
const BODY = 2;
const PAD = 3;
const DONE = 4;

/**
 * TarParser is readTar turned around: bytes are pushed in as they arrive and entries come out
 * through `onEntry` synchronously, with no promise per entry or per body chunk. Bodies are
 * handed on as views of the pushed chunks, and only a header split across two chunks is
 * copied. For consumers doing synchronous work per entry (extraction) this takes the
 * per-entry await churn off the path. Same checks and messages as readTar: the two share the
 * header decoder (tar-reader.test.ts checks they agree on archives cut anywhere).
 */
export class TarParser {
  readonly #dec = new HeaderDecoder();
  readonly #onEntry: (header: TarHeader) => TarBodySink | undefined;
  readonly #hdr = Buffer.alloc(BLOCK);
  #hdrLen = 0;
  #state = HEADER;
  /** Bytes left of the current meta record, body or padding. */
  #left = 0;
  #size = 0;
  #what = '';
  #metaType = '';
  #meta: Buffer[] = [];
  #sink: TarBodySink | undefined;
  #pad = 0;

  /** `onEntry` returns where an entry's content goes, or undefined to skip it. */
  constructor(onEntry: (header: TarHeader) => TarBodySink | undefined) {
    this.#onEntry = onEntry;
  }

  /** True once the end-of-archive marker was read (later bytes are ignored). */
  get done(): boolean {
    return this.#state === DONE;
  }

  push(chunk: Buffer): void {
    let p = 0;
    while (p < chunk.length && this.#state !== DONE) {
      const rest = chunk.length - p;
      if (this.#state === HEADER) {
        if (this.#hdrLen === 0 && rest >= BLOCK) {
          p += BLOCK;
          this.#header(chunk.subarray(p - BLOCK, p));
        } else {
          const n = Math.min(BLOCK - this.#hdrLen, rest);
          chunk.copy(this.#hdr, this.#hdrLen, p, p + n);
          this.#hdrLen += n;
          p += n;
          if (this.#hdrLen === BLOCK) {
            this.#hdrLen = 0;
            this.#header(this.#hdr);
          }
        }
        continue;
      }
      const n = Math.min(this.#left, rest);
      const part = chunk.subarray(p, p + n);
      p += n;
      this.#left -= n;
      if (this.#state === META) this.#meta.push(Buffer.from(part));
      else if (this.#state === BODY) this.#sink?.write(part);
      if (this.#left === 0) this.#next();
    }
  }

  /** Checks that the archive ended where it should (call after the last push). */
  end(): void {
    if (this.#state === DONE) return;
    if (this.#state === HEADER) {
      // Nothing, or less than one block: an empty archive (as readTar reads it).
      if (this.#dec.index === 0) return;
      throw new TarFormatError('tar archive truncated: no end-of-archive marker');
    }
    const n =
      this.#state === META ? this.#size + padOf(this.#size) : this.#state === BODY ? this.#size : this.#pad;
    throw new TarFormatError(`tar archive truncated in ${this.#what}: ${this.#left} of ${n} bytes missing`);
  }

  #header(block: Buffer): void {
    const d = this.#dec.decode(block);
    if (d.kind === 'end') {
      this.#state = DONE;
      return;
    }
    this.#what = d.what;
    if (d.kind === 'meta') {
      this.#state = META;
      this.#metaType = d.typeflag;
      this.#size = d.size;
      this.#left = d.size + padOf(d.size);
      this.#meta = [];
      if (this.#left === 0) this.#next();
      return;
    }
    // Whatever the type, `size` bytes follow the header; a skipped entry's are dropped.
    this.#sink = this.#onEntry(d.header);
    this.#state = BODY;
    this.#size = d.header.size;
    this.#left = d.header.size;
    if (this.#left === 0) this.#next();
  }

  #next(): void {
    if (this.#state === META) {
      this.#dec.meta(this.#metaType, Buffer.concat(this.#meta).subarray(0, this.#size), this.#what);
      this.#meta = [];
      this.#state = HEADER;
      return;
    }
    if (this.#state === BODY) {
      const sink = this.#sink;
      this.#sink = undefined;
      sink?.end();
      this.#pad = padOf(this.#size);
      this.#left = this.#pad;
      this.#state = this.#pad > 0 ? PAD : HEADER;
      return;
    }
    this.#state = HEADER;
  }
}
