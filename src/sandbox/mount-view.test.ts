// Nothing of the host's layout is visible inside a real sandbox: /proc/self/mountinfo shows
// overlay roots (no rootfs cache path, no temp dir, no worktree, no /root), /proc/1/cmdline is
// bwrap's argv without its options, /proc lists only the sandbox's own processes, and writes to a
// writable mount still land in the real host directory, owned by the build user.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { runChild } from './_child.ts';
import { BubblewrapExecutor } from './bubblewrap.ts';
import { settleCgroups } from './cgroup.ts';
import type { Mount, RunResult, RunSpec } from './executor.ts';
import { DEFAULT_HELPER, neutralView } from './mount-view.ts';
import { RootfsCache } from './rootfs-cache.ts';

const temp = tempDirs('kiln-view-');
const asRoot = process.getuid?.() === 0;

// Prints everything a buildpack could learn about mounts and processes, NUL-free.
const PROBE = [
  'echo "== mountinfo"; cat /proc/self/mountinfo',
  'echo "== cmdline"; for f in /proc/[0-9]*/cmdline; do echo "$f: $(tr "\\0" " " < $f)"; done',
  'echo "== pids"; ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "; echo',
  'echo "== environ"; for f in /proc/[0-9]*/environ; do tr "\\0" "\\n" < $f; done',
  'echo written > /layers/out.txt && mkdir -p /workspace/d/e && mv /workspace/d /workspace/moved',
].join('\n');

async function setup() {
  const base = await temp();
  await chmod(base, 0o755);
  const cache = new RootfsCache(path.join(base, 'rootfs-cache'));
  const rootfs = await cache.ensure(`sha256:${'9'.repeat(64)}`, async (dest) => {
    for (const d of ['usr', 'etc', 'cnb/buildpacks/bp']) await mkdir(path.join(dest, d), { recursive: true });
    for (const [n, t] of [
      ['bin', 'usr/bin'],
      ['lib', 'usr/lib'],
      ['lib64', 'usr/lib64'],
    ] as const)
      await symlink(t, path.join(dest, n));
  });
  const work = path.join(base, `kiln-build-${process.pid}`);
  const mounts: Mount[] = [
    { src: '/usr', dst: '/usr', readonly: true },
    { src: '/etc', dst: '/etc', readonly: true },
    { src: path.join(rootfs, 'cnb/buildpacks'), dst: '/cnb/buildpacks', readonly: true },
  ];
  for (const d of ['workspace', 'layers', 'platform']) {
    await mkdir(path.join(work, d), { recursive: true });
    await chown(path.join(work, d), 1000, 1000);
    mounts.push({ src: path.join(work, d), dst: `/${d}`, readonly: d === 'platform' });
  }
  await chmod(work, 0o755);
  return { base, rootfs, cacheDir: cache.dir, work, mounts };
}

