import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RunSpec } from './executor.ts';
import { HostExecutor } from './host.ts';

const hostUid = process.getuid?.() ?? 0;
const exec = new HostExecutor({ hostUid });

describe('HostExecutor', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-host-'));
    await chmod(dir, 0o755);
    if (hostUid === 0) await chown(dir, 1000, 1000);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const uid = hostUid === 0 ? 1000 : hostUid;
  const spec = (argv: string[], over: Partial<RunSpec> = {}): RunSpec => ({
    argv,
    env: { PATH: '/usr/bin:/bin' },
    cwd: dir,
    uid,
    gid: uid,
    rootfs: '/',
    mounts: [{ src: dir, dst: dir, readonly: false }],
    network: 'host',
    ...over,
  });

  test('run() passes exactly the given environment (plus PWD) and drops to the uid', async () => {
    process.env.KILN_HOST_LEAK = 'leak';
    try {
      const out: string[] = [];
      const r = await exec.run(
        spec(['/bin/sh', '-c', 'env | sort; id -u; id -G; touch owned'], { stdout: (l) => out.push(l) }),
      );
      assert.equal(r.exitCode, 0);
      assert.deepEqual(out, ['PATH=/usr/bin:/bin', `PWD=${dir}`, String(uid), String(uid)]);
      assert.equal((await stat(path.join(dir, 'owned'))).uid, uid);
    } finally {
      delete process.env.KILN_HOST_LEAK;
    }
  });

  test('limits are applied with prlimit', async () => {
    const out: string[] = [];
    await exec.run(
      spec(['/bin/bash', '-c', 'ulimit -u; ulimit -n'], {
        limits: { processes: 321, openFiles: 123 },
        stdout: (l) => out.push(l),
      }),
    );
    assert.deepEqual(out, ['321', '123']);
  });

  test('refuses what it cannot enforce, each with a clear error', async () => {
    await assert.rejects(
      exec.run(spec(['/bin/true'], { network: 'none' })),
      /network "none" cannot be enforced without a sandbox/,
    );
    await assert.rejects(
      exec.run(spec(['/bin/true'], { mounts: [{ src: dir, dst: '/workspace', readonly: false }] })),
      /\/workspace must be the directory itself, not a mount of/,
    );
    await assert.rejects(exec.run(spec(['/bin/true'], { rootfs: dir })), /rootfs must be "\/"/);
    await assert.rejects(
      exec.run(spec(['/bin/true'], { uid: 0, gid: 0 })),
      /refusing to run \/bin\/true as uid 0/,
    );
  });

  test('timeoutMs stops the process group', async () => {
    const r = await exec.run(
      spec(['/bin/sh', '-c', 'sleep 30 & sleep 30'], { timeoutMs: 200, graceMs: 300 }),
    );
    assert.ok(r.timedOut);
    assert.notEqual(r.exitCode, 0);
  });
});
