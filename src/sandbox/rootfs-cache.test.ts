import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import { fileEntry } from '../../test/helpers/tar-entries.ts';
import { extract } from '../layers/extract.ts';
import { type TarEntry, tarStream } from '../layers/tar-writer.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer, imageFrom } from '../oci/memory.ts';
import { BubblewrapExecutor } from './bubblewrap.ts';
import { addMountPoint, RootfsCache } from './rootfs-cache.ts';

const DIGEST = `sha256:${'1'.repeat(64)}` as const;

/** The cache directory's names, this process's pid written as PID. */
async function listing(dir: string): Promise<string[]> {
  return (await readdir(dir)).map((n) => n.replace(`.use-${process.pid}`, '.use-PID')).sort();
}

async function tarLayer(entries: TarEntry[]) {
  const tar = await buffer(tarStream(entries));
  return bytesLayer({ blob: tar, tar, mediaType: MediaType.OciLayer });
}

describe('RootfsCache', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-rootfs-'));
    await chmod(dir, 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('ensure() unpacks once per digest and creates the sandbox mount points', async () => {
    const cache = new RootfsCache(path.join(dir, 'c1'));
    let calls = 0;
    const unpack = async (dest: string) => {
      calls++;
      await writeFile(path.join(dest, 'marker'), 'x');
    };
    const [a, b] = await Promise.all([cache.ensure(DIGEST, unpack), cache.ensure(DIGEST, unpack)]);
    const c = await cache.ensure(DIGEST, unpack);
    assert.equal(calls, 1);
    assert.equal(a, b);
    assert.equal(a, c);
    assert.equal(path.basename(a), `sha256-${'1'.repeat(64)}`);
    for (const mp of ['workspace', 'layers', 'cnb', 'platform', 'tmp', 'proc', 'dev']) {
      assert.ok((await lstat(path.join(a, mp))).isDirectory(), mp);
    }
    // Not world-writable in the cache: the sandbox mounts a tmpfs (mode 1777) over it.
    assert.equal((await lstat(path.join(a, 'tmp'))).mode & 0o7777, 0o755);
    // The entry, its stamp (inert, size) and this process's lease on it.
    assert.deepEqual(await listing(cache.dir), [
      path.basename(a),
      `${path.basename(a)}.json`,
      `${path.basename(a)}.use-PID`,
    ]);
  });

  test('two processes asking for the same image at once unpack it once and share it', async () => {
    const cacheDir = path.join(dir, 'c6');
    const counter = path.join(dir, 'c6-unpacks');
    const script = `
      import { appendFile, writeFile } from 'node:fs/promises';
      import path from 'node:path';
      import { RootfsCache } from ${JSON.stringify(new URL('./rootfs-cache.ts', import.meta.url).href)};
      const p = await new RootfsCache(${JSON.stringify(cacheDir)}).ensure(${JSON.stringify(DIGEST)}, async (dest) => {
        await appendFile(${JSON.stringify(counter)}, 'x');
        await new Promise((r) => setTimeout(r, 400));
        await writeFile(path.join(dest, 'done'), 'y');
      });
      console.log(p);`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', script], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        c.stdout.on('data', (b: Buffer) => {
          out += b.toString();
        });
        c.on('error', reject);
        c.on('exit', (code) =>
          code === 0 ? resolve(out.trim()) : reject(new Error(`child exited ${code}`)),
        );
      });
    const [a, b] = await Promise.all([run(), run()]);
    assert.equal(a, b);
    assert.equal(await readFile(counter, 'utf8'), 'x');
    assert.equal(await readFile(path.join(a, 'done'), 'utf8'), 'y');
  });

  test('a failed unpack leaves nothing that is used, and the next call unpacks again', async () => {
    const cache = new RootfsCache(path.join(dir, 'c2'));
    await assert.rejects(
      cache.ensure(DIGEST, async (dest) => {
        await writeFile(path.join(dest, 'half'), 'x');
        throw new Error('network went away');
      }),
      /network went away/,
    );
    assert.deepEqual(await readdir(cache.dir), []);
    const p = await cache.ensure(DIGEST, async (dest) => writeFile(path.join(dest, 'whole'), 'x'));
    assert.deepEqual((await readdir(p)).includes('half'), false);
    assert.equal(await readFile(path.join(p, 'whole'), 'utf8'), 'x');
  });

  test('a lock and temp dir left by a killed process are taken over and swept', async () => {
    const cache = new RootfsCache(path.join(dir, 'c3'));
    await mkdir(cache.dir, { recursive: true });
    const dead = spawnSync('true').pid as number; // exited: its pid is not alive
    const final = cache.pathFor(DIGEST);
    await writeFile(`${final}.lock`, String(dead));
    await mkdir(`${final}.tmp-${dead}-abcdef01`);
    await writeFile(path.join(`${final}.tmp-${dead}-abcdef01`, 'partial'), 'x');
    const p = await cache.ensure(DIGEST, async (dest) => writeFile(path.join(dest, 'ok'), 'x'));
    assert.deepEqual(await listing(cache.dir), [
      path.basename(p),
      `${path.basename(p)}.json`,
      `${path.basename(p)}.use-PID`,
    ]);
  });

  test('prune() by size keeps the most recently used entries that fit, by age removes old ones', async () => {
    const cache = new RootfsCache(path.join(dir, 'c5'), { bound: {} });
    const digests = ['a', 'b', 'c'].map((c) => `sha256:${c.repeat(64)}`);
    const sizes = [1000, 2000, 3000];
    for (const [i, d] of digests.entries()) {
      await cache.ensure(d, (dest) => writeFile(path.join(dest, 'blob'), Buffer.alloc(sizes[i]!)));
      await cache.release(d);
    }
    const at = (d: string, hoursAgo: number) => {
      const t = new Date(Date.now() - hoursAgo * 3600_000);
      return utimes(cache.pathFor(d), t, t);
    };
    await at(digests[0]!, 3); // a: oldest
    await at(digests[1]!, 2);
    await at(digests[2]!, 0); // c: newest
    // 4500 bytes, counted from the most recently used: c (3000) fits, b (2000) would make 5000
    // and goes, a (1000) fits after all (4000).
    const dry = await cache.prune({ maxBytes: 4500, dryRun: true });
    assert.deepEqual(
      dry.removed.map((e) => [path.basename(e.path), e.reason]),
      [[path.basename(cache.pathFor(digests[1]!)), 'size']],
    );
    assert.equal((await readdir(cache.dir)).filter((n) => /^sha256-[0-9a-f]+$/.test(n)).length, 3);
    const bySize = await cache.prune({ maxBytes: 4500 });
    assert.deepEqual(
      bySize.removed.map((e) => e.path),
      [cache.pathFor(digests[1]!)],
    );
    assert.equal(bySize.keptBytes, 4000);
    const byAge = await cache.prune({ maxAgeMs: 3600_000 });
    assert.deepEqual(
      byAge.removed.map((e) => [e.path, e.reason]),
      [[cache.pathFor(digests[0]!), 'age']],
    );
    const all = await cache.prune({ all: true });
    assert.deepEqual(
      all.removed.map((e) => e.path),
      [cache.pathFor(digests[2]!)],
    );
    assert.deepEqual(await readdir(cache.dir), []);
  });

  test('prune() never removes an entry a live process uses; after that process exits, it does', async () => {
    const cacheDir = path.join(dir, 'c7');
    const script = `
      import { RootfsCache } from ${JSON.stringify(new URL('./rootfs-cache.ts', import.meta.url).href)};
      const p = await new RootfsCache(${JSON.stringify(cacheDir)}).ensure(${JSON.stringify(DIGEST)}, async () => {});
      console.log(p);
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const used = await new Promise<string>((resolve, reject) => {
      child.stdout.once('data', (b: Buffer) => resolve(b.toString().trim()));
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    const cache = new RootfsCache(cacheDir);
    const held = await cache.prune({ all: true });
    assert.deepEqual(held.removed, []);
    assert.deepEqual(held.inUse, [used]);
    assert.ok((await lstat(used)).isDirectory());
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await exited;
    const freed = await cache.prune({ all: true });
    assert.deepEqual(
      freed.removed.map((e) => e.path),
      [used],
    );
    // The dead process's lease is swept too.
    assert.deepEqual(await readdir(cacheDir), []);
  });

  test('ensureImage() stacks real layers with whiteouts; the result runs in the sandbox', async (t) => {
    const bottom = await tarLayer([
      { path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      fileEntry('etc/os-release', 'ID=kiln-test\n'),
      fileEntry('etc/gone', 'deleted by the upper layer\n'),
      { path: 'opt', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      { path: 'opt/old', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      fileEntry('opt/old/file', 'hidden by an opaque whiteout'),
      { path: 'usr', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      { path: 'lib', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'usr/lib' },
      { path: 'lib64', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'usr/lib64' },
    ]);
    const top = await tarLayer([
      { path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      fileEntry('etc/.wh.gone', ''),
      { path: 'opt', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      { path: 'opt/old', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      fileEntry('opt/old/.wh..wh..opq', ''),
      fileEntry('opt/old/new', 'fresh'),
    ]);
    const image = imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [bottom, top] });
    const cache = new RootfsCache(path.join(dir, 'c4'));
    const rootfs = await cache.ensureImage(image, async (tar, dest) => {
      await extract(tar, dest, { whiteouts: true, special: 'skip' });
    });
    assert.equal(rootfs, cache.pathFor(await image.digest()));
    assert.equal(await readFile(path.join(rootfs, 'etc/os-release'), 'utf8'), 'ID=kiln-test\n');
    assert.deepEqual(await readdir(path.join(rootfs, 'opt/old')), ['new']);
    await assert.rejects(lstat(path.join(rootfs, 'etc/gone')));

    const hostUid = process.getuid?.() ?? 0;
    if (hostUid !== 0) return t.skip('sandbox part needs root');
    const out: string[] = [];
    const r = await new BubblewrapExecutor({ hostUid }).run({
      argv: ['/usr/bin/cat', '/etc/os-release'],
      env: {},
      cwd: '/',
      uid: 1000,
      gid: 1000,
      rootfs,
      mounts: [{ src: '/usr', dst: '/usr', readonly: true }],
      network: 'none',
      stdout: (l) => out.push(l),
    });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(out, ['ID=kiln-test']);
  });
});

describe('addMountPoint', () => {
  test('makes only the missing parts (0755 dirs, a 0644 file); links and files on the way are refused', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-mountpoint-'));
    try {
      await mkdir(path.join(root, 'srv'), { mode: 0o700 });
      await writeFile(path.join(root, 'file'), 'x');
      await symlink('/etc', path.join(root, 'linked'));
      await addMountPoint(root, '/srv/app/deep', 'dir');
      assert.equal(
        (await lstat(path.join(root, 'srv'))).mode & 0o777,
        0o700,
        'an existing dir is left as it is',
      );
      for (const d of ['srv/app', 'srv/app/deep'])
        assert.equal((await lstat(path.join(root, d))).mode & 0o7777, 0o755, d);
      await addMountPoint(root, '/srv/app/deep', 'dir'); // again: nothing to do
      await addMountPoint(root, '/data/one.txt', 'file');
      const f = await lstat(path.join(root, 'data', 'one.txt'));
      assert.ok(f.isFile() && f.size === 0 && (f.mode & 0o7777) === 0o644);
      await addMountPoint(root, '/file', 'file'); // an existing file is a file mount point
      await assert.rejects(addMountPoint(root, '/linked/x', 'dir'), /symbolic link at \/linked/);
      await assert.rejects(addMountPoint(root, '/file/x', 'dir'), /\/file is not a directory/);
      await assert.rejects(addMountPoint(root, '/file', 'dir'), /\/file is not a directory/);
      await assert.rejects(addMountPoint(root, '/', 'dir'), /expected an absolute, normalised path/);
      await assert.rejects(addMountPoint(root, '/srv/../x', 'dir'), /expected an absolute, normalised path/);
      assert.deepEqual(await readdir(path.join(root, 'linked')).then((e) => e.includes('x')), false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
