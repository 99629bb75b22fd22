// A hostile builder ships a setuid-root shell, a setgid binary, a hard link to the setuid file,
// device nodes, a fifo, world-writable directories and files owned by a host account. After kiln
// unpacks it into the (world-searchable) rootfs cache, none of that may grant anything on the
// host: no setuid/setgid bit, no device node, nothing writable by group or others, nothing owned
// by another host user. The layer is a real GNU tar of a real tree (mknod, chmod u+s).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { unpackRootfs } from '../cli/commands/run.ts';
import { extract } from '../layers/extract.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer, imageFrom } from '../oci/memory.ts';
import { unpackBuilder } from '../platform/builder-facts.ts';
import { BubblewrapExecutor } from './bubblewrap.ts';
import { makeInert, RootfsCache } from './rootfs-cache.ts';

const temp = tempDirs('kiln-inert-');
const asRoot = process.getuid?.() === 0;

/** Builds the hostile tree and returns it as a GNU tar (numeric owners kept). */
async function hostileLayer(): Promise<Buffer> {
  const src = path.join(await temp(), 'tree');
  await mkdir(path.join(src, 'opt/bin'), { recursive: true });
  await writeFile(path.join(src, 'opt/bin/rootshell'), '#!/bin/sh\nexec /bin/sh -p\n');
  await chmod(path.join(src, 'opt/bin/rootshell'), 0o4755);
  await writeFile(path.join(src, 'opt/bin/mailer'), 'x');
  await chmod(path.join(src, 'opt/bin/mailer'), 0o2755);
  await link(path.join(src, 'opt/bin/rootshell'), path.join(src, 'opt/bin/hardlinked'));
  await mkdir(path.join(src, 'var/tmp'), { recursive: true });
  await chmod(path.join(src, 'var/tmp'), 0o1777);
  await mkdir(path.join(src, 'srv/drop'), { recursive: true });
  await chmod(path.join(src, 'srv/drop'), 0o777);
  await writeFile(path.join(src, 'srv/open.txt'), 'anyone may write me');
  await chmod(path.join(src, 'srv/open.txt'), 0o666);
  await mkdir(path.join(src, 'home/cnb'), { recursive: true });
  await writeFile(path.join(src, 'home/cnb/secret'), 'for the image user only\n');
  await chmod(path.join(src, 'home/cnb/secret'), 0o600);
  await chmod(path.join(src, 'home/cnb'), 0o700);
  await mkdir(path.join(src, 'dev'));
  await mkdir(path.join(src, 'usr'));
  await mkdir(path.join(src, 'etc'));
  await writeFile(path.join(src, 'etc/os-release'), 'ID=hostile\n');
  for (const [name, target] of [
    ['bin', 'usr/bin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
  ] as const)
    await symlink(target, path.join(src, name));
  if (asRoot) {
    await chown(path.join(src, 'home/cnb'), 1000, 1000);
    await chown(path.join(src, 'home/cnb/secret'), 1000, 1000);
    // mknod needs CAP_MKNOD: a char device like /dev/mem's (1,1), a block device, a fifo.
    for (const args of [
      ['dev/mem', 'c', '1', '1'],
      ['dev/sda', 'b', '8', '0'],
      ['dev/pipe', 'p'],
    ]) {
      const r = spawnSync('mknod', [path.join(src, args[0]!), ...args.slice(1)]);
      assert.equal(r.status, 0, `mknod ${args.join(' ')}: ${r.stderr}`);
    }
  }
  const tar = spawnSync('tar', ['--numeric-owner', '-C', src, '-cf', '-', '.'], {
    maxBuffer: 1 << 26,
  });
  assert.equal(tar.status, 0, String(tar.stderr));
  return tar.stdout;
}

/** Every entry under `root` with its lstat, symlinks not followed. */
async function walk(root: string): Promise<{ rel: string; mode: number; uid: number; kind: string }[]> {
  const out: { rel: string; mode: number; uid: number; kind: string }[] = [];
  const visit = async (dir: string) => {
    for (const name of await readdir(dir)) {
      const p = path.join(dir, name);
      const st = await lstat(p);
      const kind = st.isDirectory()
        ? 'dir'
        : st.isFile()
          ? 'file'
          : st.isSymbolicLink()
            ? 'symlink'
            : st.isCharacterDevice()
              ? 'char'
              : st.isBlockDevice()
                ? 'block'
                : st.isFIFO()
                  ? 'fifo'
                  : 'socket';
      out.push({ rel: path.relative(root, p), mode: st.mode & 0o7777, uid: st.uid, kind });
      if (kind === 'dir') await visit(p);
    }
  };
  await visit(root);
  return out;
}

/** The host-side guarantees of an inert tree. */
async function assertInert(root: string): Promise<void> {
  const all = await walk(root);
  assert.ok(all.length > 10, 'the tree was unpacked');
  for (const e of all) {
    assert.ok(['dir', 'file', 'symlink'].includes(e.kind), `${e.rel}: ${e.kind} left on the host`);
    if (e.kind === 'symlink') continue;
    assert.equal(e.mode & 0o6000, 0, `${e.rel}: setuid/setgid bit left (${e.mode.toString(8)})`);
    assert.equal(e.mode & 0o022, 0, `${e.rel}: writable by group or others (${e.mode.toString(8)})`);
    if (asRoot) assert.equal(e.uid, 0, `${e.rel}: owned by host uid ${e.uid}`);
  }
  // Everything is still there for the image's own users to read and run.
  assert.equal((await lstat(path.join(root, 'opt/bin/rootshell'))).mode & 0o7777, 0o755);
  assert.equal((await lstat(path.join(root, 'opt/bin/hardlinked'))).mode & 0o7777, 0o755);
  assert.equal((await lstat(path.join(root, 'var/tmp'))).mode & 0o7777, 0o1755);
  if (asRoot) {
    assert.equal((await lstat(path.join(root, 'home/cnb/secret'))).mode & 0o7777, 0o644);
    assert.equal((await lstat(path.join(root, 'home/cnb'))).mode & 0o7777, 0o755);
  }
}

async function hostileImage() {
  const tar = await hostileLayer();
  const layer = await bytesLayer({ blob: tar, tar, mediaType: MediaType.OciLayer });
  return imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [layer] });
}

