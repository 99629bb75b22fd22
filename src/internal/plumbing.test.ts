import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { z } from 'zod';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { mapBounded, Semaphore } from './bounded.ts';
import { DataFileError, readDataFile, readDataFileIfExists, writeDataFile } from './data-file.ts';
import { exists, isDir } from './fs.ts';
import { pidAlive, processStart, sameProcessAlive } from './process.ts';
import { isAbandonedTemp, tempIn, tempOwner, tempSibling } from './temp-name.ts';

const tempDir = tempDirs('kiln-internal-test-');

describe('writeFileAtomic', () => {
  test('writes with the given mode whatever the umask, and leaves no temp file', async () => {
    const d = await tempDir();
    const f = path.join(d, 'sub', 'file.json');
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(f, 'one', 0o644, { fsync: true, fsyncDir: true });
    } finally {
      process.umask(old);
    }
    assert.equal(await fs.readFile(f, 'utf8'), 'one');
    assert.equal((await fs.stat(f)).mode & 0o777, 0o644);
    await writeFileAtomic(f, 'two');
    assert.equal(await fs.readFile(f, 'utf8'), 'two');
    assert.deepEqual(await fs.readdir(path.dirname(f)), ['file.json']);
  });

  test('a link planted where the data goes is replaced, never written through', async () => {
    const d = await tempDir();
    const victim = path.join(d, 'victim');
    await fs.writeFile(victim, 'keep');
    const f = path.join(d, 'f');
    await fs.symlink(victim, f);
    await writeFileAtomic(f, 'new');
    assert.equal(await fs.readFile(victim, 'utf8'), 'keep');
    assert.equal(await fs.readFile(f, 'utf8'), 'new');
    assert.ok(!(await fs.lstat(f)).isSymbolicLink());
  });
});

describe('temp names', () => {
  test('one scheme: hidden, next to the target, owner pid readable', () => {
    const t = tempSibling('/a/b/index.json');
    assert.match(t, new RegExp(`^/a/b/\\.index\\.json\\.tmp-${process.pid}-[0-9a-f]{12}$`));
    assert.notEqual(t, tempSibling('/a/b/index.json'));
    assert.match(tempIn('/x'), new RegExp(`^/x/\\.tmp-${process.pid}-[0-9a-f]{12}$`));
    assert.equal(tempOwner(path.basename(t)), process.pid);
    assert.equal(tempOwner('index.json'), undefined);
    assert.equal(isAbandonedTemp(path.basename(t)), false, 'our own temp is not abandoned');
    assert.equal(isAbandonedTemp('.x.tmp-4194305-0123456789ab'), true, 'a dead pid');
  });
});

describe('process liveness', () => {
  test('a pid with another start time is not the same process', () => {
    const start = processStart(process.pid);
    assert.match(start, /^\d+$/);
    assert.ok(pidAlive(process.pid));
    assert.ok(sameProcessAlive(process.pid, start));
    assert.ok(!sameProcessAlive(process.pid, `${Number(start) + 1}`));
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    assert.ok(!pidAlive(Number(child.stdout)));
  });
});

describe('exists and isDir', () => {
  test('absent is ENOENT/ENOTDIR only; a dangling link exists but is no directory', async () => {
    const d = await tempDir();
    await fs.writeFile(path.join(d, 'f'), '');
    await fs.symlink(path.join(d, 'nowhere'), path.join(d, 'dangling'));
    await fs.symlink(d, path.join(d, 'dirlink'));
    assert.equal(await exists(path.join(d, 'f')), true);
    assert.equal(await exists(path.join(d, 'missing')), false);
    assert.equal(await exists(path.join(d, 'f', 'under-a-file')), false);
    assert.equal(await exists(path.join(d, 'dangling')), true);
    assert.equal(await isDir(path.join(d, 'dangling')), false);
    assert.equal(await isDir(path.join(d, 'dirlink')), true);
    assert.equal(await isDir(path.join(d, 'f')), false);
  });
});

describe('bounded concurrency', () => {
  test('never more than the limit in flight; results in order; the first failure is thrown', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapBounded([5, 1, 4, 2, 3, 0], 2, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return i * 10;
    });
    assert.deepEqual(out, [0, 10, 20, 30, 40, 50]);
    assert.equal(peak, 2);
    await assert.rejects(
      mapBounded([1, 2, 3], 3, async (n) => {
        if (n === 2) throw new Error('two failed');
        return n;
      }),
      /two failed/,
    );
    const sem = new Semaphore(1);
    const order: string[] = [];
    await Promise.all(
      ['a', 'b'].map((x) =>
        sem.run(async () => {
          order.push(`${x}+`);
          await new Promise((r) => setTimeout(r, 5));
          order.push(`${x}-`);
        }),
      ),
    );
    assert.deepEqual(order, ['a+', 'a-', 'b+', 'b-']);
    assert.throws(() => new Semaphore(0), /needs >= 1 slot/);
  });
});

describe('data files', () => {
  const Schema = z.object({ name: z.string(), items: z.array(z.number()).optional() });

  test('TOML and JSON by extension: written atomically, read back, validated', async () => {
    const d = await tempDir();
    for (const f of [path.join(d, 'a.toml'), path.join(d, 'a.json')]) {
      await writeDataFile(f, { name: 'x', items: [1, 2], skipped: undefined });
      assert.deepEqual(await readDataFile(f, Schema), { name: 'x', items: [1, 2] });
    }
    assert.equal(await fs.readFile(path.join(d, 'a.json'), 'utf8'), '{"name":"x","items":[1,2]}\n');
  });

  test('missing is undefined; corrupt or invalid is an error naming the file and the key', async () => {
    const d = await tempDir();
    assert.equal(await readDataFileIfExists(path.join(d, 'none.toml'), Schema), undefined);
    await assert.rejects(readDataFile(path.join(d, 'none.toml'), Schema), /none\.toml: file not found/);
    await fs.writeFile(path.join(d, 'bad.toml'), 'name = ');
    await assert.rejects(readDataFileIfExists(path.join(d, 'bad.toml'), Schema), (e) => {
      assert.ok(e instanceof DataFileError);
      assert.equal(e.path, path.join(d, 'bad.toml'));
      assert.match(e.message, /bad\.toml: invalid TOML/);
      return true;
    });
    await fs.writeFile(path.join(d, 'bad.json'), '{"name":"x","items":["one"]}');
    await assert.rejects(readDataFileIfExists(path.join(d, 'bad.json'), Schema), /bad\.json: items\[0\]: /);
    await fs.mkdir(path.join(d, 'dir.json'));
    await assert.rejects(
      readDataFileIfExists(path.join(d, 'dir.json'), Schema),
      /dir\.json: cannot read: EISDIR/,
    );
  });
});
