import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { afterBuild, beforeBuild, entries } from '../../buildpacks/go/src/build-cache.ts';

// kiln/go's split of GOCACHE into `go-cache` (kept untouched by an edit's rebuild, so the platform
// stores nothing) and `go-cache-recent` (this build's few new entries), with Debian's real Go.

const exec = promisify(execFile);
const GOROOT = '/usr/lib/go-1.19';
const hasGo = await access(path.join(GOROOT, 'bin', 'go')).then(
  () => true,
  () => false,
);

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-go-build-cache-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Every file of `dir` with what the platform's fingerprint sees of it (size, mtime, ctime, inode). */
async function stamps(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of entries(dir).keys()) {
    const s = await stat(path.join(dir, rel), { bigint: true });
    out.set(rel, `${s.size}/${s.mtimeNs}/${s.ctimeNs}/${s.ino}`);
  }
  return out;
}

const entryName = (c: string) => `${c.repeat(2)}/${c.repeat(64)}-d`;

describe('GOCACHE split', () => {
  test('entries come and go by rename; unused recent ones are dropped; past the limits or into an empty cache they merge', async () => {
    const cache = path.join(tmp, 'syn-cache');
    const recent = path.join(tmp, 'syn-recent');
    const put = async (dir: string, rel: string, bytes: number) => {
      await mkdir(path.join(dir, path.dirname(rel)), { recursive: true });
      await writeFile(path.join(dir, rel), Buffer.alloc(bytes));
    };
    // What Go does to an entry older than an hour that it reads: dates it now.
    const use = (rel: string) => utimes(path.join(cache, rel), new Date(), new Date());
    // Empty cache: everything the build writes stays in it.
    let split = beforeBuild(cache, recent);
    assert.equal(split.fresh, true);
    await put(cache, entryName('a'), 100);
    await writeFile(path.join(cache, 'trim.txt'), '1');
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 0, merged: 1, dropped: 0 });
    assert.deepEqual([...entries(cache).keys()], [entryName('a')]);
    // Small additions go to recent and come back for the next build.
    split = beforeBuild(cache, recent);
    await put(cache, entryName('b'), 100);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 1, merged: 0, dropped: 0 });
    split = beforeBuild(cache, recent);
    assert.deepEqual([...entries(cache).keys()].sort(), [entryName('a'), entryName('b')]);
    assert.equal(entries(recent).size, 0);
    // Used again: kept with the new one.
    await use(entryName('b'));
    await put(cache, entryName('c'), 100);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 2, merged: 0, dropped: 0 });
    assert.deepEqual([...entries(cache).keys()], [entryName('a')]);
    assert.deepEqual([...entries(recent).keys()].sort(), [entryName('b'), entryName('c')]);
    // Not used by the next build: dropped (c); the used one stays (b).
    split = beforeBuild(cache, recent);
    await use(entryName('b'));
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 1, merged: 0, dropped: 1 });
    assert.deepEqual([...entries(recent).keys()], [entryName('b')]);
    assert.deepEqual([...entries(cache).keys()], [entryName('a')]);
    // Past the byte limit: all of them join go-cache; recent is emptied.
    split = beforeBuild(cache, recent);
    await use(entryName('b'));
    await put(cache, entryName('d'), 1000);
    assert.deepEqual(afterBuild(cache, recent, split, 500), { recent: 0, merged: 2, dropped: 0 });
    assert.equal(entries(cache).size, 3);
    assert.equal(entries(recent).size, 0);
    // Past the entry limit too.
    split = beforeBuild(cache, recent);
    await put(cache, entryName('e'), 10);
    await put(cache, entryName('f'), 10);
    assert.deepEqual(afterBuild(cache, recent, split, 500, 1), { recent: 0, merged: 2, dropped: 0 });
    assert.equal(entries(cache).size, 5);
    // Names that are not Go cache entries are never moved.
    await put(cache, 'zz/not-an-entry', 10);
    split = beforeBuild(cache, recent);
    await put(cache, '0e/also-not', 10);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 0, merged: 0, dropped: 0 });
  });

  test('an edit rebuild with real Go leaves go-cache untouched, a rebuild of the same source writes no new entry, unused recent entries are dropped', {
    skip: hasGo ? false : `needs ${GOROOT} (apt-get install golang-1.19-go)`,
  }, async () => {
    const app = path.join(tmp, 'app');
    const cache = path.join(tmp, 'go-cache');
    const recent = path.join(tmp, 'go-cache-recent');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'go.mod'), 'module example.com/hello\n\ngo 1.19\n');
    const main = (n: number) =>
      writeFile(path.join(app, 'main.go'), `package main\n\nfunc main() { println("edit ${n}") }\n`);
    const env = {
      PATH: process.env.PATH,
      HOME: tmp,
      GOROOT,
      GOCACHE: cache,
      GOPATH: path.join(tmp, 'gopath'),
      CGO_ENABLED: '0',
      GOENV: 'off',
      GOFLAGS: '',
      GOPROXY: 'off',
      GOTOOLCHAIN: 'local',
    };
    const build = async () => {
      // As in kiln/go, whose app layer starts empty: go cannot skip work for an up-to-date binary.
      await rm(path.join(tmp, 'out'), { recursive: true, force: true });
      const split = beforeBuild(cache, recent);
      await exec(path.join(GOROOT, 'bin', 'go'), ['build', '-trimpath', '-o', `${tmp}/out/`, '.'], {
        cwd: app,
        env,
      });
      return afterBuild(cache, recent, split);
    };
    await main(0);
    const first = await build();
    assert.ok(first.merged > 10, `the first build fills go-cache (${first.merged} entries)`);
    const base = await stamps(cache);
    await main(1);
    const edit = await build();
    assert.ok(
      edit.recent > 0 && edit.merged === 0 && edit.dropped === 0,
      `an edit adds recent entries only: ${JSON.stringify(edit)}`,
    );
    assert.deepEqual(await stamps(cache), base, 'go-cache files untouched (same inodes, times, sizes)');
    const recentNames = [...entries(recent).keys()].sort();
    // Same source again: the entries come from the cache (recent moved in), no new one is written
    // (what Go did not read is dropped).
    const again = await build();
    assert.equal(again.merged, 0);
    assert.equal(again.recent + again.dropped, recentNames.length);
    assert.ok([...entries(recent).keys()].every((n) => recentNames.includes(n)));
    assert.deepEqual(await stamps(cache), base);
    // Another edit: the first edit's entries go unused and are dropped; recent does not grow.
    await main(2);
    const next = await build();
    assert.ok(next.dropped > 0 && next.merged === 0, JSON.stringify(next));
    assert.ok(entries(recent).size <= recentNames.length, `${entries(recent).size} <= ${recentNames.length}`);
    assert.deepEqual(await stamps(cache), base);
    assert.ok((await readdir(path.join(tmp, 'out'))).includes('hello'));
  });
});
