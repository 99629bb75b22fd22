import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { runMain } from '../../../test/helpers/cli.ts';
import { tempDirs } from '../../../test/helpers/temp-dirs.ts';
import { ExitCode } from '../../cnb/exit-codes.ts';
import { parseByteSize, parseDuration } from '../../config/units.ts';
import { RootfsCache, sandboxCacheDir } from '../../sandbox/rootfs-cache.ts';

const temp = tempDirs('kiln-cachecli-');
let home: string;
let config: string;
let cache: RootfsCache;
const digest = (c: string) => `sha256:${c.repeat(64)}`;

function kiln(...argv: string[]) {
  return runMain(argv, { KILN_HOME: home, KILN_CONFIG: config, HOME: home });
}

/** Three entries of 1000, 2000 and 3000 bytes, used 3 days, 2 hours and just now ago. */
async function fill(): Promise<void> {
  const ages = [3 * 86_400_000, 2 * 3_600_000, 0];
  for (const [i, c] of ['a', 'b', 'c'].entries()) {
    await cache.ensure(digest(c), (dest) => writeFile(path.join(dest, 'blob'), Buffer.alloc((i + 1) * 1000)));
    await cache.release(digest(c));
    const t = new Date(Date.now() - ages[i]!);
    await utimes(cache.pathFor(digest(c)), t, t);
  }
}

const entries = async () =>
  (await readdir(cache.dir)).filter((n) => /^sha256-[0-9a-f]+$/.test(n)).map((n) => n.slice(7, 8));

before(async () => {
  home = await temp();
  // Searchable by others, so that kiln as root keeps the cache under KILN_HOME (not /var/cache).
  await chmod(home, 0o755);
  config = path.join(home, 'config.toml');
  const dir = await sandboxCacheDir(path.join(home, 'cache'), process.getuid?.() ?? 0);
  assert.ok(dir.startsWith(home), `test cache must stay in the temp dir, got ${dir}`);
  cache = new RootfsCache(dir, { bound: {} });
});

describe('kiln cache prune', () => {
  test('--dry-run lists what --all would remove and removes nothing', async () => {
    await fill();
    const r = await kiln('cache', 'prune', '--all', '--dry-run');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.match(/^would remove /gm)?.length, 3);
    assert.deepEqual((await entries()).sort(), ['a', 'b', 'c']);
  });

  test('--keep-storage keeps the most recently used entries that fit', async () => {
    const r = await kiln('cache', 'prune', '--keep-storage', '4KB');
    assert.equal(r.code, 0, r.err);
    // c (3000) fits in 4000, b (2000) does not, a (1000) does.
    assert.deepEqual((await entries()).sort(), ['a', 'c']);
    assert.match(r.out, /^removed .*sha256-b{64} \(2 KiB, .*size\)$/m);
  });

  test('--filter until= removes entries unused for longer', async () => {
    const r = await kiln('cache', 'prune', '--filter', 'until=24h');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await entries(), ['c']);
  });

  test('no flags: the configured bound ([rootfs-cache] in the config file)', async () => {
    await fill();
    await writeFile(config, '[rootfs-cache]\nmax-size = "5000B"\nmax-age = "1d"\n');
    const r = await kiln('cache', 'prune');
    assert.equal(r.code, 0, r.err);
    // a is older than a day; b and c fit in 5000 bytes.
    assert.deepEqual((await entries()).sort(), ['b', 'c']);
    await writeFile(config, '');
  });

  test('--all removes every entry not in use', async () => {
    const r = await kiln('cache', 'prune', '--all');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await entries(), []);
  });

  test('bad values are refused with one line naming the flag or key', async () => {
    const size = await kiln('cache', 'prune', '--keep-storage', 'lots');
    assert.equal(size.code, ExitCode.InvalidArgs);
    assert.match(size.err, /--keep-storage "lots": expected a size/);
    const filter = await kiln('cache', 'prune', '--filter', 'label=x');
    assert.equal(filter.code, ExitCode.InvalidArgs);
    assert.match(filter.err, /--filter "label=x": expected until=DURATION/);
    await mkdir(path.dirname(config), { recursive: true });
    await writeFile(config, '[rootfs-cache]\nmax-size = "huge"\n');
    const bad = await kiln('cache', 'prune');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /rootfs-cache.*max-size.*expected a size/);
    await writeFile(config, '');
  });
});

describe('units', () => {
  test('sizes and durations as docker and the config file spell them', () => {
    assert.equal(parseByteSize('10GiB'), 10 * 1024 ** 3);
    assert.equal(parseByteSize('10GB'), 10 * 1000 ** 3);
    assert.equal(parseByteSize('1.5g'), 1.5 * 1024 ** 3);
    assert.equal(parseByteSize('4096'), 4096);
    assert.equal(parseByteSize('-1'), undefined);
    assert.equal(parseByteSize('10 parsecs'), undefined);
    assert.equal(parseDuration('30d'), 30 * 86_400_000);
    assert.equal(parseDuration('1h30m'), 90 * 60_000);
    assert.equal(parseDuration('24'), undefined);
    assert.equal(parseDuration(''), undefined);
  });
});
