import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { CacheMetadataSchema } from '../cnb/lifecycle-metadata.ts';
import { acquireLock } from '../internal/lock.ts';
import type { DirListings } from '../layers/walk.ts';
import type { Digest } from '../oci/digest.ts';
import { type CacheEntry, VolumeCache } from './cache.ts';
import { dirContent } from './layer-reuse.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const tempDir = tempDirs('kiln-cache-test-');

const sha = (b: string | Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A fake "layer": the blob content doubles as its tar for these tests (the cache does not look inside). */
async function blobFile(dir: string, content: string): Promise<CacheEntry> {
  const file = path.join(dir, `src-${sha(content).slice(7, 19)}`);
  await fs.writeFile(file, content);
  return {
    diffID: sha(`diff:${content}`),
    digest: sha(content),
    size: content.length,
    mediaType: 'x',
    source: file,
  };
}

function metadataNaming(entries: readonly CacheEntry[]) {
  return CacheMetadataSchema.parse({
    buildpacks: [
      {
        key: 'test/bp',
        version: '1',
        layers: Object.fromEntries(entries.map((e, i) => [`l${i}`, { sha: e.diffID, cache: true }])),
      },
    ],
  });
}

describe('VolumeCache', () => {
  test('commit() then snapshot() round-trips metadata and blobs, and prunes what is no longer named', async () => {
    const d = await tempDir();
    const cache = new VolumeCache(path.join(d, 'cache'));
    const a = await blobFile(d, 'alpha');
    const b = await blobFile(d, 'beta');
    const r1 = await cache.commit({ metadata: metadataNaming([a, b]), layers: [a, b] });
    assert.deepEqual(r1, { added: 2, reused: 0, pruned: 0 });
    const snap = await cache.snapshot();
    assert.equal(snap.metadata.buildpacks?.[0]?.layers?.l1?.sha, b.diffID);
    assert.equal(await text(await snap.open(a.diffID)), 'alpha');
    assert.equal(await text(await snap.open(a.diffID)), 'alpha', 'a second open reads from the start');
    const c = await blobFile(d, 'gamma');
    const r2 = await cache.commit({
      metadata: metadataNaming([b, c]),
      layers: [{ ...b, source: undefined }, c],
    });
    assert.deepEqual(r2, { added: 1, reused: 1, pruned: 1 });
    // The old snapshot still reads the pruned blob: it was opened before the prune.
    assert.equal(await text(await snap.open(a.diffID)), 'alpha');
    await snap.close();
    const snap2 = await cache.snapshot();
    assert.equal(snap2.layer(a.diffID), undefined);
    assert.equal(await text(await snap2.open(c.diffID)), 'gamma');
    await snap2.close();
    const cleared = await cache.snapshot({ clear: true });
    assert.equal(cleared.layer(c.diffID), undefined);
    assert.deepEqual(cleared.metadata.buildpacks, []);
  });

  test('commit() of the committed state leaves cache.json untouched, keeps warm dirs and reads back the same', async () => {
    const d = await tempDir();
    let commits = 0;
    const cache = new VolumeCache(path.join(d, 'cache'), {}, { beforeCommit: () => void commits++ });
    const a = await blobFile(d, 'alpha');
    const b = await blobFile(d, 'beta');
    await cache.commit({ metadata: metadataNaming([a, b]), layers: [a, b] });
    assert.equal(commits, 1);
    const state = path.join(d, 'cache', 'cache.json');
    const before = await fs.stat(state);
    const text0 = await fs.readFile(state, 'utf8');
    // The same state again (blobs already there), with an unpacked dir to keep warm.
    const warmDir = path.join(d, 'unpacked');
    await fs.mkdir(warmDir);
    await fs.writeFile(path.join(warmDir, 'f'), 'x');
    const r = await cache.commit({
      metadata: metadataNaming([a, b]),
      layers: [{ ...a, source: undefined }, b],
      warm: [{ diffID: a.diffID, dir: warmDir, fingerprint: 'sha256:fp' }],
    });
    assert.deepEqual(r, { added: 0, reused: 2, pruned: 0 });
    assert.equal(commits, 1, 'nothing was replaced');
    const after = await fs.stat(state);
    assert.equal(after.ino, before.ino, 'cache.json was not rewritten');
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.equal(await fs.readFile(state, 'utf8'), text0);
    const warm = await fs.readdir(path.join(d, 'cache', 'warm'));
    assert.deepEqual(warm.sort(), [a.diffID.slice(7), `${a.diffID.slice(7)}.json`]);
    const snap = await cache.snapshot();
    assert.equal(await text(await snap.open(b.diffID)), 'beta');
    assert.equal(
      await snap.claimWarm?.(a.diffID, path.join(d, 'claimed'), async () => 'sha256:fp'),
      'sha256:fp',
    );
    await snap.close();
    // A changed state is written (and the hook runs).
    await cache.commit({ metadata: metadataNaming([b]), layers: [b] });
    assert.equal(commits, 2);
    assert.notEqual(await fs.readFile(state, 'utf8'), text0);
  });

  test('a warm dir comes back with its kept listings; touched after it was kept, it is never handed out', async () => {
    const d = await tempDir();
    const cache = new VolumeCache(path.join(d, 'cache'));
    const a = await blobFile(d, 'alpha');
    const S = { epoch: 1, compression: 'gzip' } as const;
    const opts = { prefix: 'layers/bp/l', uid: 1000, gid: 1000 };
    const keep = async (n: number) => {
      const dir = path.join(d, `unpacked${n}`);
      await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
      await fs.writeFile(path.join(dir, 'sub', 'f'), 'x');
      const c = await dirContent(dir, opts, S);
      await cache.commit({
        metadata: metadataNaming([a]),
        layers: [a],
        warm: [{ diffID: a.diffID, dir, fingerprint: c.fingerprint, ...(c.dirs ? { dirs: c.dirs } : {}) }],
      });
    };
    const claim = async (dest: string) => {
      const snap = await cache.snapshot();
      let kept: DirListings | undefined;
      try {
        return {
          fp: await snap.claimWarm?.(a.diffID, dest, async (dir, known) => {
            kept = known;
            return (await dirContent(dir, known ? { ...opts, knownDirs: known } : opts, S)).fingerprint;
          }),
          kept,
        };
      } finally {
        await snap.close();
      }
    };
    const hex = a.diffID.slice(7);
    await keep(1);
    const ok = await claim(path.join(d, 'claimed1'));
    assert.ok(ok.fp, 'an untouched warm dir is handed out');
    assert.deepEqual(ok.kept?.get('sub')?.names, ['f']);
    assert.equal(await fs.readFile(path.join(d, 'claimed1', 'sub', 'f'), 'utf8'), 'x');
    // Tampered with while kept: a file added below, or one rewritten in place.
    for (const [i, tamper] of [
      (w: string) => fs.writeFile(path.join(w, 'sub', 'extra'), ''),
      (w: string) => fs.writeFile(path.join(w, 'sub', 'f'), 'y'),
    ].entries()) {
      await keep(i + 2);
      await tamper(path.join(d, 'cache', 'warm', hex));
      const bad = await claim(path.join(d, `claimed-bad${i}`));
      assert.equal(bad.fp, undefined, `tampered warm dir ${i} is not handed out`);
      assert.equal(await fs.stat(path.join(d, `claimed-bad${i}`)).catch(() => undefined), undefined);
    }
  });

  test('commit() refuses a source whose bytes do not match the digest and keeps the old state', async () => {
    const d = await tempDir();
    const cache = new VolumeCache(path.join(d, 'cache'));
    const a = await blobFile(d, 'alpha');
    await cache.commit({ metadata: metadataNaming([a]), layers: [a] });
    const bad = { ...(await blobFile(d, 'beta')), digest: sha('not beta') };
    await assert.rejects(cache.commit({ metadata: metadataNaming([bad]), layers: [bad] }), /digest mismatch/);
    const snap = await cache.snapshot();
    assert.equal(await text(await snap.open(a.diffID)), 'alpha');
    await snap.close();
  });

  test('commit() keeps what a producer actually wrote when it differs from the entry (recompressed)', async () => {
    const d = await tempDir();
    const cache = new VolumeCache(path.join(d, 'cache'));
    const a = await blobFile(d, 'alpha');
    const other = await blobFile(d, 'alpha, recompressed');
    const r = await cache.commit({
      metadata: metadataNaming([a]),
      layers: [{ ...a, source: async () => ({ ...other, diffID: a.diffID, file: other.source as string }) }],
    });
    assert.equal(r.added, 1);
    const snap = await cache.snapshot();
    assert.equal(snap.layer(a.diffID)?.digest, other.digest);
    assert.equal(await text(await snap.open(a.diffID)), 'alpha, recompressed');
    await snap.close();
  });

  test('a corrupted blob fails the read instead of restoring wrong content', async () => {
    const d = await tempDir();
    const cache = new VolumeCache(path.join(d, 'cache'));
    const a = await blobFile(d, 'alpha');
    await cache.commit({ metadata: metadataNaming([a]), layers: [a] });
    // Hard link: break it before corrupting so the source file stays intact.
    const p = cache.blobs.path(a.digest);
    await fs.rm(p);
    await fs.writeFile(p, 'alphX');
    const snap = await cache.snapshot();
    await assert.rejects(text(await snap.open(a.diffID)), /digest mismatch/);
    await snap.close();
  });
});

describe('acquireLock()', () => {
  test('breaks a lock whose owner is dead and waits for a live one', async () => {
    const d = await tempDir();
    const file = path.join(d, 'lock');
    // pid 2^22+1 is above pid_max's default and so cannot be alive.
    await fs.writeFile(
      file,
      JSON.stringify({ pid: 4194305, start: '1', host: (await import('node:os')).hostname() }),
    );
    const l1 = await acquireLock(file, { timeoutMs: 2000 });
    let waited = '';
    const second = acquireLock(file, { timeoutMs: 5000, onWait: (o) => (waited = o) });
    await new Promise((r) => setTimeout(r, 100));
    assert.match(waited, new RegExp(`^pid ${process.pid}\\b`));
    await l1.release();
    const l2 = await second;
    await l2.release();
    await assert.rejects(
      (async () => {
        const l3 = await acquireLock(file);
        try {
          await acquireLock(file, { timeoutMs: 100 });
        } finally {
          await l3.release();
        }
      })(),
      /timed out waiting for lock/,
    );
  });
});

// A child process that commits `count` blobs of `size` bytes each to the cache at `dir`, named by
// `tag`; with `slow` its producer stalls in the middle of writing the last blob (so a test can
// SIGKILL it mid-commit).
const CHILD = `
import fs from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { VolumeCache } from ${JSON.stringify(path.join(here, 'cache.ts'))};
import { CacheMetadataSchema } from ${JSON.stringify(path.join(here, '../cnb/lifecycle-metadata.ts'))};
const [dir, tag, count, size, slow] = process.argv.slice(1);
const cache = new VolumeCache(dir);
const layers = [];
for (let i = 0; i < Number(count); i++) {
  const body = Buffer.alloc(Number(size), tag + i);
  const digest = 'sha256:' + createHash('sha256').update(body).digest('hex');
  const last = i === Number(count) - 1;
  layers.push({ diffID: 'sha256:' + createHash('sha256').update('d' + tag + i).digest('hex'), digest, size: body.length,
    mediaType: 'x', source: async () => {
      const f = dir + '.' + tag + i; const h = await fs.open(f, 'w');
      await h.write(body.subarray(0, body.length >> 1));
      if (slow === 'slow' && last) { process.stdout.write('stalled\\n'); setInterval(() => {}, 1000); await new Promise(() => {}); }
      await h.write(body.subarray(body.length >> 1)); await h.close(); return f; } });
}
const metadata = CacheMetadataSchema.parse({ buildpacks: [{ key: tag, version: '1',
  layers: Object.fromEntries(layers.map((l, i) => ['l' + i, { sha: l.diffID, cache: true }])) }] });
await cache.commit({ metadata, layers });
process.stdout.write('done\\n');
`;

function runChild(args: string[]): {
  done: Promise<number>;
  out: () => string;
  kill: () => void;
  pid: number;
} {
  const p = spawn(process.execPath, ['--input-type=module', '-e', CHILD, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  p.stdout.on('data', (c) => (out += c));
  const done = new Promise<number>((resolve) =>
    p.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1))),
  );
  return { done, out: () => out, kill: () => p.kill('SIGKILL'), pid: p.pid ?? 0 };
}

