import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_ZIP_LIMITS, extractAppZip, isAppArchive } from './app-zip.ts';

// Hostile zips made with Python's zipfile (an independent writer): traversal, absolute names,
// symlink entries, a deflate bomb, a corrupted CRC, too many entries.

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-appzip-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function zip(name: string, script: string): string {
  const file = path.join(dir, name);
  execFileSync('python3', [
    '-c',
    `import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_DEFLATED)\n${script}\nz.close()`,
    file,
  ]);
  return file;
}

describe('app zip', () => {
  test('files, directories and the executable bit come out; a directory is not an archive', async () => {
    const f = zip(
      'ok.zip',
      'z.writestr("a/b.txt","hello")\ni=zipfile.ZipInfo("run.sh")\ni.external_attr=(0o100755<<16)\ni.create_system=3\nz.writestr(i,"#!/bin/sh")\nz.writestr("d/","")',
    );
    assert.equal(await isAppArchive(f), true);
    assert.equal(await isAppArchive(dir), false);
    const out = await extractAppZip(f, path.join(dir, 'ok'));
    assert.equal(await readFile(path.join(out, 'a', 'b.txt'), 'utf8'), 'hello');
    assert.equal((await stat(path.join(out, 'run.sh'))).mode & 0o777, 0o755);
    assert.ok((await stat(path.join(out, 'd'))).isDirectory());
  });

  for (const [name, script, why] of [
    ['dotdot', 'z.writestr("../x","x")', /unsafe name/],
    ['nested-dotdot', 'z.writestr("a/../../x","x")', /unsafe name/],
    ['absolute', 'z.writestr("/etc/x","x")', /unsafe name/],
    ['backslash', 'z.writestr("a\\\\..\\\\x","x")', /unsafe name/],
    [
      'symlink',
      'i=zipfile.ZipInfo("link")\ni.external_attr=(0o120777<<16)\ni.create_system=3\nz.writestr(i,"/etc/passwd")',
      /is a link or device/,
    ],
  ] as const) {
    test(`refused: ${name}`, async () => {
      const f = zip(`${name}.zip`, script);
      const dest = path.join(dir, `out-${name}`);
      await assert.rejects(extractAppZip(f, dest), why);
      // Nothing escaped: only the destination (if created) holds anything.
      assert.ok(!(await readdir(dir)).includes('x'));
    });
  }

  test('a deflate bomb and a wrong size are stopped by the declared size; limits hold', async () => {
    const bomb = zip('bomb.zip', 'z.writestr("big", b"\\0" * (64 << 20))');
    // Lie about the size in the central directory: 1 byte declared.
    const buf = await readFile(bomb);
    const cd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    buf.writeUInt32LE(1, cd + 24);
    await writeFile(bomb, buf);
    await assert.rejects(
      extractAppZip(bomb, path.join(dir, 'out-bomb')),
      /larger than its declared 1 bytes|declared 1/,
    );
    const many = zip('many.zip', 'for n in range(20): z.writestr(f"f{n}","x")');
    await assert.rejects(
      extractAppZip(many, path.join(dir, 'out-many'), { ...DEFAULT_ZIP_LIMITS, entries: 10 }),
      /more than 10 entries/,
    );
    const total = zip('total.zip', 'z.writestr("a", b"x" * 4096)');
    await assert.rejects(
      extractAppZip(total, path.join(dir, 'out-total'), { ...DEFAULT_ZIP_LIMITS, totalBytes: 100 }),
      /more than 100 bytes uncompressed/,
    );
  });

  test('a corrupted entry fails its CRC', async () => {
    const f = zip('crc.zip', 'z.writestr("a.txt","hello world")');
    const buf = await readFile(f);
    const cd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    buf.writeUInt32LE((buf.readUInt32LE(cd + 16) ^ 1) >>> 0, cd + 16);
    await writeFile(f, buf);
    await assert.rejects(extractAppZip(f, path.join(dir, 'out-crc')), /CRC mismatch/);
  });
});
