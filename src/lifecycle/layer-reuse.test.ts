import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { tarChunks } from '../layers/tar-writer.ts';
import { BlobStore } from '../layout/blob-store.ts';
import { LayerResolver } from './layer-resolver.ts';
import { diffIDOf, dirCheck, dirContent } from './layer-reuse.ts';

const tempDir = tempDirs('kiln-reuse-test-');

const SETTINGS = { epoch: 315532801, compression: 'gzip' } as const;
const walkOpts = { prefix: 'layers/bp/l', uid: 1000, gid: 1000 };

function ctx(blobs: BlobStore): LayerResolver {
  return new LayerResolver({ blobs, settings: SETTINGS });
}

describe('layer fingerprints', () => {
  test('stay equal for an untouched directory and change for a same-size rewrite with the mtime put back', async () => {
    const d = await tempDir();
    const f = path.join(d, 'file');
    await fs.writeFile(f, 'aaaa');
    const T = new Date('2020-01-01T00:00:00Z');
    await fs.utimes(f, T, T);
    const a = await dirContent(d, walkOpts, SETTINGS);
    assert.equal((await dirContent(d, walkOpts, SETTINGS)).fingerprint, a.fingerprint);
    await new Promise((r) => setTimeout(r, 20));
    await fs.writeFile(f, 'bbbb');
    await fs.utimes(f, T, T); // what `tar x` or `cp -p` would do
    assert.equal((await fs.stat(f)).mtimeMs, T.getTime());
    assert.notEqual((await dirContent(d, walkOpts, SETTINGS)).fingerprint, a.fingerprint);
  });

  test('depend on the tar settings (another epoch or compression is another layer)', async () => {
    const d = await tempDir();
    await fs.writeFile(path.join(d, 'file'), 'x');
    const a = await dirContent(d, walkOpts, SETTINGS);
    const b = await dirContent(d, walkOpts, { ...SETTINGS, compression: 'zstd' });
    const c = await dirContent(d, walkOpts, { ...SETTINGS, epoch: 1 });
    assert.equal(new Set([a.fingerprint, b.fingerprint, c.fingerprint]).size, 3);
  });
});

describe('resolve()', () => {
  test('compresses new content once, then finds it by fingerprint, then by hashing against a candidate', async () => {
    const d = await tempDir();
    const layerDir = path.join(d, 'l');
    await fs.mkdir(layerDir);
    await fs.writeFile(path.join(layerDir, 'f'), 'content');
    const c = ctx(new BlobStore(path.join(d, 'blobs')));
    const first = await c.resolve(await dirContent(layerDir, walkOpts, SETTINGS));
    assert.equal(first.how, 'new');
    assert.deepEqual(c.stats, { compressed: 1, hashed: 0, fingerprinted: 0 });
    const again = await c.resolve(await dirContent(layerDir, walkOpts, SETTINGS), first.diffID);
    assert.equal(again.how, 'stored');
    assert.equal(again.diffID, first.diffID);
    assert.equal(c.stats.fingerprinted, 1);
    // Same bytes in a new directory: no fingerprint, but the candidate makes hashing worth it.
    const other = path.join(d, 'other');
    await fs.cp(layerDir, other, { recursive: true });
    const copy = await c.resolve(await dirContent(other, walkOpts, SETTINGS), first.diffID);
    assert.equal(copy.diffID, first.diffID);
    assert.deepEqual(c.stats, { compressed: 1, hashed: 1, fingerprinted: 1 });
    // Changed bytes: hashed, then compressed.
    await fs.writeFile(path.join(other, 'f'), 'changed');
    const changed = await c.resolve(await dirContent(other, walkOpts, SETTINGS), first.diffID);
    assert.equal(changed.how, 'new');
    assert.notEqual(changed.diffID, first.diffID);
    assert.deepEqual(c.stats, { compressed: 2, hashed: 2, fingerprinted: 1 });
  });
});

describe('layer fingerprints (git index check)', () => {
  test('change when a file is replaced by one of the same size and mtime, chmodded, or gains a hard link', async () => {
    const d = await tempDir();
    const f = path.join(d, 'sub', 'file');
    await fs.mkdir(path.dirname(f));
    await fs.writeFile(f, 'aaaa');
    const T = new Date('2020-01-01T00:00:00Z');
    await fs.utimes(f, T, T);
    const seen = new Set([(await dirContent(d, walkOpts, SETTINGS)).fingerprint]);
    const changed = async (what: string) => {
      const fp = (await dirContent(d, walkOpts, SETTINGS)).fingerprint;
      assert.ok(!seen.has(fp), `${what} is detected`);
      seen.add(fp);
    };
    // Replaced by rename: same bytes count, same mtime, another inode.
    await fs.writeFile(`${f}.new`, 'bbbb');
    await fs.utimes(`${f}.new`, T, T);
    await fs.rename(`${f}.new`, f);
    await changed('a replacement with the same size and mtime');
    await fs.chmod(f, 0o600);
    await fs.chmod(f, 0o644);
    await changed('a chmod and back (the ctime moved)');
    await fs.link(f, path.join(d, 'twin'));
    await changed('a new hard link');
  });
});

