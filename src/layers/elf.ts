import { closeSync, fstatSync, readSync } from 'node:fs';

// An ELF reader for what the dynamic loader needs before it runs a file: the program interpreter
// (PT_INTERP) and the dynamic section's DT_NEEDED, DT_RUNPATH, DT_RPATH and DT_SONAME. It reads
// 32- and 64-bit files of either byte order through random access, so a 100 MB binary costs a
// few small reads. The file is untrusted: every offset, size and count is checked against the
// file's size and fixed caps before it is used; a bad one is an ElfFormatError, never a read out
// of bounds or an unbounded loop.

/** What the loader needs from an ELF file. */
export interface ElfInfo {
  readonly bits: 32 | 64;
  readonly endian: 'little' | 'big';
  /** e_type: 1 relocatable, 2 executable, 3 shared object (or PIE), 4 core. */
  readonly type: number;
  /** e_machine (62 x86-64, 183 AArch64, 3 i386, 40 ARM, ...). */
  readonly machine: number;
  /** PT_INTERP: the program interpreter (dynamic loader) path; undefined for libraries and static files. */
  readonly interpreter?: string;
  /** Whether the file has a PT_DYNAMIC segment. */
  readonly dynamic: boolean;
  readonly needed: readonly string[];
  /** DT_RUNPATH and DT_RPATH, each split on ':' (empty when absent). */
  readonly runpath: readonly string[];
  readonly rpath: readonly string[];
  readonly soname?: string;
}

/** ElfFormatError is a file that starts like ELF but whose headers do not hold together. */
export class ElfFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ElfFormatError';
  }
}

