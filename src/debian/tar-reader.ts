import type { Readable } from 'node:stream';

/** TarEntryHeader is what kiln reads from a tar header (ustar, GNU and PAX extensions merged). */
export interface TarEntryHeader {
  readonly name: string;
  readonly type: 'file' | 'directory' | 'symlink' | 'link' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly linkname: string;
  readonly mtime: number;
}

/**
 * TarEntry is a header plus its body. The body must be consumed (or skipped with `drain`) before
 * the next entry is read.
 */
export interface TarEntry {
  readonly header: TarEntryHeader;
  body(): AsyncGenerator<Buffer>;
}

/** ChunkReader pulls exact byte counts out of a stream of chunks. */
class ChunkReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }
  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n) {
      const r = await this.it.next();
      if (r.done) return false;
      this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    }
    return true;
  }
  async read(n: number): Promise<Buffer | null> {
    if (!(await this.fill(n))) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0) {
        const r = await this.it.next();
        if (r.done) throw new Error('tar: unexpected end of archive inside a file');
        this.buf = r.value;
      }
      const take = Math.min(left, this.buf.length);
      const out = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      left -= take;
      yield out;
    }
  }
  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) {
      /* discard */
    }
  }
}

function str(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z >= 0 ? s.subarray(0, z) : s).toString('utf8');
}

function num(b: Buffer, off: number, len: number): number {
  // GNU base-256 encoding for large values: high bit of the first byte set.
  if (b[off]! & 0x80) {
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = str(b, off, len).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = Number(data.subarray(pos, sp).toString('latin1'));
    if (!len) break;
    const rec = data.subarray(sp + 1, pos + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

/**
 * readTar yields the entries of a tar stream (the members of .deb files). It reads ustar, GNU
 * long names/links and PAX path/linkpath/size records, verifies header checksums, and stops at
 * the end-of-archive marker.
 */
export async function* readTar(src: Readable): AsyncGenerator<TarEntry> {
  const r = new ChunkReader(src as AsyncIterable<Buffer>);
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  let global: Record<string, string> = {};
  for (;;) {
    const h = await r.read(512);
    if (!h) return;
    if (h.every((x) => x === 0)) return;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    if (sum !== num(h, 148, 8)) throw new Error('tar: header checksum mismatch');
    const flag = String.fromCharCode(h[156]!);
    let size = num(h, 124, 12);
    if (flag === 'L' || flag === 'K' || flag === 'x' || flag === 'g') {
      const data = await r.read(size);
      if (!data) throw new Error('tar: truncated extended header');
      await r.skip((512 - (size % 512)) % 512);
      if (flag === 'L') longName = str(data, 0, data.length);
      else if (flag === 'K') longLink = str(data, 0, data.length);
      else if (flag === 'x') pax = parsePax(data);
      else global = { ...global, ...parsePax(data) };
      continue;
    }
    const ext = { ...global, ...pax };
    const prefix = str(h, 345, 155);
    let name = longName ?? ext.path ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
    const linkname = longLink ?? ext.linkpath ?? str(h, 157, 100);
    if (ext.size) size = Number(ext.size);
    longName = undefined;
    longLink = undefined;
    pax = {};
    let type: TarEntryHeader['type'] = 'other';
    if (flag === '0' || flag === '\0' || flag === '7') type = 'file';
    else if (flag === '5') type = 'directory';
    else if (flag === '2') type = 'symlink';
    else if (flag === '1') type = 'link';
    if (type === 'file' && name.endsWith('/')) type = 'directory';
    if (type === 'directory' && !name.endsWith('/')) name += '/';
    const header: TarEntryHeader = {
      name,
      type,
      mode: num(h, 100, 8) & 0o7777,
      uid: ext.uid ? Number(ext.uid) : num(h, 108, 8),
      gid: ext.gid ? Number(ext.gid) : num(h, 116, 8),
      size: type === 'file' ? size : 0,
      linkname,
      mtime: num(h, 136, 12),
    };
    const bodySize = type === 'directory' || type === 'symlink' || type === 'link' ? 0 : size;
    let consumed = false;
    const pad = (512 - (bodySize % 512)) % 512;
    const entry: TarEntry = {
      header,
      async *body() {
        consumed = true;
        yield* r.stream(bodySize);
        await r.skip(pad);
      },
    };
    yield entry;
    if (!consumed) {
      await r.skip(bodySize);
      await r.skip(pad);
    }
  }
}
