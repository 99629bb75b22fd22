import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { readTar, type TarHeader, TarParser } from './tar-reader.ts';

// The push parser (extraction) and readTar (everything else) must read any archive the same
// way, however its bytes are cut into chunks: same entries, same contents, same errors.

type Seen = { header: TarHeader; body: string }[];

async function viaReadTar(buf: Buffer, cuts: number[]): Promise<Seen | Error> {
  try {
    const out: Seen = [];
    for await (const e of readTar(asyncOf(pieces(buf, cuts)))) {
      const chunks: Buffer[] = [];
      if (e.header.type === 'file') for await (const c of e.body) chunks.push(c);
      out.push({ header: e.header, body: Buffer.concat(chunks).toString('latin1') });
    }
    return out;
  } catch (e) {
    return e as Error;
  }
}

function viaParser(buf: Buffer, cuts: number[]): Seen | Error {
  try {
    const out: Seen = [];
    const p = new TarParser((header) => {
      const chunks: Buffer[] = [];
      const seen = { header, body: '' };
      out.push(seen);
      if (header.type !== 'file') return undefined;
      return {
        write: (c) => chunks.push(Buffer.from(c)),
        end: () => {
          seen.body = Buffer.concat(chunks).toString('latin1');
        },
      };
    });
    for (const c of pieces(buf, cuts)) {
      p.push(c);
      if (p.done) break;
    }
    p.end();
    return out;
  } catch (e) {
    return e as Error;
  }
}

async function* asyncOf(bufs: Buffer[]): AsyncGenerator<Buffer> {
  yield* bufs;
}

function pieces(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    if (c > at && c <= buf.length) {
      out.push(buf.subarray(at, c));
      at = c;
    }
  }
  return out;
}

function cutsFor(len: number, seed: number): number[] {
  const cuts: number[] = [];
  let x = seed;
  for (let at = 0; at < len; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    at += 1 + (x % (seed % 3 === 0 ? 700 : 5000));
    cuts.push(at);
  }
  return cuts;
}

describe('TarParser', () => {
  test('reads what readTar reads, for GNU and PAX archives cut anywhere, and fails the same way', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-tarparse-'));
    try {
      const src = path.join(dir, 'src');
      const long = `${'d'.repeat(120)}/${'n'.repeat(130)}`;
      await fs.mkdir(path.join(src, path.dirname(long)), { recursive: true });
      await fs.writeFile(path.join(src, long), 'long name\n');
      await fs.writeFile(path.join(src, 'ünïcode.txt'), Buffer.alloc(1500, 'u'));
      await fs.writeFile(path.join(src, 'empty'), '');
      await fs.writeFile(path.join(src, 'big'), Buffer.alloc(70_001, 'b'));
      await fs.symlink('x'.repeat(150), path.join(src, 'longlink'));
      await fs.link(path.join(src, 'big'), path.join(src, 'hard'));
      const archives: Buffer[] = [];
      for (const format of ['gnu', 'pax']) {
        execFileSync('tar', [
          '--format',
          format,
          '--sort=name',
          '-cf',
          path.join(dir, `${format}.tar`),
          '-C',
          src,
          '.',
        ]);
        archives.push(await fs.readFile(path.join(dir, `${format}.tar`)));
      }
      const bad: Buffer[] = [];
      for (const a of archives) {
        bad.push(a.subarray(0, 3000)); // truncated in a body
        bad.push(a.subarray(0, 1024 + 100)); // truncated in a header or record
        const flipped = Buffer.from(a);
        flipped[2048 + 10] = flipped[2048 + 10]! ^ 0x20; // a checksum that no longer matches
        bad.push(flipped);
        // No end-of-archive marker: cut at the start of the trailing zero blocks.
        let end = a.length;
        while (end >= 512 && a.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
        bad.push(a.subarray(0, end));
      }
      bad.push(Buffer.alloc(0), Buffer.alloc(100, 1));
      for (const [i, buf] of [...archives, ...bad].entries()) {
        for (const seed of [1, 2, 3, 7, 12]) {
          const cuts = cutsFor(buf.length, seed);
          const want = await viaReadTar(buf, cuts);
          const got = viaParser(buf, cutsFor(buf.length, seed + 100));
          if (want instanceof Error) {
            assert.ok(
              got instanceof Error,
              `archive ${i}: readTar failed (${want.message}) but the parser did not`,
            );
            assert.equal(got.message, want.message, `archive ${i}`);
          } else {
            assert.ok(!(got instanceof Error), `archive ${i}: ${(got as Error).message}`);
            assert.deepEqual(got, want, `archive ${i}`);
          }
        }
        if (i < archives.length) {
          const r = (await viaReadTar(buf, [])) as Seen;
          assert.ok(r.some((e) => e.header.path.endsWith(long) && e.body === 'long name\n'));
          assert.ok(r.some((e) => e.header.linkname === 'x'.repeat(150)));
          assert.ok(r.some((e) => e.header.path.endsWith('big') && e.body.length === 70_001));
        }
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
