// The ELF reader against binutils' readelf: real binaries of this machine (/bin/ls, node, libc,
// a library built here with RUNPATH) and files of every class and byte order written by
// test/helpers/elf-writer.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { makeElf } from '../../test/helpers/elf-writer.ts';
import { bufferReader, ElfFormatError, parseElf, withFileReader } from './elf.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'kiln-elf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** What readelf says of a file: interpreter, NEEDED, RUNPATH, RPATH, SONAME, class, data, machine. */
function readelf(file: string) {
  const text = execFileSync('readelf', ['-W', '-h', '-l', '-d', file], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, LC_ALL: 'C' },
  });
  const all = (re: RegExp) => [...text.matchAll(re)].map((m) => m[1]!);
  const one = (re: RegExp) => re.exec(text)?.[1];
  return {
    bits: one(/Class:\s+ELF(\d+)/) === '64' ? 64 : 32,
    endian: /little endian/.test(one(/Data:\s+(.*)/) ?? '') ? 'little' : 'big',
    interpreter: one(/\[Requesting program interpreter: ([^\]]+)\]/),
    needed: all(/\(NEEDED\)\s+Shared library: \[([^\]]*)\]/g),
    runpath: one(/\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]/)?.split(':') ?? [],
    rpath: one(/\(RPATH\)\s+Library rpath: \[([^\]]*)\]/)?.split(':') ?? [],
    soname: one(/\(SONAME\)\s+Library soname: \[([^\]]*)\]/),
  };
}

function agree(file: string): void {
  const want = readelf(file);
  const got = withFileReader(openSync(file, 'r'), parseElf);
  assert.equal(got.bits, want.bits, file);
  assert.equal(got.endian, want.endian, file);
  assert.equal(got.interpreter, want.interpreter, file);
  assert.deepEqual(got.needed, want.needed, file);
  assert.deepEqual(got.runpath, want.runpath, file);
  assert.deepEqual(got.rpath, want.rpath, file);
  assert.equal(got.soname, want.soname, file);
}

describe('parseElf agrees with readelf', () => {
  test('real binaries of this machine', () => {
    const libc = execFileSync('gcc', ['-print-file-name=libc.so.6'], { encoding: 'utf8' }).trim();
    for (const f of ['/bin/ls', process.execPath, libc]) agree(f);
  });

  test('a library built here with RUNPATH $ORIGIN and SONAME, and an executable with RPATH', () => {
    writeFileSync(path.join(tmp, 'l.c'), 'int f(void) { return 1; }\n');
    writeFileSync(path.join(tmp, 'm.c'), 'int f(void);\nint main(void) { return f(); }\n');
    const cc = (args: string[]) => execFileSync('gcc', args, { cwd: tmp, stdio: 'ignore' });
    cc([
      '-shared',
      '-fPIC',
      '-Wl,-soname,libk.so.3',
      '-Wl,-rpath,$ORIGIN/x:/opt/y',
      '-Wl,--enable-new-dtags',
      '-o',
      'libk.so.3',
      'l.c',
    ]);
    cc(['-o', 'm', 'm.c', './libk.so.3', '-Wl,-rpath,$ORIGIN/../lib', '-Wl,--disable-new-dtags']);
    agree(path.join(tmp, 'libk.so.3'));
    agree(path.join(tmp, 'm'));
    const lib = withFileReader(openSync(path.join(tmp, 'libk.so.3'), 'r'), parseElf);
    assert.deepEqual(lib.runpath, ['$ORIGIN/x', '/opt/y']);
    assert.equal(lib.interpreter, undefined);
  });

  test('static binaries have neither interpreter nor dynamic section', () => {
    writeFileSync(path.join(tmp, 's.c'), 'int main(void) { return 0; }\n');
    execFileSync('musl-gcc', ['-static', '-o', 's', 's.c'], { cwd: tmp, stdio: 'ignore' });
    const s = withFileReader(openSync(path.join(tmp, 's'), 'r'), parseElf);
    assert.equal(s.interpreter, undefined);
    assert.deepEqual(s.needed, []);
    agree(path.join(tmp, 's'));
  });

  for (const bits of [32, 64] as const)
    for (const little of [true, false])
      test(`${bits}-bit ${little ? 'little' : 'big'}-endian files`, () => {
        const spec = {
          bits,
          little,
          machine: little ? 62 : 22,
          interp: '/lib/ld-test.so.1',
          needed: ['liba.so.1', 'libb.so.2'],
          soname: 'libself.so.0',
          rpath: '$ORIGIN/../lib:/opt/r',
          runpath: '/opt/run',
        };
        const file = path.join(tmp, `synthetic-${bits}-${little}`);
        writeFileSync(file, makeElf(spec));
        agree(file);
        const e = parseElf(bufferReader(makeElf(spec)));
        assert.equal(e.machine, spec.machine);
        assert.deepEqual(e.needed, spec.needed);
      });
});

describe('parseElf refuses what does not hold together', () => {
  const good = makeElf({ bits: 64, little: true, needed: ['liba.so.1'], interp: '/lib/ld.so' });
  const bad = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  for (const [name, buf, re] of [
    ['too small', Buffer.from([0x7f, 0x45, 0x4c, 0x46]), /too small/],
    ['not ELF', Buffer.alloc(64), /no ELF magic/],
    ['an unknown class', bad((b) => b.writeUInt8(9, 4)), /unknown ELF class/],
    ['program headers past the end', bad((b) => b.writeBigUInt64LE(1n << 40n, 32)), /outside the file/],
    ['an offset beyond 2^53', bad((b) => b.writeBigUInt64LE(1n << 62n, 32)), /out of range/],
    ['too many program headers', bad((b) => b.writeUInt16LE(0xffff, 56)), /program headers/],
    ['a program header size too small', bad((b) => b.writeUInt16LE(8, 54)), /program header size/],
  ] as const)
    test(name, () =>
      assert.throws(
        () => parseElf(bufferReader(buf)),
        (e: Error) => e instanceof ElfFormatError && re.test(e.message),
      ),
    );
});
