import { openSync } from 'node:fs';
import { elfSection, withFileReader } from '../../../src/layers/elf.ts';

// The module list Go links into every binary (what `go version -m` prints), read in-process: the
// `.go.buildinfo` section of an ELF binary holds a 32-byte header ("\xff Go buildinf:", pointer
// size, flags) followed, since Go 1.18 (flag 2: strings inline), by two varint-length-prefixed
// strings, the Go version and the module info framed by 16-byte sentinels. Reading it costs a few
// small reads where `go version -m` costs a process (and the Go runtime's start) per binary.
// Anything unexpected returns undefined: the caller then asks `go version -m`.

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
/** Upper bound for the section and each string: real ones are a few KiB. */
const MAX_SECTION = 1024 * 1024;

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

/** goModInfo returns the module info text `go version -m` prints of `file`, or undefined. */
export function goModInfo(file: string): string | undefined {
  try {
    const section = withFileReader(openSync(file, 'r'), (r) => elfSection(r, '.go.buildinfo', MAX_SECTION));
    if (!section || section.length < 32) return undefined;
    const data = Buffer.from(section.buffer, section.byteOffset, section.byteLength);
    if (!data.subarray(0, MAGIC.length).equals(MAGIC) || (data[15]! & 0x2) === 0) return undefined;
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
    // Not a file, not ELF, headers that do not hold together: the caller asks `go version -m`.
    return undefined;
  }
}
