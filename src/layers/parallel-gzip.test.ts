import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { GZIP_BLOCK, ParallelGzip } from './parallel-gzip.ts';

// Parallel gzip must be a pure function of the input and the level: the same bytes whatever the
// number of workers and however the input is cut into writes, one gzip member that zlib and GNU
// gzip read back, and zlib.gzip's very bytes for an input of one block or less.

/** Pseudo-random bytes from a small alphabet: compressible like text, different everywhere. */
function textish(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = ((x >>> 24) % 64) + 32;
  }
  return b;
}

/** Bytes that do not compress. */
function noise(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let o = 0, i = 0; o < n; i++) o += createHash('sha256').update(`n${i}`).digest().copy(out, o);
  return out;
}

/** Compresses `input` cut at `cuts` (writes not awaited before the next, as the tar packer does). */
async function gzip(
  input: Buffer,
  o: { workers: number; level?: number; piece?: (i: number) => number },
): Promise<Buffer> {
  const out: Buffer[] = [];
  const gz = new ParallelGzip((b) => out.push(b) > 0, {
    workers: o.workers,
    ...(o.level ? { level: o.level } : {}),
  });
  const writes: Promise<void>[] = [];
  for (let p = 0, i = 0; p < input.length; i++) {
    const n = Math.min(input.length - p, o.piece?.(i) ?? input.length);
    // A copy that is overwritten once its write resolved: the writer must have copied it by then.
    const piece = Buffer.from(input.subarray(p, p + n));
    const w = gz.write(piece).then(() => {
      piece.fill(0);
    });
    writes.push(w);
    if (writes.length % 4 === 0) await w;
    p += n;
  }
  await Promise.all(writes);
  await gz.end();
  return Buffer.concat(out);
}

const SIZES = [0, 1, 1000, GZIP_BLOCK - 1, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK + 777, 4 * GZIP_BLOCK];

describe('ParallelGzip', () => {
  test('the same bytes for 1, 2 and 4 workers and any cutting of the input; gunzip gives the input back', async () => {
    for (const size of SIZES) {
      const input = textish(size, size + 7);
      const one = await gzip(input, { workers: 1 });
      assert.deepEqual(zlib.gunzipSync(one), input, `size ${size}`);
      for (const workers of [2, 4]) {
        assert.ok((await gzip(input, { workers })).equals(one), `size ${size}, ${workers} workers`);
        const odd = await gzip(input, { workers, piece: (i) => 1 + ((i * 7919) % 70000) });
        assert.ok(odd.equals(one), `size ${size}, ${workers} workers, odd pieces`);
      }
      assert.ok(
        (await gzip(input, { workers: 3, piece: () => GZIP_BLOCK })).equals(one),
        `size ${size}, blocks`,
      );
    }
  });

  test('up to one block: exactly zlib.gzip (levels 1, 6, 9); past it one member of the same size', async () => {
    for (const level of [1, 6, 9]) {
      for (const size of [0, 1, 5000, GZIP_BLOCK]) {
        const input = textish(size, level);
        assert.ok(
          (await gzip(input, { workers: 2, level })).equals(zlib.gzipSync(input, { level })),
          `${size}/${level}`,
        );
      }
      const big = Buffer.concat([
        textish(3 * GZIP_BLOCK, level),
        noise(GZIP_BLOCK),
        Buffer.alloc(GZIP_BLOCK, 1),
      ]);
      const par = await gzip(big, { workers: 2, level });
      const single = zlib.gzipSync(big, { level });
      assert.deepEqual(zlib.gunzipSync(par), big);
      assert.equal(
        par.subarray(0, 10).toString('hex'),
        single.subarray(0, 10).toString('hex'),
        'same header',
      );
      assert.ok(
        Math.abs(par.length / single.length - 1) < 0.01,
        `level ${level}: ${par.length} vs ${single.length}`,
      );
      // One member: a multi-member reader would also accept concatenated members, this must not need it.
      assert.equal(par.subarray(10).indexOf(Buffer.from([0x1f, 0x8b, 8])), -1);
    }
  });

  test('GNU gzip reads it (gzip -t, gzip -dc)', async () => {
    const input = Buffer.concat([textish(2 * GZIP_BLOCK + 99, 3), noise(GZIP_BLOCK / 2)]);
    const gz = await gzip(input, { workers: 2 });
    execFileSync('gzip', ['-t'], { input: gz });
    assert.ok(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(input));
  });

  test('a full consumer holds new blocks back until resume(); a failure fails end()', async () => {
    const out: Buffer[] = [];
    let full = true;
    const gz = new ParallelGzip(
      (b) => {
        out.push(b);
        return !full;
      },
      { workers: 2 },
    );
    const input = textish(8 * GZIP_BLOCK, 11);
    let written = false;
    const w = gz.write(input).then(() => (written = true));
    await new Promise((r) => setTimeout(r, 300));
    // The first block's output came (header and block) and said "full": no block past the next.
    assert.equal(written, false);
    assert.ok(out.length <= 4, `${out.length} outputs while full`);
    full = false;
    gz.resume();
    await w;
    await gz.end();
    assert.deepEqual(zlib.gunzipSync(Buffer.concat(out)), input);

    const failing = new ParallelGzip(() => true, { workers: 1 });
    await failing.write(textish(3 * GZIP_BLOCK, 1));
    failing.destroy(new Error('disk on fire'));
    await assert.rejects(failing.end(), /disk on fire/);
    assert.throws(() => new ParallelGzip(() => true, { level: 0 }), /gzip level 0: expected 1-9/);
  });
});
