import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { BlobStore } from '../layout/blob-store.ts';
import { sha256 } from '../oci/digest.ts';
import { writeLayer } from './layer-writer.ts';
import { THREAD_HASH_BYTES } from './tar-packer.ts';
import { type TarEntry, tarChunks } from './tar-writer.ts';
import { ThreadHasher } from './thread-hasher.ts';

// The layer writer's work off its own thread: the tar hashed on a worker thread (large layers)
// and the compressed blob written on the thread pool. Both must give the bytes and digests the
// single-threaded path gives.

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-lwt-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** `count` files of `size` bytes each, content derived from the index (compressible or not). */
function entries(count: number, size: number, random: boolean): TarEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    path: `d/f${String(i).padStart(4, '0')}`,
    type: 'file' as const,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size,
    read: async () => {
      if (!random) return Buffer.alloc(size, i % 251);
      const out = Buffer.alloc(size);
      for (let o = 0, n = 0; o < size; n++)
        o += createHash('sha256').update(`${i}:${n}`).digest().copy(out, o);
      return out;
    },
  }));
}

async function tarOf(es: TarEntry[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarChunks(es)) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('layer writer threads', () => {
  test('ThreadHasher gives the digest of what it was given, in order, and refuses work once closed', async () => {
    const h = new ThreadHasher();
    const want = createHash('sha256');
    try {
      const buf = h.buffer(1 << 16);
      for (let i = 0; i < 20; i++) {
        buf.fill(i, 0, 1000 + i);
        want.update(buf.subarray(0, 1000 + i));
        await h.update(buf.subarray(0, 1000 + i)); // reused once hashed: order and content count
      }
      assert.equal(await h.digest(), want.digest('hex'));
    } finally {
      await h.close();
    }
    await assert.rejects(h.update(h.buffer(16)), /closed/);
  });

  test('a layer past the threading threshold has the diffID and digest of its bytes (zstd and gzip)', async () => {
    const es = entries(70, 1 << 20, false);
    assert.ok(70 * (1 << 20) >= THREAD_HASH_BYTES, 'the layer is hashed on the worker thread');
    const want = await tarOf(es);
    const store = new BlobStore(path.join(tmp, 'store'));
    for (const compression of ['zstd', 'gzip'] as const) {
      const layer = await writeLayer(es, { store, compression, level: 1 });
      assert.equal(await layer.diffID(), sha256(want), compression);
      assert.equal(layer.uncompressedSize, want.length);
      const blob = await fs.readFile(layer.path);
      assert.equal(await layer.digest(), sha256(blob));
      assert.equal(await layer.size(), blob.length);
      const back = compression === 'zstd' ? zlib.zstdDecompressSync(blob) : zlib.gunzipSync(blob);
      assert.ok(back.equals(want), `${compression} blob decompresses to the tar`);
    }
  });

  test('a disk that fills while the blob is written fails the layer and leaves no temp file', async (t) => {
    const mnt = path.join(tmp, 'small-fs');
    await fs.mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      t.skip('needs root to mount a 4 MiB tmpfs (a disk that fills up)');
      return;
    }
    try {
      const store = new BlobStore(path.join(mnt, 'store'));
      // 24 MiB of incompressible content: the blob outgrows the 4 MiB file system.
      await assert.rejects(writeLayer(entries(24, 1 << 20, true), { store, compression: 'zstd' }), /ENOSPC/);
      assert.deepEqual(await fs.readdir(path.join(store.root, 'blobs')).catch(() => []), []);
      const left = execFileSync('find', [mnt, '-type', 'f'], { encoding: 'utf8' }).trim();
      assert.equal(left, '', 'no file left behind');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