async function probe(
  spec: Omit<RunSpec, 'argv' | 'env' | 'cwd' | 'uid' | 'gid' | 'network'>,
  helper?: null,
  /** How many runs like this one to announce (Executor.prepare) before it starts, as a build does. */
  announce = 0,
) {
  const out: string[] = [];
  const full: RunSpec = {
    ...spec,
    argv: ['/usr/bin/sh', '-c', PROBE, 'probe'],
    env: { PATH: '/usr/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    network: 'none',
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(l),
  };
  let r: RunResult;
  if (helper === null) {
    // The shell fallback (no compiled helper), driven the way BubblewrapExecutor.run drives it
    // (without the seccomp filter and kiln-init, whose fds run() would open: seccomp.test.ts and
    // test/sandbox/pid1.test.ts cover them).
    const cmd = new BubblewrapExecutor({ hostUid: 0, seccomp: false, init: false }).commandFor(full);
    const view = await neutralView(cmd, { bwrap: 'bwrap', owner: { uid: 1000, gid: 1000 }, helper: null });
    assert.equal(view.cmd.file, 'prlimit');
    assert.ok(view.cmd.args.includes('unshare'));
    try {
      r = await runChild(view.cmd, full);
    } finally {
      await view.cleanup();
    }
  } else {
    const bw = new BubblewrapExecutor({ hostUid: 0 });
    for (let i = 0; i < announce; i++) await bw.prepare(full);
    r = await bw.run(full);
  }
  assert.equal(r.exitCode, 0, out.join('\n'));
  const text = out.join('\n');
  const section = (name: string) => text.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
  return { text, mountinfo: section('mountinfo'), cmdline: section('cmdline'), pids: section('pids') };
}

/** Undoes PROBE's writes, so that it can run again over the same directories. */
async function rmWritten(work: string): Promise<void> {
  await rm(path.join(work, 'layers/out.txt'));
  await rm(path.join(work, 'workspace/moved'), { recursive: true });
}

describe('the sandbox shows no host paths', () => {
  for (const [name, helper] of [
    ['compiled helper', undefined],
    ['shell fallback', null],
  ] as const)
    test(`mountinfo, /proc/*/cmdline and environ name no host directory; /proc has only the sandbox (${name})`, async (t) => {
      if (!asRoot) return t.skip('needs root (bwrap is started as the build uid)');
      if (helper === undefined && !existsSync(DEFAULT_HELPER)) return t.skip('dist/mountview not built');
      const s = await setup();
      const seen = await probe({ rootfs: s.rootfs, mounts: s.mounts }, helper);
      const hostPaths = [s.base, s.cacheDir, s.rootfs, s.work, process.cwd(), homedir(), '/root', '/tmp/'];
      for (const p of hostPaths) {
        assert.ok(!seen.text.includes(p), `host path ${p} visible in the sandbox:\n${seen.text}`);
      }
      // Every bind source became the root of its own overlay (or a path inside the rootfs).
      for (const l of seen.mountinfo.split('\n').filter((x) => / - overlay /.test(x))) {
        const root = l.split(' ')[3]!;
        assert.ok(root === '/' || root === '/cnb/buildpacks', l);
        assert.match(l.split(' - ')[0]!, /nosuid/, `mounted without nosuid: ${l}`);
      }
      assert.ok((seen.mountinfo.match(/ - overlay /g) ?? []).length >= 6, seen.mountinfo);
      // pid 1 is kiln-init (from the sandbox's /dev), or bwrap with its options read from a pipe
      // where run() is bypassed; the rest are the probe's own processes.
      assert.match(
        seen.cmdline,
        helper === null
          ? /^\/proc\/1\/cmdline: bwrap --args \d+ -- \/usr\/bin\/sh -c /m
          : /^\/proc\/1\/cmdline: \/dev\/\.kiln-init \/usr\/bin\/sh -c /m,
      );
      const pids = seen.pids.trim().split(' ').map(Number);
      assert.ok(pids.length <= 6 && Math.max(...pids) < 100, `host processes visible: ${seen.pids}`);

      // Writes went to the real directories, as the build user; the overlay work dirs are gone
      // once the background removals are settled (they are not on the run's path).
      assert.equal(await readFile(path.join(s.work, 'layers/out.txt'), 'utf8'), 'written\n');
      assert.equal((await lstat(path.join(s.work, 'layers/out.txt'))).uid, 1000);
      assert.ok((await lstat(path.join(s.work, 'workspace/moved/e'))).isDirectory());
      await settleCgroups();
      assert.deepEqual((await readdir(s.work)).sort(), ['layers', 'platform', 'workspace']);
    });

  test('a run announced by prepare reuses the overlay work dirs of the run before it; nothing else keeps any', async (t) => {
    if (!asRoot) return t.skip('needs root (bwrap is started as the build uid)');
    if (!existsSync(DEFAULT_HELPER)) return t.skip('dist/mountview not built');
    const s = await setup();
    const workDirs = async () => (await readdir(s.work)).filter((n) => n.startsWith('.kiln-ovl-')).sort();
    let first: string[] | undefined;
    for (let i = 0; i < 3; i++) {
      // As a build: run 0 was announced before it (after restore), and runs 0 and 1 each announce
      // the one after them as they start; run 2 is the last.
      const seen = await probe(
        { rootfs: s.rootfs, mounts: s.mounts },
        undefined,
        (i === 0 ? 1 : 0) + (i < 2 ? 1 : 0),
      );
      for (const p of [s.base, s.work, '/tmp/'])
        assert.ok(!seen.text.includes(p), `run ${i}: host path ${p} visible:\n${seen.text}`);
      // The writable mounts are overlays in every run (a work dir overlayfs refused would leave a
      // plain bind, whose root names the host path: caught above).
      assert.ok((seen.mountinfo.match(/ - overlay .* rw,/g) ?? []).length >= 2, seen.mountinfo);
      assert.equal(await readFile(path.join(s.work, 'layers/out.txt'), 'utf8'), 'written\n');
      await rmWritten(s.work);
      if (i < 2) {
        // Kept for the announced run: one per writable source, the same ones run after run.
        const now = await workDirs();
        assert.equal(now.length, 2, `work dirs: ${now}`);
        first ??= now;
        assert.deepEqual(now, first, `run ${i} made new work dirs`);
      }
    }
    // The last run's work dirs were not kept: once the removals under way are done, none is left.
    await settleCgroups();
    assert.deepEqual(await workDirs(), []);
    // And a run nobody announced keeps none either (the same as before work dirs were reused).
    await probe({ rootfs: s.rootfs, mounts: s.mounts });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await workDirs(), []);
  });

  test('without the neutral view the same probe does see host paths (the test can fail)', async (t) => {
    if (!asRoot) return t.skip('needs root (bwrap is started as the build uid)');
    const s = await setup();
    const out: string[] = [];
    await new BubblewrapExecutor({ hostUid: 0, neutralView: false }).run({
      argv: ['/usr/bin/cat', '/proc/self/mountinfo', '/proc/1/cmdline'],
      env: {},
      cwd: '/',
      uid: 1000,
      gid: 1000,
      rootfs: s.rootfs,
      mounts: s.mounts,
      network: 'none',
      stdout: (l) => out.push(l),
    });
    assert.ok(out.join('\n').includes(s.cacheDir));
  });
});
