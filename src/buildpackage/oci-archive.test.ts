import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { writeLayer } from '../layers/layer-writer.ts';
import { readTar } from '../layers/tar-reader.ts';
import { BlobStore } from '../layout/blob-store.ts';
import type { Image } from '../oci/image.ts';
import { imageFrom } from '../oci/memory.ts';
import { readOciArchive, writeOciArchive } from './oci-archive.ts';

const execFileP = promisify(execFile);
let dir: string;
let image: Image;

async function text(s: Readable): Promise<string> {
  let out = '';
  for await (const c of s) out += (c as Buffer).toString('latin1');
  return out;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-oci-archive-'));
  const store = new BlobStore(path.join(dir, 'store'));
  const body = Buffer.from('x'.repeat(5000));
  const layer = await writeLayer(
    [
      {
        path: 'cnb/f',
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: body.length,
        open: () => Readable.from([body]),
      },
    ],
    { store, compression: 'gzip' },
  );
  image = imageFrom({
    config: { os: 'linux', architecture: 'amd64', config: { Labels: { a: 'b' } } },
    layers: [layer, layer],
  });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('OCI layout archives (.cnb)', () => {
  test('round trip: same digest, same layers; a layer used twice is stored once; umoci/skopeo agree', async () => {
    const file = path.join(dir, 'a.cnb');
    const digest = await writeOciArchive(file, image, 'v1');
    assert.equal(digest, await image.digest());
    const back = await readOciArchive(file);
    assert.equal(await back.digest(), digest);
    assert.deepEqual(await back.configFile(), await image.configFile());
    const layers = await back.layers();
    assert.equal(layers.length, 2);
    assert.match(await text(await layers[0]!.uncompressed()), /x{5000}/);
    const members: string[] = [];
    for await (const e of readTar((await import('node:fs')).createReadStream(file))) {
      members.push(e.header.path);
      for await (const _ of e.body);
    }
    assert.equal(members.filter((m) => m.startsWith('blobs/sha256/') && m.length > 20).length, 3);
    assert.equal(await (await readOciArchive(file, { tag: 'v1' })).digest(), digest);
    const { stdout } = await execFileP('skopeo', ['inspect', `oci-archive:${file}:v1`]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, digest);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  test('a corrupted layer blob fails its read; bad inputs fail with one line', async () => {
    const file = path.join(dir, 'b.cnb');
    await writeOciArchive(file, image);
    const layerDigest = (await image.manifest()).layers[0]!.digest;
    let offset = -1;
    for await (const e of readTar((await import('node:fs')).createReadStream(file))) {
      if (e.header.path.endsWith(layerDigest.slice(7))) offset = e.offset;
      for await (const _ of e.body);
    }
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from([0x00]), 0, 1, offset + 20);
    await fh.close();
    const back = await readOciArchive(file);
    await assert.rejects(async () => text(await (await back.layers())[0]!.compressed()), /digest mismatch/);

    const gz = path.join(dir, 'c.cnb');
    await writeFile(gz, gzipSync(Buffer.from('hello')));
    await assert.rejects(readOciArchive(gz), /compressed; expected an uncompressed OCI layout tar/);
    await assert.rejects(readOciArchive(file, { tag: 'nope' }), /no image tagged "nope"/);
    const notLayout = path.join(dir, 'd.cnb');
    await execFileP('tar', ['-cf', notLayout, '-C', dir, 'store']);
    await assert.rejects(readOciArchive(notLayout), /not an OCI layout archive/);
  });
});
