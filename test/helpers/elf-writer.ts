// makeElf writes a minimal ELF file of either class and byte order: one PT_LOAD over the whole
// file, PT_INTERP when asked, and PT_DYNAMIC with DT_NEEDED/DT_SONAME/DT_RPATH/DT_RUNPATH strings
// in a DT_STRTAB. Enough for the loader facts (readelf reads it too); no code, no sections.

export interface ElfSpec {
  readonly bits: 32 | 64;
  readonly little: boolean;
  readonly type?: number;
  readonly machine?: number;
  readonly interp?: string;
  readonly needed?: readonly string[];
  readonly soname?: string;
  readonly rpath?: string;
  readonly runpath?: string;
}

const BASE = 0x400000;

export function makeElf(s: ElfSpec): Buffer {
  const w = s.bits === 64 ? 8 : 4;
  const ehsize = s.bits === 64 ? 64 : 52;
  const phentsize = s.bits === 64 ? 56 : 32;
  const strs: string[] = [''];
  const strOff = new Map<string, number>();
  let strLen = 1;
  const str = (x: string) => {
    const known = strOff.get(x);
    if (known !== undefined) return known;
    strOff.set(x, strLen);
    strs.push(x);
    strLen += Buffer.byteLength(x) + 1;
    return strLen - Buffer.byteLength(x) - 1;
  };
  const dyn: [number, number][] = [];
  for (const n of s.needed ?? []) dyn.push([1, str(n)]);
  if (s.soname !== undefined) dyn.push([14, str(s.soname)]);
  if (s.rpath !== undefined) dyn.push([15, str(s.rpath)]);
  if (s.runpath !== undefined) dyn.push([29, str(s.runpath)]);
  const strtab = Buffer.from(`${strs.join('\0')}\0`);
  const phnum = 2 + (s.interp !== undefined ? 1 : 0);
  const interpBuf = s.interp !== undefined ? Buffer.from(`${s.interp}\0`) : Buffer.alloc(0);
  const phoff = ehsize;
  const interpOff = phoff + phnum * phentsize;
  const strOffset = interpOff + interpBuf.length;
  const dynOff = Math.ceil((strOffset + strtab.length) / 8) * 8;
  dyn.push([5, BASE + strOffset], [10, strtab.length], [0, 0]);
  const dynSize = dyn.length * 2 * w;
  const size = dynOff + dynSize;
  const b = Buffer.alloc(size);
  const u16 = (o: number, v: number) => (s.little ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const u32 = (o: number, v: number) => (s.little ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const word = (o: number, v: number) =>
    w === 8 ? (s.little ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o)) : u32(o, v);
  b.set([0x7f, 0x45, 0x4c, 0x46, s.bits === 64 ? 2 : 1, s.little ? 1 : 2, 1], 0);
  u16(16, s.type ?? 2);
  u16(18, s.machine ?? 62);
  u32(20, 1);
  word(24, BASE);
  word(s.bits === 64 ? 32 : 28, phoff);
  u16(s.bits === 64 ? 52 : 40, ehsize);
  u16(s.bits === 64 ? 54 : 42, phentsize);
  u16(s.bits === 64 ? 56 : 44, phnum);
  u16(s.bits === 64 ? 58 : 46, s.bits === 64 ? 64 : 40);
  const phdr = (i: number, type: number, off: number, filesz: number) => {
    const at = phoff + i * phentsize;
    u32(at, type);
    if (s.bits === 64) {
      u32(at + 4, 4);
      word(at + 8, off);
      word(at + 16, BASE + off);
      word(at + 24, BASE + off);
      word(at + 32, filesz);
      word(at + 40, filesz);
      word(at + 48, type === 1 ? 0x1000 : 8);
    } else {
      word(at + 4, off);
      word(at + 8, BASE + off);
      word(at + 12, BASE + off);
      word(at + 16, filesz);
      word(at + 20, filesz);
      u32(at + 24, 4);
      word(at + 28, type === 1 ? 0x1000 : 4);
    }
  };
  let i = 0;
  if (s.interp !== undefined) phdr(i++, 3, interpOff, interpBuf.length);
  phdr(i++, 1, 0, size);
  phdr(i++, 2, dynOff, dynSize);
  interpBuf.copy(b, interpOff);
  strtab.copy(b, strOffset);
  dyn.forEach(([tag, val], k) => {
    word(dynOff + k * 2 * w, tag);
    word(dynOff + k * 2 * w + w, val);
  });
  return b;
}
