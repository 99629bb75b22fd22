// The sandbox's host identity, with real bubblewrap sandboxes and real host processes: a leased id
// of kiln's range, never a real account's, that a host user (uid 1000 here) cannot signal or trace.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { RunResult, RunSpec } from '../../src/sandbox/executor.ts';
import { type IdLease, leaseHostIds } from '../../src/sandbox/identity.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const root = process.getuid?.() === 0;
const exec = new BubblewrapExecutor({ hostUid: 0 });

/** Host pids whose command line contains `marker`. */
async function pidsWith(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(marker) && !cmd.includes('/bin/sh')) out.push(Number(name));
  }
  return out;
}

/** Runs `cmd` on the host as uid:gid 1000 with no groups. */
function asUid1000(cmd: string[]): { status: number | null; stderr: string } {
  const r = spawnSync('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', ...cmd], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe('sandbox host identity', { skip: !root && 'needs root to switch ids' }, () => {
  let fs: HostRootfs;
  let lease: IdLease;
  before(async () => {
    lease = await leaseHostIds();
    fs = await makeHostRootfs(lease.uid, lease.gid);
  });
  after(async () => {
    await fs.cleanup();
    await lease.release();
  });

  const spec = (argv: string[], over: Partial<RunSpec> = {}): RunSpec => ({
    argv,
    env: { PATH: '/usr/bin:/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    rootfs: fs.rootfs,
    mounts: fs.mounts,
    network: 'none',
    ...over,
  });

  /** Starts a long sleep in a sandbox and returns its host pid and a way to stop it. */
  async function sleeper(over: Partial<RunSpec>): Promise<{ pid: number; stop(): Promise<RunResult> }> {
    const marker = `1000.${randomBytes(4).readUInt32BE(0)}`;
    const ac = new AbortController();
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => {
      ready = r;
    });
    const run = exec.run(
      spec(['/bin/sh', '-c', `echo ready; exec sleep ${marker}`], {
        stdout: (l) => l === 'ready' && ready(),
        signal: ac.signal,
        graceMs: 200,
        ...over,
      }),
    );
    // A run that ends before it printed (refused, failed) must fail the test, not hang it.
    await Promise.race([
      started,
      run.then((r) => {
        throw new Error(
          `the sandbox ended before it was ready: exit ${r.exitCode}${r.limit ? ` (${r.limit})` : ''}`,
        );
      }),
    ]);
    let pids: number[] = [];
    for (let i = 0; i < 100 && pids.length === 0; i++) {
      pids = await pidsWith(marker);
      if (pids.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(pids.length, 1, `one sandboxed sleep ${marker}`);
    return {
      pid: pids[0]!,
      stop: () => {
        ac.abort('SIGKILL');
        return run;
      },
    };
  }

  test('the build user runs as a leased host uid that is not 1000 and no account of /etc/passwd', async () => {
    const out: string[] = [];
    const r = await exec.run(
      spec(['/bin/sh', '-c', 'id -u; id -g; echo x > /workspace/f'], {
        hostIds: lease,
        stdout: (l) => out.push(l),
      }),
    );
    assert.equal(r.exitCode, 0);
    assert.deepEqual(out, ['1000', '1000'], 'inside, the build user keeps CNB_USER_ID:CNB_GROUP_ID');
    const st = await stat(path.join(fs.workspace, 'f'));
    assert.deepEqual([st.uid, st.gid], [lease.uid, lease.gid], 'its files are owned by the leased ids');

    const s = await sleeper({ hostIds: lease });
    try {
      const status = await readFile(`/proc/${s.pid}/status`, 'utf8');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number);
      assert.deepEqual(uids, [lease.uid, lease.uid, lease.uid, lease.uid]);
      assert.notEqual(lease.uid, 1000);
      const accounts = (await readFile('/etc/passwd', 'utf8'))
        .split('\n')
        .map((l) => Number(l.split(':')[2]));
      assert.ok(!accounts.includes(lease.uid), `${lease.uid} is an account of /etc/passwd`);
    } finally {
      await s.stop();
    }
  });

  test('a host process of uid 1000 can neither signal nor ptrace the sandboxed process', async () => {
    const s = await sleeper({ hostIds: lease });
    try {
      const kill = asUid1000(['kill', '-0', String(s.pid)]);
      assert.notEqual(kill.status, 0);
      assert.match(kill.stderr, /Operation not permitted/);
      const trace = asUid1000(['strace', '-p', String(s.pid), '-e', 'trace=none']);
      assert.notEqual(trace.status, 0);
      assert.match(trace.stderr, /Operation not permitted/);
    } finally {
      await s.stop();
    }
    // Control: without a leased identity (inside-1000 is host 1000), uid 1000 can signal it, so
    // the checks above test the identity, not setpriv.
    const legacy = await makeHostRootfs();
    try {
      const c = await sleeper({ mounts: legacy.mounts });
      try {
        assert.equal(asUid1000(['kill', '-0', String(c.pid)]).status, 0);
      } finally {
        await c.stop();
      }
    } finally {
      await legacy.cleanup();
    }
  });

  test('two concurrent sandboxes with their own leases run as different host uids', async () => {
    const other = await leaseHostIds();
    const fs2 = await makeHostRootfs(other.uid, other.gid);
    try {
      const a = await sleeper({ hostIds: lease });
      const b = await sleeper({ hostIds: other, rootfs: fs2.rootfs, mounts: fs2.mounts });
      try {
        const uidOf = async (pid: number) =>
          Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]);
        const [ua, ub] = [await uidOf(a.pid), await uidOf(b.pid)];
        assert.deepEqual([ua, ub], [lease.uid, other.uid]);
        assert.notEqual(ua, ub);
      } finally {
        await a.stop();
        await b.stop();
      }
    } finally {
      await fs2.cleanup();
      await other.release();
    }
  });

  test('a mount owned by another host uid is not writable by the leased identity', async () => {
    await chown(fs.layers, 1000, 1000);
    try {
      const err: string[] = [];
      const r = await exec.run(
        spec(['/bin/sh', '-c', 'echo x > /layers/f'], { hostIds: lease, stderr: (l) => err.push(l) }),
      );
      assert.notEqual(r.exitCode, 0);
      assert.match(err.join('\n'), /Permission denied/);
    } finally {
      await chown(fs.layers, lease.uid, lease.gid);
    }
  });
});
