import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readArIndex } from './ar.ts';
import { extractDebData, readDebControl } from './deb.ts';
import { DebCache } from './deb-cache.ts';

const hasDpkgDeb = spawnSync('dpkg-deb', ['--version']).status === 0;
let work = '';

/** buildDeb makes a real .deb with dpkg-deb from a small tree (compression: xz, gzip or zstd). */
async function buildDeb(compression: 'xz' | 'gzip' | 'zstd'): Promise<string> {
  const src = join(work, `pkg-${compression}`);
  await mkdir(join(src, 'DEBIAN'), { recursive: true });
  await mkdir(join(src, 'usr/bin'), { recursive: true });
  await mkdir(join(src, 'bin'), { recursive: true });
  await mkdir(join(src, 'etc'), { recursive: true });
  await mkdir(join(src, `usr/share/doc/kiln-test`), { recursive: true });
  await writeFile(
    join(src, 'DEBIAN/control'),
    'Package: kiln-test\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: k <k@example.org>\nDescription: test\n long\n',
  );
  await writeFile(join(src, 'DEBIAN/conffiles'), '/etc/kiln.conf\n');
  await writeFile(join(src, 'DEBIAN/postinst'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  await writeFile(join(src, 'usr/bin/hello'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await writeFile(join(src, 'bin/tool'), 'x'.repeat(100_000), { mode: 0o4755 });
  await writeFile(join(src, 'etc/kiln.conf'), 'a=1\n');
  await writeFile(join(src, `usr/share/doc/kiln-test/copyright`), 'License: MIT\n');
  await symlink('hello', join(src, 'usr/bin/hi'));
  const long = `usr/share/${'d'.repeat(120)}`;
  await mkdir(join(src, long), { recursive: true });
  await writeFile(join(src, long, 'f'), 'long');
  const out = join(work, `kiln-test-${compression}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', `-Z${compression}`, '--build', src, out], {
    stdio: 'ignore',
  });
  return out;
}

describe('.deb reading', { skip: !hasDpkgDeb && 'dpkg-deb not installed' }, () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kiln-deb-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (const c of ['xz', 'gzip', 'zstd'] as const) {
    test(`reads control and extracts data (${c}) with merged-/usr rewrite and captured files`, async () => {
      const deb = await buildDeb(c);
      const members = await readArIndex(deb);
      assert.deepEqual(
        members.map((m) => m.name.replace(/\.(xz|gz|zst)$/, '')),
        ['debian-binary', 'control.tar', 'data.tar'],
      );
      const ctl = await readDebControl(deb);
      assert.equal(ctl.control.get('package'), 'kiln-test');
      assert.equal(ctl.files.get('conffiles')!.data.toString(), '/etc/kiln.conf\n');
      assert.equal(ctl.files.get('postinst')!.mode, 0o755);

      const root = join(work, `root-${c}`);
      await mkdir(root);
      const res = await extractDebData(deb, root, {
        rewrite: (p) => (p === 'bin' || p.startsWith('bin/') ? `usr/${p}` : p),
        skip: (p) => p.startsWith('usr/share/doc'),
        capture: (p) => p.endsWith('/copyright'),
      });
      assert.ok(res.paths.includes('/.'));
      assert.ok(res.paths.includes('/bin/tool'));
      assert.ok(res.paths.includes('/usr/bin/hi'));
      assert.equal((await lstat(join(root, 'usr/bin/tool'))).mode & 0o7777, 0o4755);
      assert.equal((await readFile(join(root, 'usr/bin/tool'))).length, 100_000);
      assert.equal(await readlink(join(root, 'usr/bin/hi')), 'hello');
      assert.equal(res.captured.get('usr/share/doc/kiln-test/copyright')!.toString(), 'License: MIT\n');
      await assert.rejects(lstat(join(root, 'usr/share/doc')), /ENOENT/);
      await assert.rejects(lstat(join(root, 'bin')), /ENOENT/);
      assert.equal(await readFile(join(root, `usr/share/${'d'.repeat(120)}/f`), 'utf8'), 'long');
    });
  }

  test('a link an earlier package left never lets a later entry out of the root', async () => {
    const outside = join(work, 'outside');
    await mkdir(outside);
    // Package one leaves an absolute link and one with more `..` than its depth (a root clamps
    // both; the host would not). Package two writes a file, a directory and a hard link through them.
    const one = join(work, 'links-src');
    await mkdir(join(one, 'DEBIAN'), { recursive: true });
    await mkdir(join(one, 'usr'), { recursive: true });
    await writeFile(
      join(one, 'DEBIAN/control'),
      'Package: links\nVersion: 1\nArchitecture: all\nMaintainer: k <k@example.org>\nDescription: t\n',
    );
    await symlink(outside, join(one, 'usr/abs'));
    await symlink(relative(join(work, 'root-links', 'usr'), outside), join(one, 'usr/up'));
    const oneDeb = join(work, 'links.deb');
    execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', one, oneDeb], { stdio: 'ignore' });
    const root = join(work, 'root-links');
    await mkdir(root);
    await extractDebData(oneDeb, root);
    for (const [name, entry] of [
      ['file-abs', 'usr/abs/planted'],
      ['file-up', 'usr/up/planted'],
      ['dir-abs', 'usr/abs/sub/'],
      ['dir-itself', 'usr/abs/'],
    ] as const) {
      const two = join(work, `two-${name}`);
      await mkdir(join(two, 'DEBIAN'), { recursive: true });
      await writeFile(
        join(two, 'DEBIAN/control'),
        `Package: two\nVersion: 1\nArchitecture: all\nMaintainer: k <k@example.org>\nDescription: t\n`,
      );
      // dpkg-deb would follow a link in its own tree: the entry is made as a real path there.
      if (entry.endsWith('/')) await mkdir(join(two, entry), { recursive: true });
      else {
        await mkdir(join(two, entry, '..'), { recursive: true });
        await writeFile(join(two, entry), 'planted');
      }
      const twoDeb = join(work, `two-${name}.deb`);
      execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', two, twoDeb], { stdio: 'ignore' });
      await assert.rejects(extractDebData(twoDeb, root), /leads out of the root/, name);
      assert.deepEqual(await readdir(outside), [], name);
    }
  });

  test('refuses a file that is not a .deb', async () => {
    const f = join(work, 'not.deb');
    await writeFile(f, 'hello world, definitely not ar');
    await assert.rejects(readDebControl(f), /not an ar archive/);
  });
});

describe('DebCache', { skip: !hasDpkgDeb && 'dpkg-deb not installed' }, () => {
  let server: ReturnType<typeof createServer>;
  let base = '';
  let deb: Buffer;
  let dir = '';
  before(async () => {
    work ||= await mkdtemp(join(tmpdir(), 'kiln-deb-'));
    dir = await mkdtemp(join(tmpdir(), 'kiln-debcache-'));
    await mkdir(work, { recursive: true });
    deb = await readFile(await buildDeb('xz'));
    server = createServer((req, res) => {
      if (req.url === '/good.deb') res.end(deb);
      else if (req.url === '/tampered.deb') {
        const t = Buffer.from(deb);
        t[t.length - 10]! ^= 0xff;
        res.end(t);
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  test('downloads, verifies and reuses; a tampered .deb is refused naming the package and leaves nothing', async () => {
    const cache = new DebCache(dir);
    const sha256 = createHash('sha256').update(deb).digest('hex');
    const ref = { name: 'kiln-test', version: '1.0-1', url: `${base}/good.deb`, sha256, size: deb.length };
    const seen: boolean[] = [];
    const [p] = await cache.fetchAll([ref], { progress: { onDone: (_r, cached) => seen.push(cached) } });
    assert.deepEqual(await readFile(p!), deb);
    await cache.fetchAll([ref], { progress: { onDone: (_r, cached) => seen.push(cached) } });
    assert.deepEqual(seen, [false, true]);

    const bad = { ...ref, name: 'evil', sha256: 'a'.repeat(64), url: `${base}/tampered.deb` };
    await assert.rejects(cache.fetchAll([bad]), /package evil 1\.0-1: .*sha256 mismatch/);
    assert.deepEqual((await readdir(dir)).sort(), [`${sha256}.deb`]);
    await assert.rejects(
      cache.fetchAll([{ ...ref, sha256: 'b'.repeat(64), url: `${base}/missing.deb` }]),
      /HTTP 404/,
    );
  });
});
