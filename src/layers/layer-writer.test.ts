import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobStore } from '../layout/blob-store.ts';
import { sha256 } from '../oci/digest.ts';
import { MediaType } from '../oci/media-types.ts';
import { imageFrom } from '../oci/memory.ts';
import { validateImage } from '../oci/validate.ts';
import { layerFromDirectory, layerFromFile, writeLayer } from './layer-writer.ts';
import { type TarEntry, tarChunks } from './tar-writer.ts';
import { walk } from './walk.ts';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-lw-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** makeTree writes the same tree every time: content and modes fixed, mtimes whatever the clock says. */
async function makeTree(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'sub/deeper'), { recursive: true });
  await fs.writeFile(path.join(dir, 'a.txt'), 'alpha\n');
  await fs.writeFile(path.join(dir, 'sub/b.bin'), Buffer.alloc(70_000, 7));
  await fs.writeFile(path.join(dir, 'sub/deeper/c'), 'c');
  await fs.symlink('../a.txt', path.join(dir, 'sub/to-a'));
  await fs.link(path.join(dir, 'sub/b.bin'), path.join(dir, 'sub/also-b'));
  await fs.writeFile(path.join(dir, 'run'), '#!/bin/sh\n');
  for (const [p, m] of [
    ['.', 0o755],
    ['sub', 0o750],
    ['sub/deeper', 0o2755],
    ['a.txt', 0o644],
    ['sub/b.bin', 0o600],
    ['sub/deeper/c', 0o444],
    ['run', 0o4755],
  ] as const)
    await fs.chmod(path.join(dir, p), m);
}

