import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { VolumeCache } from '../../src/lifecycle/cache.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'build-child.ts');

let w: E2E;
before(async () => {
  w = await makeE2E();
});
after(async () => {
  await w?.cleanup();
});

interface Child {
  readonly done: Promise<number>;
  out(): string;
  kill(): void;
}

function child(app: string, image: string, killAt = '', cacheDir?: string): Child {
  const args = [CHILD, w.root, app, image, killAt, ...(cacheDir ? [cacheDir] : [])];
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (c) => (out += c));
  p.stderr.on('data', (c) => (out += c));
  const done = new Promise<number>((resolve) =>
    p.on('exit', (code, sig) => resolve(code ?? (sig ? 137 : 1))),
  );
  return { done, out: () => out, kill: () => p.kill('SIGKILL') };
}

async function killAt(c: Child, phase: string): Promise<void> {
  for (let i = 0; i < 1200 && !c.out().includes(`at ${phase}`); i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.match(c.out(), new RegExp(`at ${phase}`), `child reached ${phase}: ${c.out()}`);
  c.kill();
  assert.equal(await c.done, 137);
}

/** Every layer the cache's metadata names is stored and reads back with its digest. */
async function assertCacheWhole(cacheDir: string): Promise<number> {
  const snap = await new VolumeCache(cacheDir).snapshot();
  let n = 0;
  try {
    for (const bp of snap.metadata.buildpacks ?? []) {
      for (const [name, l] of Object.entries(bp.layers ?? {})) {
        assert.ok(snap.layer(l.sha), `cache holds ${bp.key}:${name}`);
        await text(await snap.open(l.sha)); // verifies the digest
        n++;
      }
    }
  } finally {
    await snap.close();
  }
  return n;
}

const cacheOf = (image: string) => path.join(w.root, 'cache', image.replace(/[^a-z0-9]+/g, '_'));

describe('kiln build under faults', () => {
  test('SIGKILL during export keeps the previous image and the cache; the next build succeeds', async () => {
    const app = await w.app('kill-export', 'one', 'deps-1');
    const first = await w.build(app, 'e2e-kill-export');
    await fs.writeFile(path.join(app, 'message.txt'), 'two\n');
    await fs.writeFile(path.join(app, 'deps.txt'), 'deps-2');
    const c = child(app, 'e2e-kill-export', 'export-layers');
    await killAt(c, 'export-layers');
    assert.equal(await w.store.digestOf('e2e-kill-export'), first.digest, 'previous image still tagged');
    assert.equal(await assertCacheWhole(cacheOf('e2e-kill-export')), 2, 'runtime + downloads still cached');
    const next = await w.build(app, 'e2e-kill-export');
    assert.notEqual(next.digest, first.digest);
    assert.equal(await w.store.digestOf('e2e-kill-export'), next.digest);
    assert.match(next.log.lines.join('\n'), /runtime: reusing cached layer/);
    const left = await fs.readdir(path.join(w.root, 'tmp'));
    assert.deepEqual(left, [], `temp dirs of the killed build are swept: ${left}`);
  });

  test('SIGKILL during cache save keeps the previous cache; the next build succeeds and commits', async () => {
    const app = await w.app('kill-cache', 'one', 'deps-a');
    await w.build(app, 'e2e-kill-cache');
    const cacheDir = cacheOf('e2e-kill-cache');
    const before = JSON.parse(await fs.readFile(path.join(cacheDir, 'cache.json'), 'utf8'));
    await fs.writeFile(path.join(app, 'deps.txt'), 'deps-b');
    const c = child(app, 'e2e-kill-cache', 'cache-commit');
    await killAt(c, 'cache-commit');
    const during = JSON.parse(await fs.readFile(path.join(cacheDir, 'cache.json'), 'utf8'));
    assert.deepEqual(during.metadata, before.metadata, 'the old cache state is untouched');
    assert.equal(await assertCacheWhole(cacheDir), 2);
    // The image of the killed build was already written: that is fine (the cache save is last).
    const next = await w.build(app, 'e2e-kill-cache');
    assert.match(next.log.lines.join('\n'), /deps: downloading deps-b/, 'old cache state said deps-a');
    assert.equal(await assertCacheWhole(cacheDir), 2);
    const after = JSON.parse(await fs.readFile(path.join(cacheDir, 'cache.json'), 'utf8'));
    assert.match(JSON.stringify(after.metadata), /deps-b/);
  });

  test('a failing buildpack exits 51 and leaves the previous image, the cache and no temp dir behind', async () => {
    const app = await w.app('fails', 'fine first', 'deps-ok');
    const first = await w.build(app, 'e2e-fails');
    const cacheBefore = await fs.readFile(path.join(cacheOf('e2e-fails'), 'cache.json'), 'utf8');
    const bad = path.join(w.root, 'bad-bp');
    await fs.mkdir(path.join(bad, 'bin'), { recursive: true });
    await fs.writeFile(
      path.join(bad, 'buildpack.toml'),
      'api = "0.12"\n[buildpack]\nid = "e2e/bad"\nversion = "0.0.1"\n',
    );
    await fs.writeFile(path.join(bad, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
    await fs.writeFile(
      path.join(bad, 'bin', 'build'),
      '#!/usr/bin/env bash\necho "bad: giving up" >&2\nexit 7\n',
      {
        mode: 0o755,
      },
    );
    await assert.rejects(
      w.build(app, 'e2e-fails', { buildpacks: ['e2e/runtime', bad, 'e2e/process'] }),
      (e: unknown) => exitCodeOf(e) === 51 && /e2e\/bad/.test(String(e)),
    );
    assert.equal(await w.store.digestOf('e2e-fails'), first.digest);
    assert.equal(await fs.readFile(path.join(cacheOf('e2e-fails'), 'cache.json'), 'utf8'), cacheBefore);
    assert.deepEqual(await fs.readdir(path.join(w.root, 'tmp')), []);
  });

  test('two builds sharing one cache at the same time both succeed and leave it consistent', async () => {
    const shared = path.join(w.root, 'shared-cache');
    const a = await w.app('conc-a', 'a', 'deps-a');
    const b = await w.app('conc-b', 'b', 'deps-b');
    const ca = child(a, 'e2e-conc-a', '', shared);
    const cb = child(b, 'e2e-conc-b', '', shared);
    assert.deepEqual(await Promise.all([ca.done, cb.done]), [0, 0], `${ca.out()}\n${cb.out()}`);
    assert.equal(await assertCacheWhole(shared), 2);
    const again = await w.build(a, 'e2e-conc-a', { cacheDir: shared });
    assert.equal(again.digest, JSON.parse(ca.out().trim().split('\n').at(-1)!).digest);
  });
});