/** Random access to a file's bytes: up to `length` bytes at `offset` (fewer at the end). */
export interface ByteReader {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

const MAGIC = [0x7f, 0x45, 0x4c, 0x46];
/** Caps no real file comes near: they bound the work a hostile header can ask for. */
const MAX_PHNUM = 4096;
const MAX_SECTIONS = 65535;
const MAX_DYN_ENTRIES = 65536;
const MAX_STRING = 4096;
const MAX_NEEDED = 1024;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT = { NULL: 0, NEEDED: 1, STRTAB: 5, STRSZ: 10, SONAME: 14, RPATH: 15, RUNPATH: 29 } as const;

/** isElfMagic tells whether bytes start with the ELF magic. */
export function isElfMagic(head: Uint8Array): boolean {
  return head.length >= 4 && MAGIC.every((b, i) => head[i] === b);
}

/** bufferReader serves reads from a buffer in memory. */
export function bufferReader(buf: Uint8Array): ByteReader {
  return { size: buf.length, read: (o, n) => buf.subarray(o, Math.min(buf.length, o + n)) };
}

/** withFileReader gives `fn` a reader over an open file descriptor (closed afterwards). */
export function withFileReader<T>(fd: number, fn: (r: ByteReader) => T): T {
  try {
    const size = fstatSync(fd).size;
    return fn({
      size,
      read: (offset, length) => {
        const n = Math.max(0, Math.min(length, size - offset));
        const buf = Buffer.alloc(n);
        let got = 0;
        while (got < n) {
          const k = readSync(fd, buf, got, n - got, offset + got);
          if (k === 0) break;
          got += k;
        }
        return buf.subarray(0, got);
      },
    });
  } finally {
    closeSync(fd);
  }
}

/** A bounds-checked view of the file in its byte order. */
class Reader {
  readonly #r: ByteReader;
  readonly little: boolean;
  readonly bits: 32 | 64;
  constructor(r: ByteReader, little: boolean, bits: 32 | 64) {
    this.#r = r;
    this.little = little;
    this.bits = bits;
  }
  bytes(offset: number, length: number, what: string): DataView {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.#r.size)
      throw new ElfFormatError(
        `${what} (offset ${offset}, ${length} bytes) lies outside the file (${this.#r.size} bytes)`,
      );
    const b = this.#r.read(offset, length);
    if (b.length !== length) throw new ElfFormatError(`${what}: short read`);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  /** An address-sized word (4 or 8 bytes) as a safe integer. */
  word(v: DataView, at: number, what: string): number {
    if (this.bits === 32) return v.getUint32(at, this.little);
    const n = v.getBigUint64(at, this.little);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfFormatError(`${what} ${n} is out of range`);
    return Number(n);
  }
}

interface Segment {
  readonly type: number;
  readonly offset: number;
  readonly vaddr: number;
  readonly filesz: number;
}

/** openElf checks the identification and reads the ELF header in the file's class and byte order. */
function openElf(src: ByteReader): { r: Reader; eh: DataView; bits: 32 | 64; little: boolean } {
  if (src.size < 52) throw new ElfFormatError(`too small for an ELF header (${src.size} bytes)`);
  const ident = src.read(0, 16);
  if (!isElfMagic(ident)) throw new ElfFormatError('no ELF magic');
  const bits = ident[4] === 1 ? 32 : ident[4] === 2 ? 64 : undefined;
  const little = ident[5] === 1 ? true : ident[5] === 2 ? false : undefined;
  if (bits === undefined) throw new ElfFormatError(`unknown ELF class ${ident[4]}`);
  if (little === undefined) throw new ElfFormatError(`unknown ELF data encoding ${ident[5]}`);
  const r = new Reader(src, little, bits);
  return { r, eh: r.bytes(0, bits === 64 ? 64 : 52, 'ELF header'), bits, little };
}

/**
 * elfSection returns the bytes of the section named `name` when the file has one of at most
 * `maxSize` bytes (undefined otherwise); ElfFormatError when the headers do not hold together.
 */
export function elfSection(src: ByteReader, name: string, maxSize: number): Uint8Array | undefined {
  const { r, eh, bits, little } = openElf(src);
  const shoff = r.word(eh, bits === 64 ? 0x28 : 0x20, 'e_shoff');
  const shentsize = eh.getUint16(bits === 64 ? 0x3a : 0x2e, little);
  const shnum = eh.getUint16(bits === 64 ? 0x3c : 0x30, little);
  const shstrndx = eh.getUint16(bits === 64 ? 0x3e : 0x32, little);
  if (shnum === 0) return undefined;
  const minEnt = bits === 64 ? 64 : 40;
  if (shnum > MAX_SECTIONS) throw new ElfFormatError(`${shnum} section headers (at most ${MAX_SECTIONS})`);
  if (shentsize < minEnt || shentsize > 256)
    throw new ElfFormatError(`section header size ${shentsize}: expected ${minEnt} to 256 bytes`);
  if (shstrndx >= shnum) throw new ElfFormatError(`section name table ${shstrndx} of ${shnum} sections`);
  const table = r.bytes(shoff, shentsize * shnum, 'section header table');
  const header = (i: number) => ({
    name: table.getUint32(i * shentsize, little),
    offset: r.word(table, i * shentsize + (bits === 64 ? 0x18 : 0x10), 'sh_offset'),
    size: r.word(table, i * shentsize + (bits === 64 ? 0x20 : 0x14), 'sh_size'),
  });
  const names = header(shstrndx);
  const wanted = Buffer.from(`${name}\0`, 'latin1');
  const v = r.bytes(names.offset, Math.min(names.size, MAX_STRING * 16), 'section name table');
  const nameTable = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (!nameTable.subarray(h.name, h.name + wanted.length).equals(wanted)) continue;
    if (h.size > maxSize) return undefined;
    const b = r.bytes(h.offset, h.size, name);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  return undefined;
}

/** parseElf reads an ELF file's loader facts; ElfFormatError when it is not well-formed ELF. */
export function parseElf(src: ByteReader): ElfInfo {
  const { r, eh, bits, little } = openElf(src);
  const type = eh.getUint16(16, little);
  const machine = eh.getUint16(18, little);
  const phoff = r.word(eh, bits === 64 ? 32 : 28, 'e_phoff');
  const phentsize = eh.getUint16(bits === 64 ? 54 : 42, little);
  const phnum = eh.getUint16(bits === 64 ? 56 : 44, little);
  const minEnt = bits === 64 ? 56 : 32;
  if (phnum > MAX_PHNUM) throw new ElfFormatError(`${phnum} program headers (at most ${MAX_PHNUM})`);
  if (phnum > 0 && (phentsize < minEnt || phentsize > 256))
    throw new ElfFormatError(`program header size ${phentsize}: expected ${minEnt} to 256 bytes`);
  const segments: Segment[] = [];
  const table = phnum > 0 ? r.bytes(phoff, phentsize * phnum, 'program header table') : undefined;
  for (let i = 0; table && i < phnum; i++) {
    const at = i * phentsize;
    const offAt = bits === 64 ? 8 : 4;
    const vaAt = bits === 64 ? 16 : 8;
    const fszAt = bits === 64 ? 32 : 16;
    segments.push({
      type: table.getUint32(at, little),
      offset: r.word(table, at + offAt, 'p_offset'),
      vaddr: r.word(table, at + vaAt, 'p_vaddr'),
      filesz: r.word(table, at + fszAt, 'p_filesz'),
    });
  }
  const interp = segments.find((s) => s.type === PT_INTERP);
  const interpreter = interp
    ? cString(r, interp.offset, Math.min(interp.filesz, MAX_STRING), 'PT_INTERP')
    : undefined;
  const dyn = segments.find((s) => s.type === PT_DYNAMIC);
  const base = {
    bits,
    endian: little ? 'little' : 'big',
    type,
    machine,
    dynamic: dyn !== undefined,
  } as const;
  const info = { ...base, ...(interpreter !== undefined ? { interpreter } : {}) };
  if (!dyn) return { ...info, needed: [], runpath: [], rpath: [] };
  return { ...info, ...dynamicFacts(r, dyn, segments) };
}

/** dynamicFacts reads the dynamic section and resolves its strings through DT_STRTAB. */
function dynamicFacts(r: Reader, dyn: Segment, segments: readonly Segment[]) {
  const entSize = r.bits === 64 ? 16 : 8;
  const count = Math.min(Math.floor(dyn.filesz / entSize), MAX_DYN_ENTRIES);
  const v = r.bytes(dyn.offset, count * entSize, 'PT_DYNAMIC');
  const entries: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const tag = r.bits === 64 ? Number(v.getBigInt64(i * 16, r.little)) : v.getInt32(i * 8, r.little);
    if (tag === DT.NULL) break;
    entries.push([tag, r.word(v, i * entSize + entSize / 2, 'd_val')]);
  }
  const strtab = entries.find(([t]) => t === DT.STRTAB)?.[1];
  const strsz = entries.find(([t]) => t === DT.STRSZ)?.[1];
  const strings = entries.filter(
    ([t]) => t === DT.NEEDED || t === DT.SONAME || t === DT.RPATH || t === DT.RUNPATH,
  );
  if (strings.length === 0) return { needed: [], runpath: [], rpath: [] };
  if (strtab === undefined || strsz === undefined)
    throw new ElfFormatError('dynamic section has strings but no DT_STRTAB/DT_STRSZ');
  // DT_STRTAB is an address: the loaded segment holding it says where it is in the file.
  const load = segments.find((s) => s.type === PT_LOAD && strtab >= s.vaddr && strtab - s.vaddr < s.filesz);
  if (!load) throw new ElfFormatError(`DT_STRTAB address ${strtab} is in no loaded segment`);
  const tabOff = load.offset + (strtab - load.vaddr);
  const tabLen = Math.min(strsz, load.filesz - (strtab - load.vaddr));
  const str = (off: number) => {
    if (off >= tabLen)
      throw new ElfFormatError(`string offset ${off} beyond the string table (${tabLen} bytes)`);
    return cString(r, tabOff + off, Math.min(tabLen - off, MAX_STRING), 'dynamic string');
  };
  const needed: string[] = [];
  let runpath: string[] = [];
  let rpath: string[] = [];
  let soname: string | undefined;
  for (const [tag, val] of strings) {
    if (tag === DT.NEEDED) {
      if (needed.length >= MAX_NEEDED) throw new ElfFormatError(`more than ${MAX_NEEDED} DT_NEEDED entries`);
      needed.push(str(val));
    } else if (tag === DT.RUNPATH) runpath = str(val).split(':');
    else if (tag === DT.RPATH) rpath = str(val).split(':');
    else soname = str(val);
  }
  return { needed, runpath, rpath, ...(soname !== undefined ? { soname } : {}) };
}

/** cString reads a NUL-terminated string of at most `max` bytes; one without its NUL is an error. */
function cString(r: Reader, offset: number, max: number, what: string): string {
  const v = r.bytes(offset, max, what);
  const b = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const end = b.indexOf(0);
  if (end < 0)
    throw new ElfFormatError(`${what} at offset ${offset} has no terminating NUL within ${max} bytes`);
  return Buffer.from(b.subarray(0, end)).toString('utf8');
}