describe('writeLayer()', () => {
  test('bytes stay what they were: many small files, one spanning several write buffers, an empty one', async () => {
    // Pinned digests: how the writer reads, chunks and hands bytes to the compressor may change
    // for speed, the bytes may not (image digests of every earlier build depend on them). The
    // compressed digests are those of the zlib/zstd bundled with the Node.js of scripts/node.sh.
    const dir = path.join(tmp, 'golden');
    const bytes = (n: number, seed: number) => {
      const b = Buffer.alloc(n);
      let x = seed;
      for (let i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        b[i] = ((x >>> 24) % 64) + 32;
      }
      return b;
    };
    await fs.mkdir(path.join(dir, 'many'), { recursive: true });
    for (let i = 0; i < 300; i++) await fs.writeFile(path.join(dir, 'many', `f${i}`), bytes(100 + i * 37, i));
    await fs.writeFile(path.join(dir, 'big'), bytes(3 * 1048576 + 1234, 99));
    await fs.writeFile(path.join(dir, 'empty'), '');
    const store = new BlobStore(path.join(tmp, 'golden-store'));
    const diffID = 'sha256:e4fa65537169651b0c4c04ac7f7b7546bd9b5c671ce8d0da39fb11cb139baa36';
    const want = {
      gzip: 'sha256:a5089ff401abb923c2418b89b7ffb1ebb28d83d65aff94116e6bce3356cef35d',
      zstd: 'sha256:455b88c433fa7f5fc8e3f871c896e6e9515cbbbb9ecbf86fea3a08eb0743cffc',
      none: diffID,
    };
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      const layer = await layerFromDirectory(dir, { store, compression, uid: 0, gid: 0 });
      assert.equal(await layer.diffID(), diffID, compression);
      assert.equal(await layer.digest(), want[compression], compression);
      assert.equal(sha256(await fs.readFile(layer.path)), want[compression], compression);
    }
  });

  test('the same tree under different umasks and clocks gives the same diffID and digest', async () => {
    const store = new BlobStore(path.join(tmp, 'store'));
    const results: string[] = [];
    for (const [i, umask] of [0o022, 0o077].entries()) {
      const old = process.umask(umask);
      try {
        const dir = path.join(tmp, `tree${i}`);
        await makeTree(dir);
        const when = new Date(Date.UTC(2001 + i * 20, 1, 2));
        for (const p of ['a.txt', 'sub', 'sub/b.bin', '.']) await fs.utimes(path.join(dir, p), when, when);
        for (const compression of ['gzip', 'zstd', 'none'] as const) {
          const layer = await layerFromDirectory(dir, {
            store,
            compression,
            uid: 1000,
            gid: 1000,
            prefix: 'workspace',
          });
          results.push(`${compression} ${await layer.digest()} ${await layer.diffID()}`);
        }
      } finally {
        process.umask(old);
      }
    }
    assert.deepEqual(results.slice(0, 3), results.slice(3));
    assert.equal(new Set(results.map((r) => r.split(' ')[2])).size, 1, 'one diffID whatever the compression');
  });

  test('sizes and digests agree with the stored bytes; gzip output is what gunzip and tar read', async () => {
    const store = new BlobStore(path.join(tmp, 'store2'));
    const dir = path.join(tmp, 'tree-v');
    await makeTree(dir);
    const layer = await layerFromDirectory(dir, { store, uid: 0, gid: 0 });
    assert.equal(layer.mediaType, MediaType.OciLayerGzip);
    const blob = await fs.readFile(layer.path);
    assert.equal(sha256(blob), await layer.digest());
    assert.equal(blob.length, await layer.size());
    assert.equal(blob[9], 3, 'gzip OS byte fixed (Unix)');
    assert.equal(blob.readUInt32LE(4), 0, 'gzip mtime fixed at 0');
    const tar = execFileSync('gzip', ['-dc'], { input: blob });
    assert.equal(sha256(tar), await layer.diffID());
    assert.equal(tar.length, layer.uncompressedSize);
    const list = execFileSync('tar', ['-tv'], { input: tar }).toString();
    assert.match(list, /hrw------- 0\/0 +0 1980-01-01 00:00 sub\/b.bin link to sub\/also-b/);
    assert.match(list, /-rwsr-xr-x 0\/0 .* run/);
    const stat = await fs.stat(layer.path);
    assert.equal(stat.mode & 0o777, 0o644);
    const img = imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [layer] });
    await validateImage(img);
    // layerFromFile reuses a blob without recompressing and derives the diffID by reading.
    const again = await layerFromFile(layer.path, layer.mediaType, store, { digest: await layer.digest() });
    assert.equal(await again.diffID(), await layer.diffID());
    const other = new BlobStore(path.join(tmp, 'store3'));
    const copied = await layerFromFile(layer.path, layer.mediaType, other);
    assert.equal(await copied.digest(), await layer.digest());
  });

  test('the packing hot path writes exactly the bytes of tarChunks() (buffer and arena wrap-arounds)', async () => {
    const dir = path.join(tmp, 'tree-big');
    await fs.mkdir(path.join(dir, 'small'), { recursive: true });
    // ~12 MB of small files (more than the read-ahead arena) and files straddling 1 MiB buffers.
    for (let i = 0; i < 60; i++)
      await fs.writeFile(path.join(dir, 'small', `f${i}`), Buffer.alloc(200_000 + i * 997, i));
    await fs.writeFile(path.join(dir, 'big'), Buffer.alloc(3 * 1024 * 1024 + 123, 9));
    await fs.writeFile(path.join(dir, 'empty'), '');
    const entries = await walk(dir, { uid: 1, gid: 2 });
    const synthetic: TarEntry = {
      path: 'synthetic',
      type: 'file',
      mode: 0o600,
      uid: 0,
      gid: 0,
      size: 5,
      open: () => Readable.from([Buffer.from('ab'), Buffer.from('cde')]),
    };
    const chunks: Buffer[] = [];
    for await (const c of tarChunks([...entries, synthetic])) chunks.push(c);
    const want = Buffer.concat(chunks);
    const store = new BlobStore(path.join(tmp, 'store-big'));
    const layer = await writeLayer([...entries, synthetic], { store, compression: 'none' });
    assert.equal(await layer.diffID(), sha256(want));
    assert.equal(layer.uncompressedSize, want.length);
    assert.deepEqual(await fs.readFile(layer.path), want);
    const gz = await writeLayer([...entries, synthetic], { store, compression: 'gzip', level: 1 });
    assert.equal(await gz.diffID(), sha256(want));
    await validateImage(imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [gz, layer] }));
  });

  test('a failing entry leaves no blob and no temp file', async () => {
    const store = new BlobStore(path.join(tmp, 'store4'));
    const entries = await walk(path.join(tmp, 'tree-v'));
    const bad = entries.map((e) => (e.type === 'file' ? { ...e, size: (e.size ?? 0) + 1 } : e));
    await assert.rejects(writeLayer(bad, { store }), /changed while being archived/);
    assert.deepEqual(await fs.readdir(path.join(store.root, 'blobs')), []);
  });

  test('walk() skips fifos and sockets, prunes filtered directories, never follows symlinks', async () => {
    const dir = path.join(tmp, 'tree-s');
    await fs.mkdir(path.join(dir, 'node_modules/x'), { recursive: true });
    await fs.writeFile(path.join(dir, 'node_modules/x/i.js'), '');
    await fs.mkdir(path.join(dir, 'real'));
    await fs.writeFile(path.join(dir, 'real/f'), 'f');
    await fs.symlink('real', path.join(dir, 'dirlink'));
    await fs.symlink('/etc', path.join(dir, 'etc'));
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    const skipped: string[] = [];
    const seen: string[] = [];
    const entries = await walk(dir, {
      filter: (rel) => {
        seen.push(rel);
        return rel !== 'node_modules';
      },
      onSkip: (rel, why) => skipped.push(`${rel} ${why}`),
    });
    assert.deepEqual(
      entries.map((e) => `${e.type} ${e.path}`),
      ['symlink dirlink', 'symlink etc', 'dir real', 'file real/f'],
    );
    assert.deepEqual(skipped, ['fifo fifo']);
    assert.ok(!seen.includes('node_modules/x'), 'an excluded directory is not descended into');
  });

  test('walk() adds prefix parents, filters, and sorts by bytes', async () => {
    const dir = path.join(tmp, 'tree-w');
    await makeTree(dir);
    const entries = await walk(dir, {
      prefix: 'layers/kiln_x/y',
      uid: 5,
      gid: 6,
      filter: (rel) => rel !== 'sub/deeper',
    });
    assert.deepEqual(
      entries.map((e) => `${e.type} ${e.path} ${e.mode.toString(8)} ${e.uid}:${e.gid}`),
      [
        'dir layers 755 5:6',
        'dir layers/kiln_x 755 5:6',
        'dir layers/kiln_x/y 755 5:6',
        'file layers/kiln_x/y/a.txt 644 5:6',
        'file layers/kiln_x/y/run 4755 5:6',
        'dir layers/kiln_x/y/sub 750 5:6',
        'file layers/kiln_x/y/sub/also-b 600 5:6',
        'link layers/kiln_x/y/sub/b.bin 600 5:6',
        'symlink layers/kiln_x/y/sub/to-a 777 5:6',
      ],
    );
  });
});
