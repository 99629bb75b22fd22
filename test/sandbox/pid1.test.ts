// The sandbox's pid 1 cannot be rewritten by the buildpack: bwrap's own init ran as the build uid
// and was dumpable, so /proc/1/mem opened for writing (seccomp cannot tell that open apart).
// kiln-init (src/sandbox/init/init.c) is pid 1 instead and non-dumpable. Real bubblewrap sandboxes
// on a leased host id; each refusal is paired with a control under bwrap's own init that succeeds.
// Also: what bwrap's init did still works (exit status, death by signal, reaping orphans,
// forwarding signals, exec errors), and no host path shows in /proc/1/cmdline or mountinfo.

import assert from 'node:assert/strict';
import { chmod, chown, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { KilnError } from '../../src/internal/errors.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { Mount, RunSpec } from '../../src/sandbox/executor.ts';
import { RootfsCache } from '../../src/sandbox/rootfs-cache.ts';
import { DEFAULT_INIT } from '../../src/sandbox/sandbox-init.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const temp = tempDirs('kiln-pid1-');
const asRoot = process.getuid?.() === 0;

async function setup(): Promise<{ rootfs: string; mounts: Mount[]; base: string }> {
  const base = await temp();
  await chmod(base, 0o755);
  const rootfs = await new RootfsCache(path.join(base, 'rootfs')).ensure(
    `sha256:${'5'.repeat(64)}`,
    async (d) => {
      for (const dir of ['usr', 'etc']) await mkdir(path.join(d, dir));
      for (const [n, t] of [
        ['bin', 'usr/bin'],
        ['lib', 'usr/lib'],
        ['lib64', 'usr/lib64'],
      ] as const)
        await symlink(t, path.join(d, n));
    },
  );
  const ws = path.join(base, 'workspace');
  await mkdir(ws);
  await chown(ws, 1000, 1000);
  return {
    base,
    rootfs,
    mounts: [
      { src: '/usr', dst: '/usr', readonly: true },
      { src: '/etc', dst: '/etc', readonly: true },
      { src: ws, dst: '/workspace', readonly: false },
    ],
  };
}

async function run(
  script: string,
  opts: { init?: false | string } = {},
): Promise<{ code: number; out: string[] }> {
  const s = await setup();
  const out: string[] = [];
  const spec: RunSpec = {
    rootfs: s.rootfs,
    mounts: s.mounts,
    argv: ['/usr/bin/bash', '-c', script],
    env: { PATH: '/usr/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    network: 'none',
    hostIds: { uid: 0x7f0000f0, gid: 0x7f0000f0 },
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(`E ${l}`),
  };
  const ex = new BubblewrapExecutor({ hostUid: 0, ...(opts.init !== undefined ? { init: opts.init } : {}) });
  const r = await ex.run(spec);
  return { code: r.exitCode, out };
}

// Opens /proc/1/mem read-write (bash's <> redirection) and reports what happened.
const OPEN_MEM = 'if { exec 3<>/proc/1/mem; } 2>/dev/null; then echo MEM-OPENED; else echo mem-refused; fi';

describe('sandbox pid 1', { skip: !asRoot && 'needs root (leased host ids)' }, () => {
  test('the buildpack cannot open /proc/1/mem; under bwrap’s own init it could (control)', async () => {
    const ours = await run(`${OPEN_MEM}; grep -E '^(Name|Uid):' /proc/1/status`);
    assert.equal(ours.code, 0, ours.out.join('\n'));
    assert.ok(ours.out.includes('mem-refused'), ours.out.join('\n'));
    assert.ok(
      ours.out.some((l) => /^Name:\s+\.kiln-init$/.test(l)),
      ours.out.join('\n'),
    );
    // Same uid as the buildpack: only the dumpable flag stands in the way.
    assert.ok(
      ours.out.some((l) => /^Uid:\s+1000\s/.test(l)),
      ours.out.join('\n'),
    );
    const control = await run(OPEN_MEM, { init: false });
    assert.ok(control.out.includes('MEM-OPENED'), control.out.join('\n'));
  });

  test('/proc/1/cmdline and mountinfo name no host path for the init', async () => {
    const r = await run('tr "\\0" " " < /proc/1/cmdline; echo; cat /proc/self/mountinfo');
    assert.equal(r.code, 0, r.out.join('\n'));
    assert.match(r.out[0] ?? '', /^\/dev\/\.kiln-init \/usr\/bin\/bash -c /);
    const all = r.out.join('\n');
    assert.ok(!all.includes(path.dirname(DEFAULT_INIT)), all);
    assert.ok(!all.includes('/work/'), all);
  });

  test('exit status and death by signal come through as bwrap reported them', async () => {
    assert.equal((await run('exit 7')).code, 7);
    assert.equal((await run('kill -TERM $$')).code, 143);
    assert.equal((await run('kill -KILL $$')).code, 137);
  });

  test('signals to pid 1 reach the command; orphans are reaped', async () => {
    // From inside: a TERM to pid 1 is forwarded to the command, whose trap reports it.
    const fwd = await run('trap "echo got-TERM; exit 3" TERM; kill -TERM 1; sleep 5 & wait');
    assert.equal(fwd.code, 3, fwd.out.join('\n'));
    assert.ok(fwd.out.includes('got-TERM'));
    // An orphan (its parent exits at once) is reparented to pid 1 and reaped when it ends.
    const orphans = await run(
      '( sleep 0.2 & ) ; sleep 0.6; grep -l "^State:\\s*Z" /proc/[0-9]*/status 2>/dev/null | wc -l',
    );
    assert.equal(orphans.code, 0);
    assert.equal(orphans.out.at(-1)?.trim(), '0', orphans.out.join('\n'));
  });

  test('a missing command and a missing init fail in one line', async () => {
    const s = await setup();
    const spec: RunSpec = {
      rootfs: s.rootfs,
      mounts: [],
      argv: ['/no/such/command'],
      env: { PATH: '/usr/bin' },
      cwd: '/',
      uid: 1000,
      gid: 1000,
      network: 'none',
      hostIds: { uid: 0x7f0000f0, gid: 0x7f0000f0 },
      stdout: () => {},
      stderr: () => {},
    };
    await assert.rejects(
      new BubblewrapExecutor({ hostUid: 0 }).run(spec),
      (e: unknown) =>
        e instanceof KilnError &&
        e.message === 'sandbox could not be set up: execvp /no/such/command: No such file or directory',
    );
    const missing = path.join(s.base, 'no-init');
    await assert.rejects(
      new BubblewrapExecutor({ hostUid: 0, init: missing }).run({ ...spec, argv: ['/usr/bin/true'] }),
      (e: unknown) =>
        e instanceof KilnError &&
        e.message ===
          `sandbox init ${missing} is missing: build it with scripts/build.sh; sandboxes do not start without it`,
    );
  });
});
