import { constants, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  type ByteReader,
  bufferReader,
  ElfFormatError,
  isElfMagic,
  parseElf,
  withFileReader,
} from '../layers/elf.ts';
import { readTar } from '../layers/tar-reader.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { type FsKind, kindOf, normalEntryPath } from './launch-fs.ts';

// What the launch check needs to know of one launch layer: its listing, the loader facts of its
// ELF files and the `#!` line of its executable scripts. A scan depends only on the layer's
// content, so it is kept by the layer's diffID and a layer is scanned once, whatever the build.

/** One ELF file of a layer (path inside the layer). */
export interface ElfRecord {
  readonly p: string;
  readonly bits: 32 | 64;
  readonly machine: number;
  readonly type: number;
  readonly interp?: string;
  readonly needed: readonly string[];
  readonly runpath: readonly string[];
  readonly rpath: readonly string[];
}

/** One executable script: its `#!` interpreter and the optional argument. */
export interface ScriptRecord {
  readonly p: string;
  readonly interp: string;
  readonly arg?: string;
}

/** A layer's scan, as kept in the launch check's cache. */
export interface LayerScan {
  readonly v: 2;
  readonly nodes: readonly [string, FsKind, string?][];
  readonly elves: readonly ElfRecord[];
  readonly scripts: readonly ScriptRecord[];
  /** Files that start like ELF but do not parse (named in a debug line, never loaded). */
  readonly malformed: readonly { readonly p: string; readonly why: string }[];
}

/** Linux reads this much of a file for `#!` (BINPRM_BUF_SIZE). */
const SHEBANG_BYTES = 256;
/** A file in memory (layers read from a tar stream) is at most this big to be scanned. */
const MAX_BUFFERED = 256 * 1024 * 1024;

/** Whether a file might be loaded or executed: executable, or named like a shared object. */
function candidate(name: string, mode: number, size: number): boolean {
  return size >= 4 && ((mode & 0o111) !== 0 || /\.so(\.[0-9]+)*$|\.node$/.test(name));
}

/** parseShebang reads a `#!` line as the kernel does: interpreter, then one optional argument. */
export function parseShebang(head: Uint8Array): { interp: string; arg?: string } | undefined {
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const nl = head.indexOf(0x0a);
  const line = Buffer.from(head.subarray(2, nl < 0 ? head.length : nl))
    .toString('utf8')
    .replace(/[ \t\r]+$/, '')
    .replace(/^[ \t]+/, '');
  const m = /^(\S+)(?:[ \t]+(.*))?$/.exec(line);
  if (!m) return undefined;
  return m[2] ? { interp: m[1]!, arg: m[2] } : { interp: m[1]! };
}

/** A scan being assembled. */
class ScanBuilder {
  readonly nodes: [string, FsKind, string?][] = [];
  readonly elves: ElfRecord[] = [];
  readonly scripts: ScriptRecord[] = [];
  readonly malformed: { p: string; why: string }[] = [];

  file(p: string, r: ByteReader, executable: boolean): void {
    const head = r.read(0, SHEBANG_BYTES);
    if (isElfMagic(head)) {
      try {
        const e = parseElf(r);
        this.elves.push({
          p,
          bits: e.bits,
          machine: e.machine,
          type: e.type,
          ...(e.interpreter !== undefined ? { interp: e.interpreter } : {}),
          needed: e.needed,
          runpath: e.runpath,
          rpath: e.rpath,
        });
      } catch (err) {
        if (!(err instanceof ElfFormatError)) throw err;
        this.malformed.push({ p, why: err.message });
      }
      return;
    }
    const s = executable ? parseShebang(head) : undefined;
    if (s) this.scripts.push({ p, ...s });
  }

  /** hardLink gives a hard link the records of the file it links to (`target` inside the layer). */
  readonly links: [string, string][] = [];

  done(): LayerScan {
    for (const [p, target] of this.links) {
      const e = this.elves.find((x) => x.p === target);
      if (e) this.elves.push({ ...e, p });
      const sc = this.scripts.find((x) => x.p === target);
      if (sc) this.scripts.push({ ...sc, p });
    }
    return { v: 2, nodes: this.nodes, elves: this.elves, scripts: this.scripts, malformed: this.malformed };
  }
}

/**
 * scanEntries scans a layer dir from the export's walk of it (`prefix` is the layer's path in the
 * image without the leading slash). Files are opened without following a link: the walk saw
 * regular files, and a file swapped for a link since is skipped, not read.
 */
export function scanEntries(entries: readonly TarEntry[], prefix: string): LayerScan {
  const s = new ScanBuilder();
  for (const e of entries) {
    const full = normalEntryPath(e.path);
    if (full === undefined || (full !== prefix && !full.startsWith(`${prefix}/`))) continue;
    const p = full.slice(prefix.length + 1);
    if (p === '') continue;
    const t = kindOf(e.type, e.mode);
    s.nodes.push(t === 'l' ? [p, t, e.linkname ?? ''] : [p, t]);
    const target = e.type === 'link' ? normalEntryPath(e.linkname ?? '') : undefined;
    if (target?.startsWith(`${prefix}/`)) s.links.push([p, target.slice(prefix.length + 1)]);
    if (e.type !== 'file' || !e.source || !candidate(p, e.mode, e.size ?? 0)) continue;
    let fd: number;
    try {
      fd = openSync(e.source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      continue;
    }
    withFileReader(fd, (r) => s.file(p, r, (e.mode & 0o111) !== 0));
  }
  return s.done();
}

/**
 * scanTar scans a layer from its (uncompressed) tar: a layer reused from the previous image has
 * no directory to read. Candidate files are read into memory, up to a bound.
 */
export async function scanTar(tar: Readable, prefix: string): Promise<LayerScan> {
  const s = new ScanBuilder();
  for await (const e of readTar(tar)) {
    const full = normalEntryPath(e.header.path);
    if (full === undefined || !full.startsWith(`${prefix}/`)) continue;
    const p = full.slice(prefix.length + 1);
    const h = e.header;
    const t = kindOf(h.type, h.mode);
    s.nodes.push(t === 'l' ? [p, t, h.linkname] : [p, t]);
    const target = h.type === 'link' ? normalEntryPath(h.linkname) : undefined;
    if (target?.startsWith(`${prefix}/`)) s.links.push([p, target.slice(prefix.length + 1)]);
    if (h.type !== 'file' || h.size > MAX_BUFFERED || !candidate(p, h.mode, h.size)) continue;
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(Buffer.from(c));
    s.file(p, bufferReader(Buffer.concat(chunks)), (h.mode & 0o111) !== 0);
  }
  return s.done();
}
