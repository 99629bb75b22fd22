import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { comparePaths } from './tar-writer.ts';
import { walk } from './walk.ts';

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

  test('reports each regular file once with the stat that gave its header (hard links included)', async () => {
    const d = await tempDir();
    await fs.writeFile(path.join(d, 'one'), 'x');
    await fs.link(path.join(d, 'one'), path.join(d, 'two'));
    await fs.symlink('one', path.join(d, 'sym'));
    const seen = new Map<string, bigint>();
    const entries = await walk(d, { onFile: (e, st) => seen.set(e.path, st.ino) });
    assert.deepEqual([...seen.keys()].sort(), ['one', 'two']);
    assert.equal(seen.get('one'), seen.get('two'));
    assert.deepEqual(
      entries.map((e) => `${e.type} ${e.path}`),
      ['file one', 'symlink sym', 'link two'],
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
});
