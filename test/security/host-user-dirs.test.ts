// Another host user (uid 1000) against kiln's own directories: the build cache (whose warm
// directories kiln renames into builds, trusted by fingerprint), the rootfs cache, the image
// store, the id leases under /run/kiln and the kiln config. kiln (root) makes each of them owned
// by itself and writable by nobody else, and refuses in one line, as ssh does for ~/.ssh, an
// existing one that another user owns or may write, that is a link, or that sits below a
// directory another user can change. Real directories, real owners (chown), real kiln classes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config-file.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { ensureOwnedDir } from '../../src/internal/owned-dir.ts';
import { VolumeCache } from '../../src/lifecycle/cache.ts';
import { leaseHostIds } from '../../src/sandbox/identity.ts';
import { RootfsCache } from '../../src/sandbox/rootfs-cache.ts';
import { ImageStore } from '../../src/store/store.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;
const OTHER = 1000;

/** The one-line refusal, naming the directory. */
function refusal(dir: string, why: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof KilnError, String(e));
    assert.doesNotMatch(e.message, /\n/);
    assert.ok(e.message.includes(dir), e.message);
    assert.match(e.message, why);
    assert.match(e.message, /kiln refuses to use it/);
    return true;
  };
}

describe("kiln's directories against another host user", { skip: !asRoot && 'needs root' }, () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'kiln-host-dirs-'));
    await chmod(tmp, 0o755);
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });
  let n = 0;
  const fresh = async () => {
    const d = path.join(tmp, `t${n++}`);
    await mkdir(d, { mode: 0o755 });
    return d;
  };

  test('a new build cache (and missing parents) is made, 0700 and owned by kiln', async () => {
    const dir = path.join(await fresh(), 'deep', 'cache');
    const cache = new VolumeCache(dir);
    const snap = await cache.snapshot();
    await snap.close();
    const st = await lstat(dir);
    assert.equal(st.mode & 0o7777, 0o700);
    assert.equal(st.uid, process.geteuid?.());
  });

  test('a build cache owned by another user is refused (no warm directory of theirs is used)', async () => {
    const dir = path.join(await fresh(), 'cache');
    await mkdir(path.join(dir, 'warm'), { recursive: true });
    await chown(dir, OTHER, OTHER);
    await assert.rejects(
      new VolumeCache(dir).snapshot(),
      refusal(dir, /is owned by uid 1000, not by kiln's uid 0/),
    );
  });

  test('a build cache writable by others is refused; one readable by others is tightened to 0700', async () => {
    const dir = path.join(await fresh(), 'cache');
    await mkdir(dir);
    await chmod(dir, 0o777);
    await assert.rejects(
      new VolumeCache(dir).snapshot(),
      refusal(dir, /writable by group or others \(mode 0777\)/),
    );
    await chmod(dir, 0o775);
    await assert.rejects(new VolumeCache(dir).snapshot(), refusal(dir, /writable by group or others/));
    await chmod(dir, 0o755); // what older kilns made
    await (await new VolumeCache(dir).snapshot()).close();
    assert.equal((await lstat(dir)).mode & 0o7777, 0o700);
  });

  test('a build cache that is a link, or below a directory another user can change, is refused', async () => {
    const base = await fresh();
    const real = path.join(base, 'real');
    await mkdir(real, { mode: 0o700 });
    await symlink(real, path.join(base, 'link'));
    await assert.rejects(
      new VolumeCache(path.join(base, 'link')).snapshot(),
      refusal(path.join(base, 'link'), /is a symbolic link/),
    );
    // uid 1000 owns a directory above: it could rename the cache away and put its own in place.
    const theirs = path.join(base, 'theirs');
    await mkdir(theirs);
    await chown(theirs, OTHER, OTHER);
    await assert.rejects(
      new VolumeCache(path.join(theirs, 'cache')).snapshot(),
      refusal(path.join(theirs, 'cache'), /above it is owned by uid 1000/),
    );
    // A world-writable directory above, without the sticky bit.
    const open = path.join(base, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    await assert.rejects(
      new VolumeCache(path.join(open, 'cache')).snapshot(),
      refusal(path.join(open, 'cache'), /above it is writable by group or others \(mode 0777\)/),
    );
    // With the sticky bit (as /tmp): nobody else can rename kiln's entries; accepted.
    await chmod(open, 0o1777);
    await (await new VolumeCache(path.join(open, 'cache')).snapshot()).close();
  });

  test('uid 1000 cannot plant a warm directory: the attack end to end', async () => {
    // As an older kiln left it: a cache dir the other user could write (0777), with their
    // warm directory and its stamp already in it.
    const dir = path.join(await fresh(), 'cache');
    await mkdir(dir);
    await chmod(dir, 0o777);
    execFileSync('setpriv', [
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      'mkdir',
      '-p',
      path.join(dir, 'warm', 'aa'),
    ]);
    await assert.rejects(new VolumeCache(dir).snapshot(), refusal(dir, /writable by group or others/));
  });

  test('the rootfs cache: made 0755 and kiln-owned; another owner or group write refused', async () => {
    const base = await fresh();
    const made = path.join(base, 'rootfs');
    const cache = new RootfsCache(made);
    await assert.rejects(
      cache.ensure(`sha256:${'a'.repeat(64)}`, async () => {
        throw new Error('stop after the directory checks');
      }),
      /stop after the directory checks/,
    );
    const st = await lstat(made);
    assert.equal(st.mode & 0o7777, 0o755);
    assert.equal(st.uid, 0);
    const theirs = path.join(base, 'theirs');
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, OTHER, OTHER);
    await assert.rejects(
      new RootfsCache(theirs).ensure(`sha256:${'b'.repeat(64)}`, async () => {}),
      refusal(theirs, /is owned by uid 1000/),
    );
    const group = path.join(base, 'group');
    await mkdir(group);
    await chmod(group, 0o775);
    await assert.rejects(
      new RootfsCache(group).ensure(`sha256:${'c'.repeat(64)}`, async () => {}),
      refusal(group, /writable by group or others \(mode 0775\)/),
    );
  });

  test('the image store and the id lease directory are checked the same way', async () => {
    const base = await fresh();
    const store = path.join(base, 'images');
    await mkdir(store);
    await chown(store, OTHER, OTHER);
    await assert.rejects(ImageStore.open(store), refusal(store, /is owned by uid 1000/));
    // /run/kiln/id-leases, here under a parent another user owns.
    const run = path.join(base, 'run-kiln');
    await mkdir(run, { mode: 0o755 });
    await chown(run, OTHER, OTHER);
    await assert.rejects(
      leaseHostIds({
        range: { uidStart: 0x7f000000, gidStart: 0x7f000000, count: 16, source: 'test' },
        files: { leaseDir: path.join(run, 'id-leases') },
      }),
      refusal(path.join(run, 'id-leases'), /above it is owned by uid 1000/),
    );
    const ok = ensureOwnedDir(path.join(base, 'leases'), { what: "kiln's id leases" });
    assert.equal((await lstat(ok)).mode & 0o7777, 0o700);
  });

  test('a kiln config another user owns or may write is refused', async () => {
    const base = await fresh();
    const file = path.join(base, 'config.toml');
    await writeFile(file, 'default-builder = "theirs"\n');
    await chown(file, OTHER, OTHER);
    await assert.rejects(
      loadConfig(file),
      refusal(file, /is owned by uid 1000, not by root or kiln's uid 0/),
    );
    await chown(file, 0, 0);
    await chmod(file, 0o666);
    await assert.rejects(loadConfig(file), refusal(file, /writable by group or others \(mode 0666\)/));
    await chmod(file, 0o644);
    assert.equal((await loadConfig(file)).defaultBuilder, 'theirs');
    // Missing: the empty configuration, as before.
    assert.equal((await loadConfig(path.join(base, 'none.toml'))).defaultBuilder, undefined);
  });
});
