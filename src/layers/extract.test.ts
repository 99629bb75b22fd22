import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobStore } from '../layout/blob-store.ts';
import { extract, UnsafeTarError } from './extract.ts';
import { layerFromDirectory, writeLayer } from './layer-writer.ts';
import type { TarEntry } from './tar-writer.ts';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-extract-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

// Hostile archives are made with Python's tarfile, which (unlike our writer) will write anything.
const MAKE = `
import io, sys, tarfile, json
spec = json.loads(sys.argv[2])
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for e in spec:
        i = tarfile.TarInfo(e['name'])
        i.type = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'sym': tarfile.SYMTYPE,
                  'link': tarfile.LNKTYPE, 'chr': tarfile.CHRTYPE, 'fifo': tarfile.FIFOTYPE}[e['type']]
        i.linkname = e.get('link', '')
        i.mode = e.get('mode', 0o644)
        data = e.get('data', '').encode()
        i.size = len(data) if e['type'] == 'file' else 0
        t.addfile(i, io.BytesIO(data) if e['type'] == 'file' else None)
`;
type Spec = { name: string; type: string; link?: string; data?: string; mode?: number }[];
async function hostile(spec: Spec): Promise<string> {
  const f = path.join(tmp, `h-${Math.random().toString(36).slice(2)}.tar`);
  execFileSync('python3', ['-c', MAKE, f, JSON.stringify(spec)]);
  return f;
}

/** A fresh sandbox: `root` to extract into, `outside` next to it to prove nothing lands there. */
async function sandbox(): Promise<{ root: string; outside: string }> {
  const base = await fs.mkdtemp(path.join(tmp, 'sb-'));
  const root = path.join(base, 'a', 'root');
  const outside = path.join(base, 'outside');
  await fs.mkdir(root, { recursive: true });
  await fs.mkdir(outside);
  return { root, outside };
}

async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = path.relative(dir, path.join(e.parentPath, e.name));
    const st = await fs.lstat(path.join(dir, p));
    out.push(
      `${p} ${(st.mode & 0o7777).toString(8)}${st.isSymbolicLink() ? ` -> ${await fs.readlink(path.join(dir, p))}` : ''}`,
    );
  }
  return out.sort();
}

