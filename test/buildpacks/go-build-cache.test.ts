import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
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
  test('entries come and go by rename; the recent ones merge into go-cache past the limit or into an empty one', async () => {
    const cache = path.join(tmp, 'syn-cache');
    const recent = path.join(tmp, 'syn-recent');
    const put = async (dir: string, rel: string, bytes: number) => {
      await mkdir(path.join(dir, path.dirname(rel)), { recursive: true });
      await writeFile(path.join(dir, rel), Buffer.alloc(bytes));
    };
    // Empty cache: everything the build writes stays in it.
    let split = beforeBuild(cache, recent);
    assert.equal(split.fresh, true);
    await put(cache, entryName('a'), 100);
    await writeFile(path.join(cache, 'trim.txt'), '1');
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 0, merged: 1 });
    assert.deepEqual([...entries(cache).keys()], [entryName('a')]);
    // Small additions go to recent, come back for the next build, and leave again with the new ones.
    split = beforeBuild(cache, recent);
    await put(cache, entryName('b'), 100);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 1, merged: 0 });
    split = beforeBuild(cache, recent);
    assert.deepEqual([...entries(cache).keys()].sort(), [entryName('a'), entryName('b')]);
    assert.equal(entries(recent).size, 0);
    await put(cache, entryName('c'), 100);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 2, merged: 0 });
    assert.deepEqual([...entries(cache).keys()], [entryName('a')]);
    assert.deepEqual([...entries(recent).keys()].sort(), [entryName('b'), entryName('c')]);
    // Past the limit: all of them join go-cache; recent is emptied.
    split = beforeBuild(cache, recent);
    await put(cache, entryName('d'), 1000);
    assert.deepEqual(afterBuild(cache, recent, split, 500), { recent: 0, merged: 3 });
    assert.equal(entries(cache).size, 4);
    assert.equal(entries(recent).size, 0);
    // Names that are not Go cache entries are never moved.
    await put(cache, 'zz/not-an-entry', 10);
    split = beforeBuild(cache, recent);
    await put(cache, '0e/also-not', 10);
    assert.deepEqual(afterBuild(cache, recent, split), { recent: 0, merged: 0 });
  });

  test('an edit rebuild with real Go leaves go-cache untouched, and a rebuild of the same source compiles nothing', {
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
      edit.recent > 0 && edit.merged === 0,
      `an edit adds recent entries only: ${JSON.stringify(edit)}`,
    );
    assert.deepEqual(await stamps(cache), base, 'go-cache files untouched (same inodes, times, sizes)');
    const recentNames = [...entries(recent).keys()].sort();
    // Same source again: every entry comes from the cache (recent moved in), nothing new is written.
    const again = await build();
    assert.deepEqual(again, { recent: recentNames.length, merged: 0 });
    assert.deepEqual([...entries(recent).keys()].sort(), recentNames);
    assert.deepEqual(await stamps(cache), base);
    assert.ok((await readdir(path.join(tmp, 'out'))).includes('hello'));
  });
});