async function verifyWhole(dir: string): Promise<string> {
  const cache = new VolumeCache(dir);
  const snap = await cache.snapshot();
  const bp = snap.metadata.buildpacks?.[0];
  assert.ok(bp, 'cache has metadata');
  for (const l of Object.values(bp.layers ?? {})) {
    const cached = snap.layer(l.sha);
    assert.ok(cached, `layer ${l.sha} of ${bp.key} is stored`);
    const body = await text(await snap.open(l.sha)); // verifies the digest
    assert.equal(body.length, cached.size);
  }
  await snap.close();
  return bp.key;
}

describe('VolumeCache under concurrency and crashes', () => {
  test('four processes committing at once leave one whole, consistent state', async () => {
    const d = await tempDir();
    const dir = path.join(d, 'cache');
    const kids = ['a', 'b', 'c', 'd'].map((t) => runChild([dir, t, '3', String(256 * 1024), '']));
    assert.deepEqual(await Promise.all(kids.map((k) => k.done)), [0, 0, 0, 0]);
    const winner = await verifyWhole(dir);
    assert.ok(['a', 'b', 'c', 'd'].includes(winner));
    // Pruning left exactly the winner's three blobs.
    assert.equal((await fs.readdir(path.join(dir, 'blobs', 'sha256'))).length, 3);
  });

  test('SIGKILL during a commit leaves the previous cache intact and the next commit succeeds', async () => {
    const d = await tempDir();
    const dir = path.join(d, 'cache');
    const first = runChild([dir, 'old', '2', String(64 * 1024), '']);
    assert.equal(await first.done, 0);
    const victim = runChild([dir, 'new', '3', String(1024 * 1024), 'slow']);
    for (let i = 0; i < 200 && !victim.out().includes('stalled'); i++)
      await new Promise((r) => setTimeout(r, 25));
    assert.match(victim.out(), /stalled/);
    victim.kill();
    await victim.done;
    assert.equal(await verifyWhole(dir), 'old');
    // The dead owner's lock is broken by the next writer, which commits normally.
    const next = runChild([dir, 'next', '1', '1000', '']);
    assert.equal(await next.done, 0);
    assert.equal(await verifyWhole(dir), 'next');
    const left = await fs.readdir(path.join(dir, 'blobs'));
    assert.deepEqual(
      left.filter((n) => n.startsWith('.tmp-')),
      [],
      'temp files of the dead writer are swept',
    );
  });
});
