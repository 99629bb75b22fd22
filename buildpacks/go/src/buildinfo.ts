import { closeSync, openSync, readSync } from 'node:fs';

// The module list Go links into every binary (what `go version -m` prints), read in-process: the
// `.go.buildinfo` section of an ELF binary holds a 32-byte header ("\xff Go buildinf:", pointer
// size, flags) followed, since Go 1.18 (flag 2: strings inline), by two varint-length-prefixed
// strings, the Go version and the module info framed by 16-byte sentinels. Reading it costs a few
// small reads where `go version -m` costs a process (and the Go runtime's start) per binary.
// Anything unexpected returns undefined: the caller then asks `go version -m`.

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
/** Upper bound for the section and each string: real ones are a few KiB. */
const MAX_SECTION = 1024 * 1024;

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

/** uvarint decodes an unsigned LEB128 varint at `at`: [value, bytes used], or undefined. */
function uvarint(buf: Buffer, at: number): [number, number] | undefined {
  let value = 0;
  for (let i = 0; i < 5 && at + i < buf.length; i++) {
    const b = buf[at + i]!;
    value += (b & 0x7f) * 2 ** (7 * i);
    if (b < 0x80) return [value, i + 1];
  }
  return undefined;
}

/** sectionOf returns the bytes of ELF64 little-endian section `name`, or undefined. */
function sectionOf(fd: number, name: string): Buffer | undefined {
  const eh = readAt(fd, 0, 64);
  if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return undefined;
  const shoff = Number(eh.readBigUInt64LE(0x28));
  const shentsize = eh.readUInt16LE(0x3a);
  const shnum = eh.readUInt16LE(0x3c);
  const shstrndx = eh.readUInt16LE(0x3e);
  if (shentsize < 64 || shnum === 0 || shnum > 4096 || shstrndx >= shnum) return undefined;
  const table = readAt(fd, shoff, shentsize * shnum);
  if (table.length !== shentsize * shnum) return undefined;
  const header = (i: number) => ({
    name: table.readUInt32LE(i * shentsize),
    offset: Number(table.readBigUInt64LE(i * shentsize + 0x18)),
    size: Number(table.readBigUInt64LE(i * shentsize + 0x20)),
  });
  const strtab = header(shstrndx);
  if (strtab.size > MAX_SECTION) return undefined;
  const names = readAt(fd, strtab.offset, strtab.size);
  const wanted = Buffer.from(`${name}\0`, 'latin1');
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (h.name + wanted.length > names.length) continue;
    if (!names.subarray(h.name, h.name + wanted.length).equals(wanted)) continue;
    if (h.size < 32 || h.size > MAX_SECTION) return undefined;
    const bytes = readAt(fd, h.offset, h.size);
    return bytes.length === h.size ? bytes : undefined;
  }
  return undefined;
}

/** goModInfo returns the module info text `go version -m` prints of `file`, or undefined. */
export function goModInfo(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const data = sectionOf(fd, '.go.buildinfo');
    if (!data?.subarray(0, MAGIC.length).equals(MAGIC) || (data[15]! & 0x2) === 0) return undefined;
    const version = uvarint(data, 32);
    if (!version) return undefined;
    const at = 32 + version[1] + version[0];
    const mod = uvarint(data, at);
    if (!mod || at + mod[1] + mod[0] > data.length) return undefined;
    const text = data.subarray(at + mod[1], at + mod[1] + mod[0]);
    // Go frames the text with 16-byte sentinels, the last line ending just before the second.
    if (text.length < 33 || text[text.length - 17] !== 0x0a) return undefined;
    return text.subarray(16, text.length - 16).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