describe('extract()', () => {
  test('modes come out as written whatever the umask, and a file in the way is replaced', async () => {
    const spec: Spec = [
      { name: 'plain', type: 'file', data: 'p', mode: 0o644 },
      { name: 'exec', type: 'file', data: 'e', mode: 0o755 },
      { name: 'group-writable', type: 'file', data: 'g', mode: 0o664 },
      { name: 'private', type: 'file', data: 'x', mode: 0o600 },
      { name: 'setuid', type: 'file', data: 's', mode: 0o4755 },
      { name: 'sticky-dir', type: 'dir', mode: 0o1777 },
      { name: 'read-only', type: 'file', data: 'r', mode: 0o444 },
    ];
    const want = [
      'exec 755',
      'group-writable 664',
      'plain 644',
      'private 600',
      'read-only 444',
      'setuid 4755',
      'sticky-dir 1777',
    ];
    const f = await hostile(spec);
    for (const umask of [0o022, 0o077, 0o002, 0]) {
      const old = process.umask(umask);
      try {
        const { root } = await sandbox();
        // Something already where a file goes: replaced, never written through.
        await fs.symlink('/etc/hostname', path.join(root, 'plain'));
        await extract(createReadStream(f), root);
        assert.deepEqual(await tree(root), want, `umask ${umask.toString(8)}`);
        assert.equal(await fs.readFile(path.join(root, 'plain'), 'utf8'), 'p');
      } finally {
        process.umask(old);
      }
    }
  });

  const cases: [string, Spec, string, RegExp][] = [
    ['a ../ path', [{ name: '../evil', type: 'file', data: 'x' }], '../evil', /"\.\." in path/],
    ['an absolute path', [{ name: '/abs-evil', type: 'file', data: 'x' }], '/abs-evil', /absolute path/],
    [
      'a symlink that leaves the root, then a file through it',
      [
        { name: 'esc', type: 'sym', link: '../../outside' },
        { name: 'esc/pwned', type: 'file', data: 'x' },
      ],
      'esc/pwned',
      /a symlink on its path leaves the extraction root/,
    ],
    [
      'a chain of symlinks that leaves the root',
      [
        { name: 'd', type: 'dir', mode: 0o755 },
        { name: 'd/up', type: 'sym', link: '..' },
        { name: 'd/up2', type: 'sym', link: 'up/..' },
        { name: 'd/up2/outside/pwned', type: 'file', data: 'x' },
      ],
      'd/up2/outside/pwned',
      /leaves the extraction root/,
    ],
    [
      'a symlink through a missing directory that climbs out',
      [
        { name: 'l', type: 'sym', link: 'nothere/../../../outside' },
        { name: 'l/pwned', type: 'file', data: 'x' },
      ],
      'l/pwned',
      /leaves the extraction root/,
    ],
    ['a device node', [{ name: 'dev/null', type: 'chr' }], 'dev/null', /char device node not allowed/],
    ['a fifo', [{ name: 'pipe', type: 'fifo' }], 'pipe', /fifo not allowed/],
    [
      'a hard link to outside',
      [{ name: 'h', type: 'link', link: '../../outside/secret' }],
      'h',
      /"\.\." in path/,
    ],
  ];
  for (const [title, spec, entry, reason] of cases) {
    test(`refuses ${title}, naming the entry, writing nothing outside`, async () => {
      const { root, outside } = await sandbox();
      await fs.writeFile(path.join(outside, 'secret'), 's');
      const err = await extract(createReadStream(await hostile(spec)), root).then(
        () => assert.fail('extract should have refused'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UnsafeTarError, String(err));
      assert.equal(err.entry, entry);
      assert.match(
        err.message,
        new RegExp(`^refusing tar entry "${entry.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}": `),
      );
      assert.match(err.message, reason);
      assert.deepEqual(await fs.readdir(outside), ['secret']);
      assert.deepEqual(await fs.readdir(path.dirname(path.dirname(root))), ['a', 'outside']);
    });
  }

  test('absolute symlink targets resolve inside the root (container semantics)', async () => {
    const { root, outside } = await sandbox();
    const f = await hostile([
      { name: 'abs', type: 'sym', link: '/' },
      { name: 'abs/etc-ish/pwned', type: 'file', data: 'inside' },
    ]);
    await extract(createReadStream(f), root);
    assert.equal(await fs.readFile(path.join(root, 'etc-ish/pwned'), 'utf8'), 'inside');
    assert.deepEqual(await fs.readdir(outside), []);
  });

  test('a directory later replaced by a symlink does not get its mode applied through the link', async () => {
    const { root, outside } = await sandbox();
    const victim = path.join(outside, 'victim');
    await fs.writeFile(victim, 'v', { mode: 0o600 });
    await fs.chmod(victim, 0o600);
    const f = await hostile([
      { name: 'x', type: 'dir', mode: 0o777 },
      { name: 'x', type: 'sym', link: victim },
    ]);
    await extract(createReadStream(f), root);
    assert.equal((await fs.stat(victim)).mode & 0o777, 0o600);
    assert.equal(await fs.readlink(path.join(root, 'x')), victim);
  });

  test('an existing symlink is replaced by a file, never written through', async () => {
    const { root, outside } = await sandbox();
    await fs.writeFile(path.join(outside, 'target'), 'original');
    await fs.symlink(path.join(outside, 'target'), path.join(root, 'f'));
    await extract(createReadStream(await hostile([{ name: 'f', type: 'file', data: 'new' }])), root);
    assert.equal(await fs.readFile(path.join(outside, 'target'), 'utf8'), 'original');
    assert.equal(await fs.readFile(path.join(root, 'f'), 'utf8'), 'new');
    assert.ok((await fs.lstat(path.join(root, 'f'))).isFile());
  });

  test('whatever is in the way of an entry is replaced, never followed, and a directory already there is kept', async () => {
    const { root, outside } = await sandbox();
    await fs.writeFile(path.join(outside, 'keep'), 'host');
    // On disk before the layer: each kind of thing where the layer puts another kind.
    await fs.mkdir(path.join(root, 'dir-for-file/sub'), { recursive: true });
    await fs.writeFile(path.join(root, 'dir-for-file/sub/x'), 'x');
    await fs.writeFile(path.join(root, 'file-for-dir'), 'f');
    await fs.symlink(outside, path.join(root, 'link-for-dir'));
    await fs.mkdir(path.join(root, 'dir-for-link'));
    await fs.symlink(path.join(outside, 'keep'), path.join(root, 'link-for-link'));
    await fs.writeFile(path.join(root, 'file-for-hardlink'), 'old');
    await fs.mkdir(path.join(root, 'kept'));
    await fs.writeFile(path.join(root, 'kept/lower'), 'lower');
    const f = await hostile([
      { name: 'dir-for-file', type: 'file', data: 'now a file', mode: 0o640 },
      { name: 'file-for-dir', type: 'dir', mode: 0o750 },
      { name: 'link-for-dir', type: 'dir', mode: 0o700 },
      { name: 'link-for-dir/inside', type: 'file', data: 'in root' },
      { name: 'dir-for-link', type: 'sym', link: 'kept' },
      { name: 'link-for-link', type: 'sym', link: 'elsewhere' },
      { name: 'file-for-hardlink', type: 'link', link: 'dir-for-file' },
      { name: 'kept', type: 'dir', mode: 0o711 },
      { name: 'kept/upper', type: 'file', data: 'upper' },
    ]);
    await extract(createReadStream(f), root);
    assert.deepEqual(await tree(root), [
      'dir-for-file 640',
      'dir-for-link 777 -> kept',
      'file-for-dir 750',
      'file-for-hardlink 640',
      'kept 711',
      'kept/lower 644',
      'kept/upper 644',
      'link-for-dir 700',
      'link-for-dir/inside 644',
      'link-for-link 777 -> elsewhere',
    ]);
    assert.equal(await fs.readFile(path.join(root, 'file-for-hardlink'), 'utf8'), 'now a file');
    assert.deepEqual(await fs.readdir(outside), ['keep'], 'nothing written through the links');
    assert.equal(await fs.readFile(path.join(outside, 'keep'), 'utf8'), 'host');
  });

  test('a layer that fails in the middle of a file leaves no descriptor open (the half-written file, the layer source)', async () => {
    const { root } = await sandbox();
    const fds = async () => (await fs.readdir('/proc/self/fd')).length;
    const before = await fds();
    const big = 'x'.repeat(50_000);
    const f = await hostile([
      { name: 'a', type: 'file', data: big },
      { name: 'b', type: 'file', data: big },
    ]);
    for (let i = 0; i < 5; i++) {
      // Cut inside the body of "b": the archive ends while that file is being written.
      const cut = (await fs.readFile(f)).subarray(0, 512 + 50_176 + 512 + 10_000);
      await assert.rejects(extract(Readable.from([cut]), path.join(root, `t${i}`)), /truncated/);
      await assert.rejects(
        extract(createReadStream(f), path.join(root, `l${i}`), {
          limits: { maxBytes: 70_000, maxEntries: 10 },
        }),
        /more than/,
      );
    }
    assert.ok((await fds()) <= before + 1, 'descriptors of half-written files are closed');
  });

  test('a layer kiln wrote (gzip, zstd, plain) extracts to the same tree', async () => {
    const src = path.join(tmp, 'src');
    await fs.mkdir(path.join(src, 'bin'), { recursive: true });
    await fs.mkdir(path.join(src, 'ro'), { mode: 0o555 });
    await fs.chmod(path.join(src, 'ro'), 0o755);
    await fs.writeFile(path.join(src, 'ro', 'f'), 'ro');
    await fs.chmod(path.join(src, 'ro'), 0o555);
    await fs.writeFile(path.join(src, 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o4755 });
    await fs.chmod(path.join(src, 'bin', 'tool'), 0o4755);
    await fs.writeFile(path.join(src, 'data'), Buffer.alloc(100_000, 3));
    await fs.link(path.join(src, 'data'), path.join(src, 'data-hard'));
    await fs.symlink('bin/tool', path.join(src, 'tool'));
    const store = new BlobStore(path.join(tmp, 'xstore'));
    const want = await tree(src);
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      const layer = await layerFromDirectory(src, { store, compression });
      const out = path.join(tmp, `out-${compression}`);
      const r = await extract(await layer.compressed(), out);
      assert.deepEqual(await tree(out), want);
      assert.equal(r.bytes, 100_000 + 2 + 10);
      const a = await fs.stat(path.join(out, 'data'));
      const b = await fs.stat(path.join(out, 'data-hard'));
      assert.equal(a.ino, b.ino);
      assert.equal((await fs.stat(path.join(out, 'tool'))).mtimeMs, 315532801000);
      await fs.chmod(path.join(out, 'ro'), 0o755);
    }
    await fs.chmod(path.join(src, 'ro'), 0o755);
  });

  test('whiteouts delete lower files and opaque directories keep only this layer', async () => {
    const store = new BlobStore(path.join(tmp, 'wstore'));
    const f = (p: string, c = p): TarEntry => ({
      path: p,
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: c.length,
      open: () => Readable.from([Buffer.from(c)]),
    });
    const d = (p: string): TarEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0 });
    const lower = await writeLayer([d('a'), f('a/keep'), f('a/gone'), d('o'), f('o/old'), f('top')], {
      store,
    });
    const upper = await writeLayer(
      [d('a'), f('a/.wh.gone'), f('.wh.top'), d('o'), f('o/.wh..wh..opq', ''), f('o/new')],
      {
        store,
      },
    );
    const root = path.join(tmp, 'rootfs');
    await extract(await lower.compressed(), root, { whiteouts: true });
    await extract(await upper.compressed(), root, { whiteouts: true });
    assert.deepEqual(await tree(root), ['a 755', 'a/keep 644', 'o 755', 'o/new 644']);
    // Without the option, whiteout files are just files.
    const raw = path.join(tmp, 'raw');
    await extract(await upper.compressed(), raw);
    assert.ok((await tree(raw)).includes('.wh.top 644'));
  });

  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    test(`extracts what GNU tar --format=${format} writes (./ prefixes, long names, links)`, async () => {
      const src = path.join(tmp, `gnu-src-${format}`);
      const deep = path.join(
        src,
        ...Array.from({ length: format === 'ustar' ? 8 : 20 }, (_, i) => `dir${i}`),
      );
      await fs.mkdir(deep, { recursive: true });
      await fs.writeFile(path.join(deep, format === 'ustar' ? 'f' : `${'n'.repeat(120)}.txt`), 'deep');
      await fs.writeFile(path.join(src, 'a'), 'a');
      await fs.link(path.join(src, 'a'), path.join(src, 'a-link'));
      await fs.symlink('a', path.join(src, 's'));
      const archive = path.join(tmp, `gnu-${format}.tar`);
      execFileSync('tar', [`--format=${format}`, '-cf', archive, '-C', src, '.']);
      const out = path.join(tmp, `gnu-out-${format}`);
      await extract(createReadStream(archive), out);
      assert.deepEqual(
        (await tree(out)).map((l) => l.replace(/ \d+/, '')),
        (await tree(src)).map((l) => l.replace(/ \d+/, '')),
      );
      assert.equal((await fs.stat(path.join(out, 'a'))).ino, (await fs.stat(path.join(out, 'a-link'))).ino);
    });
  }

  test('owners: true applies uid/gid (as root) and keeps setuid bits; default leaves files to the caller', async () => {
    const store = new BlobStore(path.join(tmp, 'ostore'));
    const entries: TarEntry[] = [
      { path: 'd', type: 'dir', mode: 0o750, uid: 1000, gid: 1001 },
      {
        path: 'd/suid',
        type: 'file',
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        size: 1,
        open: () => Readable.from([Buffer.from('x')]),
      },
      { path: 'd/ln', type: 'symlink', mode: 0o777, uid: 1000, gid: 1001, linkname: 'suid' },
    ];
    const layer = await writeLayer(entries, { store });
    const withOwners = path.join(tmp, 'owners');
    await extract(await layer.compressed(), withOwners, { owners: process.getuid?.() === 0 });
    const st = await fs.stat(path.join(withOwners, 'd/suid'));
    assert.equal(st.mode & 0o7777, 0o4755);
    if (process.getuid?.() === 0) {
      assert.deepEqual([st.uid, st.gid], [1000, 1001]);
      const l = await fs.lstat(path.join(withOwners, 'd/ln'));
      assert.deepEqual([l.uid, l.gid], [1000, 1001]);
      assert.equal((await fs.stat(path.join(withOwners, 'd'))).uid, 1000);
    }
    const plain = path.join(tmp, 'no-owners');
    await extract(await layer.compressed(), plain);
    assert.equal((await fs.stat(path.join(plain, 'd/suid'))).uid, process.getuid?.() ?? 0);
  });

  test('a truncated archive is an error, not a short success', async () => {
    const f = await hostile([{ name: 'big', type: 'file', data: 'x'.repeat(5000) }]);
    const bytes = (await fs.readFile(f)).subarray(0, 2048);
    await assert.rejects(extract(Readable.from([bytes]), path.join(tmp, 'trunc')), /truncated/);
  });
});
