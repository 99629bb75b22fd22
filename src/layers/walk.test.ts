import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { comparePaths } from './tar-writer.ts';
import { type DirListings, scan, walk } from './walk.ts';

const tempDir = tempDirs('kiln-walk-test-');

describe('walk()', () => {
  test('sorts by UTF-8 bytes where JavaScript string order differs (astral vs U+E000..U+FFFF)', async () => {
    const d = await tempDir();
    // UTF-16: "\ud83d..." < "\ue000"; UTF-8: F0 9F.. > EE 80 80.
    for (const n of ['a\u{1F600}', 'a\ue000', 'a-b', 'a', 'é', 'z']) await fs.writeFile(path.join(d, n), n);
    await fs.mkdir(path.join(d, 'a.d'));
    await fs.writeFile(path.join(d, 'a.d', 'x'), '');
    const paths = (await walk(d)).map((e) => e.path);
    assert.deepEqual(paths, [...paths].sort(comparePaths));
    assert.ok(paths.indexOf('a\ue000') < paths.indexOf('a\u{1F600}'));
    // ASCII-only trees take the plain string sort: "a-b" < "a.d" < "a.d/x" < "a\ue000".
    const ascii = (await walk(d, { filter: (rel) => !/[^\x20-\x7e]/.test(rel) })).map((e) => e.path);
    assert.deepEqual(ascii, ['a', 'a-b', 'a.d', 'a.d/x', 'z']);
  });

  test('reports every entry with its stat in an order fixed by the tree (hard links as files)', async () => {
    const d = await tempDir();
    await fs.mkdir(path.join(d, 'b'));
    await fs.writeFile(path.join(d, 'b', 'one'), 'x');
    await fs.link(path.join(d, 'b', 'one'), path.join(d, 'two'));
    await fs.symlink('b/one', path.join(d, 'sym'));
    const seen: string[] = [];
    const inodes = new Map<string, bigint>();
    const entries = await walk(d, {
      onEntry: (rel, kind, st, linkname) => {
        seen.push(`${kind} ${rel}${linkname ? ` -> ${linkname}` : ''}`);
        inodes.set(rel, st.ino);
      },
    });
    assert.deepEqual(seen, ['dir ', 'dir b', 'symlink sym -> b/one', 'file two', 'file b/one']);
    assert.equal(inodes.get('two'), inodes.get('b/one'));
    assert.deepEqual(
      entries.map((e) => `${e.type} ${e.path}`),
      ['dir b', 'file b/one', 'symlink sym', 'link two'],
    );
    const scanned: string[] = [];
    await scan(d, { onEntry: (rel, kind) => scanned.push(`${kind} ${rel}`) });
    assert.deepEqual(
      scanned,
      seen.map((s) => s.replace(/ -> .*/, '')),
    );
  });

  test('lets the event loop run while walking a big tree', async () => {
    const d = await tempDir();
    for (let i = 0; i < 30; i++) {
      const sub = path.join(d, `d${i}`);
      await fs.mkdir(sub);
      await Promise.all(Array.from({ length: 100 }, (_, j) => fs.writeFile(path.join(sub, `f${j}`), '')));
    }
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const entries = await walk(d);
    clearInterval(timer);
    assert.equal(entries.length, 3030);
    assert.ok(ticks > 0, 'timers fired during the walk');
  });

  test('a kept listing stands in for a directory only while its stamp holds', async () => {
    const d = await tempDir();
    await fs.mkdir(path.join(d, 'sub/deep'), { recursive: true });
    await fs.writeFile(path.join(d, 'sub/a'), 'a');
    await fs.writeFile(path.join(d, 'sub/deep/b'), 'b');
    const dirs: DirListings = new Map();
    const first = (await walk(d, { recordDirs: dirs })).map((e) => e.path);
    assert.deepEqual([...dirs.keys()].sort(), ['sub', 'sub/deep']);
    // Unchanged stamps: the kept names are used as they are (here: one left out on purpose, which
    // proves the directory was not read again).
    const doctored: DirListings = new Map(
      [...dirs].map(([k, v]) => [k, { ...v, names: v.names.filter((n) => n !== 'a') }]),
    );
    assert.deepEqual(
      (await walk(d, { knownDirs: doctored })).map((e) => e.path),
      first.filter((p) => p !== 'sub/a'),
    );
    // A file created in a directory changes its stamp: that directory is read again.
    await fs.writeFile(path.join(d, 'sub/deep/new'), 'n');
    const again = (await walk(d, { knownDirs: dirs })).map((e) => e.path);
    assert.deepEqual(again, [...first, 'sub/deep/new'].sort());
    // So does a removal, even with the directory's mtime put back.
    const st = await fs.stat(path.join(d, 'sub'));
    await fs.rm(path.join(d, 'sub/a'));
    await fs.utimes(path.join(d, 'sub'), st.atime, st.mtime);
    assert.ok(!(await walk(d, { knownDirs: dirs })).some((e) => e.path === 'sub/a'));
  });

  test('a kept listing naming anything but a plain name is refused', async () => {
    const d = await tempDir();
    await fs.mkdir(path.join(d, 'sub'));
    const dirs: DirListings = new Map();
    await walk(d, { recordDirs: dirs });
    const evil: DirListings = new Map([['sub', { stamp: dirs.get('sub')!.stamp, names: ['../../etc'] }]]);
    await assert.rejects(walk(d, { knownDirs: evil }), /not a file name/);
  });
});