describe('rootfs caches are inert', () => {
  test('a builder with setuid files and device nodes: unpackBuilder leaves none on the host', async () => {
    const cacheDir = path.join(await temp(), 'rootfs');
    const root = await unpackBuilder(await hostileImage(), cacheDir);
    await assertInert(root);
    assert.equal(await readFile(path.join(root, 'etc/os-release'), 'utf8'), 'ID=hostile\n');
  });

  test('kiln run unpacks a run image the same way (owners not kept, no setuid bits)', async () => {
    const cache = new RootfsCache(path.join(await temp(), 'rootfs'));
    await assertInert(await unpackRootfs(cache, await hostileImage()));
  });

  test('whatever an unpacker does, the published tree is made inert', async () => {
    const cache = new RootfsCache(path.join(await temp(), 'rootfs'));
    const tar = await hostileLayer();
    // An unpacker that keeps everything (owners, modes): the cache's own pass must still fix it.
    const root = await cache.ensure(`sha256:${'7'.repeat(64)}`, async (dest) => {
      await extract(
        (async function* () {
          yield tar;
        })() as unknown as import('node:stream').Readable,
        dest,
        { whiteouts: true, owners: asRoot, special: 'skip' },
      );
      if (asRoot) spawnSync('mknod', [path.join(dest, 'dev/kmsg'), 'c', '1', '11']);
      spawnSync('mkfifo', [path.join(dest, 'dev/fifo')]);
    });
    await assertInert(root);
  });

  test('an entry an older kiln left (setuid bits kept, no stamp) is replaced, not used', async () => {
    const cache = new RootfsCache(path.join(await temp(), 'rootfs'));
    const digest = `sha256:${'8'.repeat(64)}`;
    const legacy = cache.pathFor(digest);
    await mkdir(path.join(legacy, 'opt'), { recursive: true });
    await writeFile(path.join(legacy, 'opt/rootshell'), 'x');
    await chmod(path.join(legacy, 'opt/rootshell'), 0o4755);
    let unpacked = 0;
    const root = await cache.ensure(digest, async (dest) => {
      unpacked++;
      await writeFile(path.join(dest, 'fresh'), 'y');
    });
    assert.equal(unpacked, 1);
    assert.equal(root, legacy);
    assert.deepEqual(
      (await readdir(root)).filter((n) => n === 'opt' || n === 'fresh'),
      ['fresh'],
    );
  });

  test('makeInert removes what extract would never make (sockets too) and reports the size', async () => {
    const dir = await temp();
    await writeFile(path.join(dir, 'a'), Buffer.alloc(100));
    await link(path.join(dir, 'a'), path.join(dir, 'b'));
    await writeFile(path.join(dir, 'c'), Buffer.alloc(50));
    await chmod(path.join(dir, 'c'), 0o6777);
    const sock = spawnSync('python3', [
      '-c',
      `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path.join(dir, 's'))})`,
    ]);
    const r = makeInert(dir);
    assert.equal(r.bytes, 150, 'a hard-linked file counts once');
    if (sock.status === 0) assert.deepEqual(r.removed, ['s']);
    assert.equal((await lstat(path.join(dir, 'c'))).mode & 0o7777, 0o755);
  });

  test('the image user still reads its own files in the sandbox; setuid gives nothing there either', async (t) => {
    if (!asRoot) return t.skip('needs root (bwrap is started as the build uid)');
    const cacheDir = path.join(await temp(), 'rootfs');
    await chmod(path.dirname(cacheDir), 0o755);
    const root = await unpackBuilder(await hostileImage(), cacheDir);
    const out: string[] = [];
    const r = await new BubblewrapExecutor({ hostUid: 0 }).run({
      argv: [
        '/usr/bin/sh',
        '-c',
        'cat /home/cnb/secret; ls /dev/mem 2>&1 || true; grep NoNewPrivs /proc/self/status',
      ],
      env: { PATH: '/usr/bin' },
      cwd: '/',
      uid: 1000,
      gid: 1000,
      rootfs: root,
      mounts: [{ src: '/usr', dst: '/usr', readonly: true }],
      network: 'none',
      stdout: (l) => out.push(l),
      stderr: (l) => out.push(l),
    });
    assert.equal(r.exitCode, 0, out.join('\n'));
    assert.equal(out[0], 'for the image user only');
    // /dev is bwrap's own (null, zero, …): the builder's /dev/mem never reaches the sandbox.
    assert.match(out[1] ?? '', /No such file/);
    assert.match(out[2] ?? '', /NoNewPrivs:\s+1/);
  });
});
