import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer, emptyImage } from '../oci/memory.ts';
import { appendLayers, setConfig } from '../oci/mutate.ts';
import { validateImage } from '../oci/validate.ts';
import { readDockerArchive, writeDockerArchive } from './docker-archive.ts';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-archive-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function layer(text: string) {
  const tar = Buffer.from(text.padEnd(3072, '\0'));
  return bytesLayer({ tar, blob: zlib.gzipSync(tar), mediaType: MediaType.OciLayerGzip });
}

describe('docker-archive', () => {
  test('two images share a layer stored once; each is read back by tag', async () => {
    const shared = layer('shared');
    const a = setConfig(appendLayers(emptyImage(), shared, layer('a')), { user: 'a' });
    const b = setConfig(appendLayers(emptyImage(), shared), { user: 'b' });
    const file = path.join(tmp, 'two.tar');
    await writeDockerArchive(file, [
      { image: a, tags: ['example.com/a:1'] },
      { image: b, tags: ['b:latest', 'b:2'] },
    ]);
    const names = execFileSync('tar', ['-tf', file]).toString().trim().split('\n');
    assert.equal(names.filter((n) => n.endsWith('.tar')).length, 2);
    const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json']).toString());
    assert.deepEqual(
      manifest.map((m: { RepoTags: string[] }) => m.RepoTags),
      [['example.com/a:1'], ['b:latest', 'b:2']],
    );
    const repos = JSON.parse(execFileSync('tar', ['-xOf', file, 'repositories']).toString());
    assert.deepEqual(Object.keys(repos).sort(), ['b', 'example.com/a']);
    assert.deepEqual(Object.keys(repos.b).sort(), ['2', 'latest']);
    const rb = await readDockerArchive(file, { tag: 'b:2' });
    await validateImage(rb);
    assert.equal((await rb.configFile()).config?.User, 'b');
    assert.deepEqual((await rb.configFile()).rootfs, (await b.configFile()).rootfs);
    const ra = await readDockerArchive(file);
    assert.equal((await ra.configFile()).config?.User, 'a');
    assert.equal((await ra.layers())[0]!.mediaType, MediaType.OciLayer);
    await assert.rejects(readDockerArchive(file, { tag: 'c:1' }), /no image tagged "c:1"/);
  });

  test('a compressed archive, a missing member and a lying layer are clear errors', async () => {
    const img = appendLayers(emptyImage(), layer('x'));
    const file = path.join(tmp, 'one.tar');
    await writeDockerArchive(file, { image: img, tags: ['x:1'] });
    await fs.writeFile(`${file}.gz`, zlib.gzipSync(await fs.readFile(file)));
    await assert.rejects(readDockerArchive(`${file}.gz`), /is compressed: decompress it first/);
    const dir = path.join(tmp, 'unpacked');
    await fs.mkdir(dir);
    execFileSync('tar', ['-xf', file, '-C', dir]);
    const layerName = (await fs.readdir(dir)).find((n) => n.endsWith('.tar'))!;
    await fs.rm(path.join(dir, layerName));
    execFileSync('tar', ['-cf', path.join(tmp, 'broken.tar'), '-C', dir, '.']);
    await assert.rejects(readDockerArchive(path.join(tmp, 'broken.tar')), /layer ".*\.tar" is missing/);
    const z = layer('z');
    const liar = { ...layer('y'), diffID: () => z.diffID() };
    const bad = appendLayers(emptyImage(), liar);
    await assert.rejects(
      writeDockerArchive(path.join(tmp, 'bad.tar'), { image: bad, tags: ['bad:1'] }),
      /digest mismatch/,
    );
    assert.deepEqual(
      (await fs.readdir(tmp)).filter((n) => n.startsWith('.bad.tar')),
      [],
      'no temp file left',
    );
    await assert.rejects(
      readDockerArchive(path.join(tmp, 'absent.tar')),
      /^Error: cannot read docker-archive .*absent\.tar: no such file$/,
    );
    await assert.rejects(
      writeDockerArchive(path.join(tmp, 'no', 'dir', 'x.tar'), { image: img, tags: ['x:1'] }),
      /^Error: cannot write docker-archive .*x\.tar: directory .*no\/dir does not exist$/,
    );
  });
});
