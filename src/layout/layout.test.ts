import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import type { Layer } from '../oci/image.ts';
import { indexFrom } from '../oci/index.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer, emptyImage } from '../oci/memory.ts';
import { appendLayers, setConfig } from '../oci/mutate.ts';
import { validateImage } from '../oci/validate.ts';
import { BlobStore } from './blob-store.ts';
import { Layout, listTags, readImage, writeImage } from './layout.ts';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-layout-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function layer(text: string): Layer {
  const tar = Buffer.from(text.padEnd(2048, '\0'));
  return bytesLayer({ tar, blob: zlib.gzipSync(tar), mediaType: MediaType.OciLayerGzip });
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out.sort();
}

describe('Layout', () => {
  test('two tags share blobs; read back equals written; replacing a tag keeps the other', async () => {
    const dir = path.join(tmp, 'l1');
    const shared = layer('shared');
    const a = appendLayers(emptyImage(), shared, layer('a'));
    const b = setConfig(appendLayers(emptyImage(), shared), { user: '1000' });
    const old = process.umask(0o077);
    try {
      await writeImage(dir, a, 'a');
      await writeImage(dir, b, 'b');
    } finally {
      process.umask(old);
    }
    assert.deepEqual(await listTags(dir), ['a', 'b']);
    // 2 manifests + 2 configs + 2 layers (the shared one stored once)
    assert.equal((await fs.readdir(path.join(dir, 'blobs/sha256'))).length, 6);
    for (const f of await files(dir)) assert.equal((await fs.stat(path.join(dir, f))).mode & 0o777, 0o644, f);
    assert.equal((await fs.stat(path.join(dir, 'blobs/sha256'))).mode & 0o777, 0o755);
    const ra = await readImage(dir, 'a');
    assert.equal(await ra.digest(), await a.digest());
    await validateImage(ra);
    const byDigest = await readImage(dir, await b.digest());
    assert.deepEqual(await byDigest.rawConfig(), await b.rawConfig());
    const a2 = setConfig(a, { user: 'nobody' });
    await writeImage(dir, a2, 'a');
    assert.deepEqual(await listTags(dir), ['b', 'a']);
    assert.equal(await (await readImage(dir, 'a')).digest(), await a2.digest());
    await assert.rejects(readImage(dir, 'nope'), /image "nope" not found in layout .* \(tags: b, a\)/);
  });

  test('index() parses the same bytes once, and always reads what index.json holds now', async () => {
    const dir = path.join(tmp, 'l-index');
    const l = await Layout.init(dir);
    await l.writeImage(await appendLayers(emptyImage(), layer('a')), 'a');
    const first = await l.index();
    assert.equal(await l.index(), first, 'unchanged bytes: the same parse');
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.manifests[0]), 'shared, so frozen');
    // Another writer (another Layout over the same directory, e.g. another kiln process).
    await (await Layout.open(dir)).writeImage(await appendLayers(emptyImage(), layer('b')), 'b');
    assert.deepEqual(await l.tags(), ['a', 'b']);
    // Bytes written behind kiln's back (same length, another tag) are read, not remembered.
    const file = path.join(dir, 'index.json');
    await fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace('"b"', '"c"'));
    assert.deepEqual(await l.tags(), ['a', 'c']);
  });

  test('a failed write leaves no orphan blob and index.json untouched', async () => {
    const dir = path.join(tmp, 'l2');
    const good = layer('good');
    await writeImage(dir, appendLayers(emptyImage(), good), 'base');
    const before = await files(dir);
    const indexBefore = await fs.readFile(path.join(dir, 'index.json'), 'utf8');
    const fresh = layer('fresh one');
    const broken: Layer = {
      ...layer('broken'),
      compressed: async () =>
        Readable.from(
          (async function* () {
            yield Buffer.from('partial');
            throw new Error('disk on fire');
          })(),
        ),
    };
    await assert.rejects(
      writeImage(dir, appendLayers(emptyImage(), good, fresh, broken), 'x'),
      /disk on fire/,
    );
    assert.deepEqual(await files(dir), before);
    assert.equal(await fs.readFile(path.join(dir, 'index.json'), 'utf8'), indexBefore);
  });

  test('gc() removes only unreachable blobs older than the grace period', async () => {
    const dir = path.join(tmp, 'l4');
    const keep = appendLayers(emptyImage(), layer('keep'));
    const drop = appendLayers(emptyImage(), layer('drop'));
    await writeImage(dir, keep, 'keep');
    await writeImage(dir, drop, 'drop');
    const l = await Layout.open(dir);
    // An untagged image (a referrer, say) written twice is listed once and kept by gc.
    const untagged = setConfig(keep, { user: 'ref' });
    await l.writeImage(untagged);
    await l.writeImage(untagged);
    assert.equal((await l.index()).manifests.length, 3);
    await l.removeTag('drop');
    assert.deepEqual(await l.gc(), [], 'nothing is old enough yet');
    const removed = await l.gc({ graceMs: -1 });
    const dropM = await drop.manifest();
    assert.deepEqual(
      removed.sort(),
      [await drop.digest(), dropM.config.digest, dropM.layers[0]!.digest].sort(),
    );
    await validateImage(await l.image('keep'));
    await validateImage(await l.image(await untagged.digest()));
  });

  test('writeIndex() stores a multi-platform index; image() picks the platform', async () => {
    const dir = path.join(tmp, 'l5');
    const amd = appendLayers(emptyImage(), layer('amd64'));
    const arm = appendLayers(
      emptyImage({ os: 'linux', architecture: 'arm64', variant: 'v8' }),
      layer('arm64'),
    );
    const idx = indexFrom([{ image: amd }, { image: arm, annotations: { a: 'b' } }]);
    const l = await Layout.init(dir);
    const desc = await l.writeIndex(idx, 'multi');
    assert.equal(desc.digest, await idx.digest());
    const m = await (await l.imageIndex('multi')).indexManifest();
    assert.deepEqual(
      m.manifests.map((d) => d.platform),
      [
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8' },
      ],
    );
    const picked = await l.image('multi', { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(await picked.digest(), await arm.digest());
    await validateImage(picked);
    assert.equal(await (await l.image('multi')).digest(), await amd.digest());
    const child = await (await l.imageIndex('multi')).image(await arm.digest());
    await validateImage(child);
    await assert.rejects(
      l.image('multi', { platform: { os: 'linux', architecture: 's390x' } }),
      /has no linux\/s390x image/,
    );
  });

  test('a store-to-store copy is hashed once, and a tampered source blob still stores nothing', async () => {
    const a = new BlobStore(path.join(tmp, 'sv-a'));
    const b = new BlobStore(path.join(tmp, 'sv-b'));
    // Bigger than the streams' buffers, so the source cannot end (and fail) before put reads it.
    const bytes = (c: string) => Buffer.alloc(1 << 20, c);
    const good = await a.putBytes(bytes('g'));
    const copy = await b.put(await a.open(good.digest), good.digest, good.size);
    assert.deepEqual(copy, good);
    assert.ok((await fs.readFile(b.path(good.digest))).equals(bytes('g')));
    // Same length, other bytes: only the source's own verification can catch it now.
    await fs.writeFile(a.path(good.digest), bytes('e'));
    const c = new BlobStore(path.join(tmp, 'sv-c'));
    await assert.rejects(c.put(await a.open(good.digest), good.digest, good.size), /digest mismatch/);
    assert.equal(await c.has(good.digest), false);
    assert.deepEqual(await files(c.root), []);
    // A stream that only claims to check another digest is hashed by the store itself.
    const claims = Object.assign(Readable.from([bytes('e')]), { verifies: 'sha256:0' });
    await assert.rejects(c.put(claims, good.digest), /digest mismatch/);
    assert.deepEqual(await files(c.root), []);
  });

  test('a blob that does not match its digest is refused on read', async () => {
    const dir = path.join(tmp, 'l3');
    const img = appendLayers(emptyImage(), layer('x'));
    await writeImage(dir, img, 't');
    const l = (await img.manifest()).layers[0]!;
    await fs.writeFile(
      path.join(dir, 'blobs/sha256', l.digest.slice(7)),
      zlib.gzipSync(Buffer.alloc(2048, 1)),
    );
    const read = await readImage(dir, 't');
    await assert.rejects(validateImage(read), /digest mismatch: expected sha256:/);
    await assert.rejects(Layout.open(path.join(tmp, 'nothing')), /not an OCI image layout/);
    // A tampered manifest or config blob is refused when read.
    const manifestFile = path.join(dir, 'blobs/sha256', (await img.digest()).slice(7));
    const original = await fs.readFile(manifestFile);
    await fs.writeFile(
      manifestFile,
      Buffer.from(original.toString().replace('"schemaVersion":2', '"schemaVersion": 2')),
    );
    await assert.rejects(readImage(dir, 't'), /blob sha256:[0-9a-f]+ in .*: digest mismatch/);
    await fs.writeFile(manifestFile, original);
    const configFile = path.join(dir, 'blobs/sha256', (await img.manifest()).config.digest.slice(7));
    await fs.writeFile(
      configFile,
      '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
    );
    await assert.rejects((await readImage(dir, 't')).configFile(), /digest mismatch/);
  });
});
