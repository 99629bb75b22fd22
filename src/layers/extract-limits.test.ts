// Hostile layers that fill the disk: a gzip bomb (a small gzip of one huge file of zeros) and a
// tar of many tiny entries. kiln must stop unpacking at the limit with one line naming the image
// and layer and the limit, remove what it wrote, and keep the host's free-space reserve. The bombs
// are real gzip streams of /dev/zero (bounded), in a real OCI layout unpacked as a builder.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { rootfsLimits } from '../cli/commands/cache.ts';
import type { Settings } from '../cli/settings.ts';
import { readImage, writeImage } from '../layout/layout.ts';
import { type Digest, parseDigest } from '../oci/digest.ts';
import type { Layer } from '../oci/image.ts';
import { MediaType } from '../oci/media-types.ts';
import { imageFrom } from '../oci/memory.ts';
import { unpackBuilder } from '../platform/builder-facts.ts';
import { extract } from './extract.ts';
import { ExtractBudget, ExtractLimitError, ROOTFS_LIMITS } from './extract-limits.ts';

const temp = tempDirs('kiln-extract-limits-');
const MiB = 1024 * 1024;

/** A ustar header for a regular file or directory (enough for the bombs; no PAX needed). */
function header(name: string, size: number, type: '0' | '5' = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** The tar stream of one file of `size` zero bytes, read from /dev/zero (bounded). */
async function* zeroFileTar(name: string, size: number): AsyncGenerator<Buffer> {
  yield header(name, size);
  for await (const chunk of createReadStream('/dev/zero', { end: size - 1, highWaterMark: 4 * MiB }))
    yield chunk as Buffer;
  yield Buffer.alloc((512 - (size % 512)) % 512);
  yield Buffer.alloc(1024);
}

/** A tar of `n` empty files (and their directories, 1000 per directory). */
function manyEntriesTar(n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 1000 === 0) parts.push(header(`d${i / 1000}/`, 0, '5'));
    parts.push(header(`d${Math.floor(i / 1000)}/f${i}`, 0));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/**
 * Writes a gzip bomb: a gzip layer holding one file of `size` zeros. Returns the file and the
 * layer's digest and diffID (hashed on the way, so nothing inflates it twice).
 */
async function gzipBomb(
  dir: string,
  size: number,
): Promise<{ file: string; digest: Digest; diffID: Digest }> {
  const file = path.join(dir, 'bomb.tar.gz');
  const tarHash = createHash('sha256');
  await pipeline(
    Readable.from(zeroFileTar('var/bomb', size)),
    async function* (src) {
      for await (const c of src) {
        tarHash.update(c as Buffer);
        yield c;
      }
    },
    zlib.createGzip({ level: 9 }),
    createWriteStream(file),
  );
  const gzHash = createHash('sha256').update(await readFile(file));
  return {
    file,
    digest: parseDigest(`sha256:${gzHash.digest('hex')}`, 'test'),
    diffID: parseDigest(`sha256:${tarHash.digest('hex')}`, 'test'),
  };
}

/** A Layer read from a gzip file on disk. */
function fileLayer(b: { file: string; digest: Digest; diffID: Digest }, size: number): Layer {
  return {
    mediaType: MediaType.OciLayerGzip,
    digest: async () => b.digest,
    diffID: async () => b.diffID,
    size: async () => size,
    compressed: async () => createReadStream(b.file),
    uncompressed: async () => createReadStream(b.file).pipe(zlib.createGunzip()),
  };
}

describe('extract limits', () => {
  test('a gzip bomb stops at the byte limit before a byte of it is written', async () => {
    const dir = await temp();
    const bomb = await gzipBomb(dir, 256 * MiB);
    assert.ok((await stat(bomb.file)).size < MiB, 'the bomb is small');
    const dest = path.join(dir, 'out');
    const budget = new ExtractBudget('image sha256:feed', { maxBytes: 32 * MiB, maxEntries: 1000 });
    budget.layer = String(bomb.digest);
    const t0 = performance.now();
    await assert.rejects(extract(createReadStream(bomb.file), dest, { limits: budget }), (e: unknown) => {
      assert.ok(e instanceof ExtractLimitError, String(e));
      assert.equal(
        e.message,
        `image sha256:feed: layer ${bomb.digest} unpacks to more than 32 MiB, the limit`,
      );
      return true;
    });
    // The header declared 256 MiB: refused before the file was even created.
    assert.deepEqual(await readdir(path.join(dest, 'var')), []);
    assert.ok(performance.now() - t0 < 10_000);
  });

  test('a gzip bomb whose file fits the limit alone still stops when the layers add up', async () => {
    const dir = await temp();
    const bomb = await gzipBomb(dir, 24 * MiB);
    const dest = path.join(dir, 'out');
    const budget = new ExtractBudget('image sha256:feed', { maxBytes: 40 * MiB, maxEntries: 1000 });
    await extract(createReadStream(bomb.file), dest, { limits: budget });
    assert.equal(budget.bytes, 24 * MiB);
    await assert.rejects(
      extract(createReadStream(bomb.file), path.join(dest, 'again'), { limits: budget }),
      /unpacks to more than 40 MiB, the limit/,
    );
  });

  test('a layer of many tiny entries stops at the entry limit', async () => {
    const dir = await temp();
    const dest = path.join(dir, 'out');
    await assert.rejects(
      extract(Readable.from([manyEntriesTar(20_000)]), dest, {
        limits: { maxBytes: MiB, maxEntries: 1500, name: "an image's root filesystem" },
      }),
      (e: unknown) => {
        assert.ok(e instanceof ExtractLimitError);
        assert.match(e.message, /has more than 1500 entries, the limit for an image's root filesystem$/);
        assert.doesNotMatch(e.message, /\n/);
        return true;
      },
    );
    let n = 0;
    for (const d of await readdir(dest)) n += 1 + (await readdir(path.join(dest, d))).length;
    assert.ok(n <= 1500, `${n} entries written`);
  });

  test('the host keeps its free-space reserve whatever the limits allow', async () => {
    const dir = await temp();
    const dest = path.join(dir, 'out');
    // A reserve above what the disk has free: the first check (after 64 MiB) stops it.
    const bomb = await gzipBomb(dir, 100 * MiB);
    await assert.rejects(
      extract(createReadStream(bomb.file), dest, {
        limits: { maxBytes: 1024 * MiB, maxEntries: 1000, reserveBytes: 2 ** 52 },
      }),
      /stopped unpacking: the host filesystem of the unpack directory has only .* free, below the \d+ GiB kiln keeps free/,
    );
  });

  test('a gzip bomb builder in an OCI layout: one line naming image, layer and limit; nothing left in the cache', async () => {
    const dir = await temp();
    const bomb = await gzipBomb(dir, 128 * MiB);
    const layer = fileLayer(bomb, (await stat(bomb.file)).size);
    const layout = path.join(dir, 'layout');
    await writeImage(
      layout,
      imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [layer] }),
      'b',
    );
    const image = await readImage(layout, 'b');
    const imageDigest = await image.digest();
    // The limit comes from the kiln config, as `kiln build` and `kiln run` read it.
    const configFile = path.join(dir, 'config.toml');
    await writeFile(configFile, '[rootfs-cache]\nmax-image-size = "64MiB"\nmax-image-entries = 100\n');
    const limits = await rootfsLimits({ configFile } as Settings);
    assert.deepEqual(limits, { ...ROOTFS_LIMITS, maxBytes: 64 * MiB, maxEntries: 100 });
    const cacheDir = path.join(dir, 'rootfs');
    await assert.rejects(unpackBuilder(image, cacheDir, undefined, limits), (e: unknown) => {
      assert.ok(e instanceof ExtractLimitError, String(e));
      assert.equal(
        e.message,
        `image ${imageDigest}: layer ${bomb.digest} unpacks to more than 64 MiB, the limit for an image's root filesystem; raise it with max-image-size / max-image-entries in [rootfs-cache] of the kiln config`,
      );
      return true;
    });
    // Nothing half-written: no entry, no temp dir, no lock (only this process's lease went too).
    assert.deepEqual(await readdir(cacheDir), []);
  });

  test('the default limits unpack a normal layer', async () => {
    const dir = await temp();
    const dest = path.join(dir, 'out');
    const r = await extract(Readable.from([manyEntriesTar(100)]), dest, {
      limits: new ExtractBudget('image x', ROOTFS_LIMITS),
    });
    assert.equal(r.entries, 101);
  });
});