describe('diffIDOf()', () => {
  test('is the sha256 of the tar the writer produces (small files read at once, big ones streamed, links)', async () => {
    const d = await tempDir();
    await fs.mkdir(path.join(d, 'a/b'), { recursive: true });
    for (let i = 0; i < 40; i++) await fs.writeFile(path.join(d, 'a', `f${i}`), `file ${i}\n`.repeat(i));
    await fs.writeFile(path.join(d, 'a/b/big'), Buffer.alloc(700_000, 7));
    await fs.writeFile(path.join(d, 'a/b/edge'), Buffer.alloc(256 * 1024, 1));
    await fs.writeFile(path.join(d, 'empty'), '');
    await fs.link(path.join(d, 'a/f3'), path.join(d, 'hard'));
    await fs.symlink('a/f1', path.join(d, 'soft'));
    const entries = await (await dirContent(d, walkOpts, SETTINGS)).entries();
    const h = createHash('sha256');
    for await (const c of tarChunks(entries, { epoch: SETTINGS.epoch })) h.update(c);
    assert.equal(await diffIDOf(entries, SETTINGS.epoch), `sha256:${h.digest('hex')}`);
  });

  test('fails when a file changed size since it was listed', async () => {
    const d = await tempDir();
    await fs.writeFile(path.join(d, 'f'), 'short');
    const entries = await (await dirContent(d, walkOpts, SETTINGS)).entries();
    await fs.writeFile(path.join(d, 'f'), 'much longer now');
    await assert.rejects(diffIDOf(entries, SETTINGS.epoch), /changed while being archived/);
  });
});

describe('dirCheck()', () => {
  test('has dirContent’s fingerprint, lists the same entries when asked, and refuses a dir changed since', async () => {
    const d = await tempDir();
    await fs.mkdir(path.join(d, 'sub'));
    await fs.writeFile(path.join(d, 'sub', 'f'), 'one');
    await fs.symlink('sub/f', path.join(d, 'link'));
    const full = await dirContent(d, walkOpts, SETTINGS);
    const checked = await dirCheck(d, { ...walkOpts, knownDirs: full.dirs! }, SETTINGS);
    assert.equal(checked.fingerprint, full.fingerprint);
    assert.deepEqual(await checked.entries(), await full.entries());
    const stale = await dirCheck(d, walkOpts, SETTINGS);
    await fs.writeFile(path.join(d, 'sub', 'f'), 'two');
    await assert.rejects(stale.entries(), /changed while being exported/);
  });
});

describe('a changed layer with a candidate', () => {
  /** Content whose files count their reads: the layer's bytes are read once or twice. */
  function counted(sizes: readonly number[], seed: string) {
    const reads = { n: 0 };
    const entries = sizes.map((size, i) => ({
      path: `layers/bp/l/f${i}`,
      type: 'file' as const,
      mode: 0o644,
      uid: 1000,
      gid: 1000,
      size,
      read: async () => {
        reads.n++;
        return Buffer.alloc(size, `${seed}${i}`);
      },
    }));
    return { reads, content: { entries: async () => entries, fingerprint: '' } };
  }

  test('is read and tarred once: hashed against the candidate, then compressed from the same tar', async () => {
    const d = await tempDir();
    const c = ctx(new BlobStore(path.join(d, 'blobs')));
    const before = await c.resolve(counted([1000, 700_000, 3], 'old').content);
    c.usePrevious(new Map([[before.diffID, before.layer]]));
    const now = counted([1000, 700_000, 3], 'new');
    const r = await c.resolve(now.content, before.diffID);
    assert.equal(r.how, 'new');
    assert.equal(now.reads.n, 3, 'each file read once');
    assert.equal(c.stats.hashed, 1);
    // The blob is the layer of those bytes: its decompressed digest is the diffID, and it is the
    // very blob writing the entries afresh gives.
    const chunks: Buffer[] = [];
    for await (const b of await r.layer.uncompressed()) chunks.push(b as Buffer);
    const tar = Buffer.concat(chunks);
    assert.equal(`sha256:${createHash('sha256').update(tar).digest('hex')}`, r.diffID);
    const fresh = await ctx(new BlobStore(path.join(d, 'fresh'))).resolve(
      counted([1000, 700_000, 3], 'new').content,
    );
    assert.equal(await fresh.layer.digest(), await r.layer.digest());
  });

  test('past the size kept in memory, is read again to compress (memory stays bounded)', async () => {
    const d = await tempDir();
    const c = ctx(new BlobStore(path.join(d, 'blobs')));
    const sizes = [20 << 20, 20 << 20];
    const before = await c.resolve(counted(sizes, 'a').content);
    c.usePrevious(new Map([[before.diffID, before.layer]]));
    const now = counted(sizes, 'b');
    const r = await c.resolve(now.content, before.diffID);
    assert.equal(r.how, 'new');
    assert.equal(now.reads.n, 4);
  });
});
