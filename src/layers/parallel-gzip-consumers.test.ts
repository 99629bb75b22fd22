import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { buildStaticCat, podmanRun } from '../../test/helpers/podman.ts';
import { BlobStore } from '../layout/blob-store.ts';
import { writeImage } from '../layout/layout.ts';
import { imageFrom } from '../oci/memory.ts';
import { writeLayer } from './layer-writer.ts';
import { GZIP_BLOCK } from './parallel-gzip.ts';
import type { TarEntry } from './tar-writer.ts';

// The gzip layers kiln writes block by block on several cores (parallel-gzip.ts), read by the
// tools that consume images: umoci unpacks one, skopeo decompresses it to convert it to zstd,
// podman pulls it from an OCI layout and runs the static binary it holds, which prints the data
// file that spans several blocks.

const exec = promisify(execFile);
let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-pgz-consumers-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Printable pseudo-random text (podman hands stdout back as a string). */
function text(n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = 42;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = i % 80 === 79 ? 10 : ((x >>> 24) % 64) + 48;
  }
  return b;
}

function file(p: string, body: Buffer, mode: number): TarEntry {
  return { path: p, type: 'file', mode, uid: 0, gid: 0, size: body.length, read: async () => body };
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('parallel gzip layers in real consumers', () => {
  test('umoci, skopeo and podman read a layer of several blocks; 1 and 3 workers give the same blob', async () => {
    const cat = path.join(tmp, 'cat');
    await buildStaticCat(cat);
    const data = text(5 * GZIP_BLOCK + 4321);
    const entries = [file('cat', await fs.readFile(cat), 0o755), file('data.txt', data, 0o644)];
    const store = new BlobStore(path.join(tmp, 'store'));
    const layer = await writeLayer(entries, { store, compression: 'gzip', gzipWorkers: 3 });
    const info = await layer.info();
    assert.ok(info.uncompressedSize! > 5 * GZIP_BLOCK);
    const again = await writeLayer(entries, { store: new BlobStore(path.join(tmp, 's1')), gzipWorkers: 1 });
    assert.equal(await again.digest(), info.digest);

    const image = imageFrom({
      config: { os: 'linux', architecture: 'amd64', config: { Entrypoint: ['/cat'], Cmd: ['/data.txt'] } },
      layers: [layer],
    });
    const layout = path.join(tmp, 'layout');
    await writeImage(layout, image, 'v1');

    // umoci: unpacks the layer (Go's gzip reader) into a bundle.
    const bundle = path.join(tmp, 'bundle');
    await exec('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    assert.ok((await fs.readFile(path.join(bundle, 'rootfs', 'data.txt'))).equals(data));

    // skopeo: converting to zstd decompresses the whole blob (and checks its digest on the way).
    const zst = path.join(tmp, 'zstd');
    await exec('skopeo', [
      'copy',
      '--quiet',
      '--dest-compress-format',
      'zstd',
      `oci:${layout}:v1`,
      `oci:${zst}:v1`,
    ]);
    const index = JSON.parse(await fs.readFile(path.join(zst, 'index.json'), 'utf8'));
    const manifest = JSON.parse(
      await fs.readFile(path.join(zst, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'),
    );
    const blob = path.join(zst, 'blobs', 'sha256', manifest.layers[0].digest.slice(7));
    assert.match(manifest.layers[0].mediaType, /zstd/);
    const { stdout } = await exec('zstd', ['-dc', blob], { encoding: 'buffer', maxBuffer: 64 << 20 });
    assert.equal(sha256(stdout), info.diffID);

    // podman: pulls the image from the layout and runs the binary, which prints the data file.
    const r = await podmanRun(`oci:${layout}:v1`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, data.length);
    assert.equal(r.stdout, data.toString('latin1'));
  });
});
