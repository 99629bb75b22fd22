import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { BlobStore } from '../layout/blob-store.ts';
import type { CachedLayer } from './cache.ts';
import { dirContent, type ReuseContext, resolve } from './layer-reuse.ts';

const tempDir = tempDirs('kiln-reuse-test-');

const SETTINGS = { epoch: 315532801, compression: 'gzip' } as const;
const walkOpts = { prefix: 'layers/bp/l', uid: 1000, gid: 1000 };

function ctx(blobs: BlobStore): ReuseContext {
  return {
    blobs,
    settings: SETTINGS,
    fingerprints: new Map<string, CachedLayer>(),
    previous: new Map(),
    known: new Map(),
    stats: { compressed: 0, hashed: 0, fingerprinted: 0 },
  };
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
    const first = await resolve(c, await dirContent(layerDir, walkOpts, SETTINGS));
    assert.equal(first.how, 'new');
    assert.deepEqual(c.stats, { compressed: 1, hashed: 0, fingerprinted: 0 });
    const again = await resolve(c, await dirContent(layerDir, walkOpts, SETTINGS), first.diffID);
    assert.equal(again.how, 'stored');
    assert.equal(again.diffID, first.diffID);
    assert.equal(c.stats.fingerprinted, 1);
    // Same bytes in a new directory: no fingerprint, but the candidate makes hashing worth it.
    const other = path.join(d, 'other');
    await fs.cp(layerDir, other, { recursive: true });
    const copy = await resolve(c, await dirContent(other, walkOpts, SETTINGS), first.diffID);
    assert.equal(copy.diffID, first.diffID);
    assert.deepEqual(c.stats, { compressed: 1, hashed: 1, fingerprinted: 1 });
    // Changed bytes: hashed, then compressed.
    await fs.writeFile(path.join(other, 'f'), 'changed');
    const changed = await resolve(c, await dirContent(other, walkOpts, SETTINGS), first.diffID);
    assert.equal(changed.how, 'new');
    assert.notEqual(changed.diffID, first.diffID);
    assert.deepEqual(c.stats, { compressed: 2, hashed: 2, fingerprinted: 1 });
  });
});
