import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type ByteReader, ElfFormatError, parseElf } from '../../src/layers/elf.ts';
import { type ElfSpec, makeElf } from '../helpers/elf-writer.ts';
import { expectCleanError, params } from './fuzz.ts';

// Property-based fuzzing of the ELF reader: launch layers come from buildpacks, so any file that
// starts with the ELF magic must give loader facts or one ElfFormatError, never a crash, a read
// outside the file, or work out of proportion to the file's size.

/** A reader that fails the test on any read outside the file and counts the bytes asked for. */
function strictReader(buf: Uint8Array): ByteReader & { readonly asked: () => number } {
  let asked = 0;
  return {
    size: buf.length,
    read(offset, length) {
      assert.ok(Number.isSafeInteger(offset) && offset >= 0 && offset <= buf.length, `read at ${offset}`);
      assert.ok(
        length >= 0 && offset + length <= buf.length,
        `read of ${length} at ${offset} (size ${buf.length})`,
      );
      asked += length;
      return buf.subarray(offset, offset + length);
    },
    asked: () => asked,
  };
}

/** parseBounded parses, checking the outcome is facts or a clean refusal and the reads stay bounded. */
function parseBounded(buf: Uint8Array): void {
  const r = strictReader(buf);
  try {
    parseElf(r);
  } catch (e) {
    expectCleanError(e, [ElfFormatError]);
  }
  // Headers, the program header table (capped), the dynamic section (capped) and strings (capped).
  assert.ok(r.asked() <= 64 + 256 * 4096 + 16 * 65536 + 1100 * 4096 + 16, `read ${r.asked()} bytes`);
}

const name = fc.stringMatching(/^[A-Za-z0-9._$/+-]{1,40}$/);
const spec: fc.Arbitrary<ElfSpec> = fc.record(
  {
    bits: fc.constantFrom(32 as const, 64 as const),
    little: fc.boolean(),
    type: fc.constantFrom(2, 3),
    machine: fc.integer({ min: 0, max: 0xffff }),
    interp: name,
    needed: fc.array(name, { maxLength: 8 }),
    soname: name,
    rpath: name,
    runpath: name,
  },
  { requiredKeys: ['bits', 'little', 'needed'] },
);

test('well-formed files of any class and byte order read back as written', () => {
  fc.assert(
    fc.property(spec, (s) => {
      const e = parseElf(strictReader(makeElf(s)));
      assert.equal(e.bits, s.bits);
      assert.equal(e.endian, s.little ? 'little' : 'big');
      assert.equal(e.interpreter, s.interp);
      assert.deepEqual(e.needed, s.needed);
      assert.equal(e.soname, s.soname);
      assert.deepEqual(e.rpath, s.rpath === undefined ? [] : s.rpath.split(':'));
      assert.deepEqual(e.runpath, s.runpath === undefined ? [] : s.runpath.split(':'));
    }),
    params(300),
  );
});

test('any bytes after the magic: facts or ElfFormatError, reads in bounds', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 512 }),
      fc.constantFrom(1, 2),
      fc.constantFrom(1, 2),
      (tail, cls, data) => {
        parseBounded(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, cls, data, 1, ...tail]));
      },
    ),
    params(2000),
  );
});

test('mutated well-formed files: facts or ElfFormatError, reads in bounds', () => {
  const mutation = fc.array(
    fc.record({
      at: fc.nat(),
      value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constant(0xff), fc.constant(0)),
    }),
    { minLength: 1, maxLength: 12 },
  );
  fc.assert(
    fc.property(spec, mutation, fc.nat({ max: 64 }), (s, muts, cut) => {
      const b = Buffer.from(makeElf(s));
      for (const m of muts) b[m.at % b.length] = m.value;
      parseBounded(b.subarray(0, Math.max(0, b.length - cut)));
    }),
    params(2000),
  );
});
