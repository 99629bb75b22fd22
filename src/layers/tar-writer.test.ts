import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { sha256 } from '../oci/digest.ts';
import { comparePaths, type TarEntry, tarChunks } from './tar-writer.ts';

async function tarBytes(entries: TarEntry[], epoch?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of tarChunks(entries, epoch === undefined ? {} : { epoch })) parts.push(b);
  return Buffer.concat(parts);
}

function file(p: string, content: string, mode = 0o644, uid = 1000, gid = 1000): TarEntry {
  const b = Buffer.from(content);
  return { path: p, type: 'file', mode, uid, gid, size: b.length, open: () => Readable.from([b]) };
}

const small: TarEntry[] = [
  file('app/hello.txt', 'hello\n'),
  { path: 'app', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
  { path: 'app/link', type: 'symlink', mode: 0o777, uid: 1000, gid: 1000, linkname: 'hello.txt' },
  file('app/bin/run', '#!/bin/sh\necho hi\n', 0o4755, 0, 0),
  { path: 'app/bin', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { path: 'app/hlink', type: 'link', mode: 0o644, uid: 1000, gid: 1000, linkname: 'app/hello.txt' },
  { path: 'tmp', type: 'dir', mode: 0o1777, uid: 0, gid: 0 },
];

describe('tarChunks()', () => {
  test('writes golden bytes for a small tree (any input order)', async () => {
    const a = await tarBytes(small);
    const b = await tarBytes([...small].reverse());
    assert.deepEqual(a, b);
    // Golden digest: changing this means every layer kiln ever made changes digest.
    assert.equal(sha256(a), 'sha256:5b60bc456d8a3a572c3f6b3dd9b329c69e2bfc3588f3384b37200f53e9760239');
  });

  test('GNU tar reads entries, modes, owners, mtime, and the sorted order', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-tar-'));
    try {
      const f = path.join(dir, 'x.tar');
      await fs.writeFile(f, await tarBytes(small));
      const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', f], {
        env: { ...process.env, TZ: 'UTC' },
      })
        .toString()
        .trim()
        .split('\n');
      assert.deepEqual(
        listing.map((l) => l.split(/\s+/).slice(0, 2).join(' ') + ' ' + l.split(/\s+/).slice(3, 5).join(' ')),
        [
          'drwxr-xr-x 1000/1000 1980-01-01 00:00:01',
          'drwxr-xr-x 0/0 1980-01-01 00:00:01',
          '-rwsr-xr-x 0/0 1980-01-01 00:00:01',
          '-rw-r--r-- 1000/1000 1980-01-01 00:00:01',
          'hrw-r--r-- 1000/1000 1980-01-01 00:00:01',
          'lrwxrwxrwx 1000/1000 1980-01-01 00:00:01',
          'drwxrwxrwt 0/0 1980-01-01 00:00:01',
        ],
      );
      assert.match(listing[4]!, /app\/hlink link to app\/hello.txt$/);
      execFileSync('tar', ['-xf', f, '-C', dir]);
      assert.equal(await fs.readFile(path.join(dir, 'app/bin/run'), 'utf8'), '#!/bin/sh\necho hi\n');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('long, deep and non-ASCII names and link targets survive GNU tar and python tarfile', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const deep = `${'a/'.repeat(70)}file`;
    const entries: TarEntry[] = [
      file(long, 'long'),
      file(deep, 'deep'),
      file('ünïcødé/文件.txt', 'utf8'),
      { path: 'sym', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: `/${'t'.repeat(200)}` },
      file('bigid', 'id', 0o600, 70_000_000, 80_000_000),
    ];
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-tar-'));
    try {
      const f = path.join(dir, 'x.tar');
      await fs.writeFile(f, await tarBytes(entries));
      const names = execFileSync('tar', ['-tf', f]).toString().trim().split('\n').sort(comparePaths);
      assert.deepEqual(names, [deep, 'bigid', long, 'sym', 'ünïcødé/文件.txt'].sort(comparePaths));
      const py = execFileSync('python3', [
        '-c',
        'import sys,tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name, m.uid, m.gid, m.linkname, m.mtime)',
        f,
      ])
        .toString()
        .trim()
        .split('\n');
      assert.ok(py.includes(`bigid 70000000 80000000  315532801`), py.join('\n'));
      assert.ok(py.includes(`sym 0 0 /${'t'.repeat(200)} 315532801`));
      assert.ok(py.includes(`ünïcødé/文件.txt 1000 1000  315532801`));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('uses the given epoch, refuses duplicates, .. and files that change size', async () => {
    const a = await tarBytes([file('x', 'x')], 1700000000);
    assert.equal(a.subarray(136, 147).toString(), (1700000000).toString(8).padStart(11, '0'));
    await assert.rejects(tarBytes([file('x', 'a'), file('./x', 'b')]), /duplicate tar entry path "x"/);
    await assert.rejects(tarBytes([file('a/../../x', 'a')]), /"\.\." is not allowed/);
    const early: TarEntry = { path: 'a', type: 'link', mode: 0o644, uid: 0, gid: 0, linkname: 'b' };
    await assert.rejects(tarBytes([early, file('b', 'b')]), /hard link "a" points to "b", which comes later/);
    const liar: TarEntry = { ...file('x', 'abc'), size: 5 };
    await assert.rejects(tarBytes([liar]), /file "x" changed while being archived: expected 5 bytes, read 3/);
  });
});
