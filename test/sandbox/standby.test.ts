// A run started from a standby (src/sandbox/standby.ts: the next run's first process made and
// moved into a fresh cgroup ahead of need) is bounded exactly as one started on its own path:
// its own cgroup with its own limits, a fork bomb held by the process limit, nothing run before
// it is placed, nothing left behind; never a standby waiting as a sandbox's host ids. Real
// bubblewrap sandboxes in a real isolated network (slirp4netns), real cgroups (v1 here).

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import { SandboxCgroup, settleCgroups } from '../../src/sandbox/cgroup.ts';
import type { Limits, RunSpec } from '../../src/sandbox/executor.ts';
import { type OpenNetwork, openNetwork } from '../../src/sandbox/network.ts';
import { DEFAULT_GATE, standbysTaken } from '../../src/sandbox/standby.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const asRoot = process.getuid?.() === 0;
const cg = asRoot ? SandboxCgroup.available() : { memory: false, pids: false };
const skip = !asRoot
  ? 'needs root (cgroups)'
  : !cg.pids || !cg.memory
    ? 'needs a memory and a pids cgroup kiln can create'
    : !existsSync(DEFAULT_GATE)
      ? `needs ${DEFAULT_GATE} (scripts/build.sh)`
      : false;

/** This process's kiln cgroups in one controller hierarchy (v1: /sys/fs/cgroup/<controller>/…). */
function ownCgroups(controller: 'pids' | 'memory'): string[] {
  const out: string[] = [];
  const stack = [`/sys/fs/cgroup/${controller}`];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      if (e.name.startsWith(`kiln-${process.pid}-`)) out.push(path.join(dir, e.name));
      else if (dir.split('/').length < 8) stack.push(path.join(dir, e.name));
    }
  }
  return out;
}

const procs = (dir: string) =>
  readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter((l) => l !== '');

/** The cgroups of ours holding a process, once there are some (a standby is placed in the background). */
async function waitingCgroups(): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const found = ownCgroups('pids').filter((d) => procs(d).length > 0);
    if (found.length > 0) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
  return [];
}

describe('sandbox standby', { skip }, () => {
  let fs: HostRootfs;
  let net: OpenNetwork;
  const bw = new BubblewrapExecutor({ hostUid: 0 });
  before(async () => {
    fs = await makeHostRootfs();
    // Builds' default: the first process starts as root, nsenter drops to the sandbox's ids.
    net = await openNetwork('isolated', { hostUid: 0 });
  });
  after(async () => {
    await settleCgroups();
    await net?.close();
    await fs?.cleanup();
  });
  const spec = (script: string, limits: Limits, out: string[] = []): RunSpec => ({
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/bin:/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    hostIds: { uid: 1000, gid: 1000 },
    rootfs: fs.rootfs,
    mounts: fs.mounts,
    network: net.network,
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(l),
    limits,
  });

  test('a run takes the standby prepared for it: its own fresh cgroup, with its own limits, placed before it runs', async () => {
    const limits = { processes: 77, memoryBytes: 300 << 20 };
    await bw.prepare(spec('true', limits));
    // The standby waits in a cgroup of its own with the limits of the run it was made for.
    const waiting = await waitingCgroups();
    assert.equal(waiting.length, 1, `one standby cgroup with a process: ${waiting}`);
    assert.equal(readFileSync(path.join(waiting[0]!, 'pids.max'), 'utf8').trim(), '77');
    const taken = standbysTaken();
    // While the second run sleeps, every process of it is in that cgroup (memory's too).
    const running = bw.run(spec('sleep 1.5; echo done', limits));
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(standbysTaken(), taken + 1, 'the second run did not start from the standby');
    const busy = ownCgroups('pids').filter((d) => procs(d).length > 1);
    assert.equal(busy.length, 1, `exactly one cgroup holds the run's processes: ${busy}`);
    assert.equal(busy[0], waiting[0], "the run's processes are in the standby's cgroup");
    assert.equal(readFileSync(path.join(busy[0]!, 'pids.max'), 'utf8').trim(), '77');
    const mem = ownCgroups('memory').find((d) => path.basename(d) === path.basename(busy[0]!));
    assert.ok(mem, 'the memory cgroup of the run');
    assert.equal(readFileSync(path.join(mem, 'memory.limit_in_bytes'), 'utf8').trim(), String(300 << 20));
    for (const pid of procs(busy[0]!))
      assert.ok(procs(mem).includes(pid), `process ${pid} is in the memory cgroup too`);
    const r = await running;
    assert.equal(r.exitCode, 0);
  });

  test('a standby made for other limits is not taken: the run gets a cgroup with its own', async () => {
    await settleCgroups();
    await bw.prepare(spec('true', { processes: 60 }));
    assert.equal((await waitingCgroups()).length, 1, 'a standby is waiting');
    const taken = standbysTaken();
    const running = bw.run(spec('sleep 1', { processes: 61 }));
    await new Promise((r) => setTimeout(r, 500));
    const busy = ownCgroups('pids').filter((d) => procs(d).length > 1);
    assert.equal(busy.length, 1);
    assert.equal(readFileSync(path.join(busy[0]!, 'pids.max'), 'utf8').trim(), '61');
    assert.equal((await running).exitCode, 0);
    assert.equal(standbysTaken(), taken, 'a standby for other limits was taken');
  });

  test('a fork bomb in a run started from a standby is held by the process limit', async () => {
    await settleCgroups();
    const limits = { processes: 40 };
    await bw.prepare(spec('true', limits));
    assert.equal((await waitingCgroups()).length, 1, 'a standby is waiting');
    const taken = standbysTaken();
    const out: string[] = [];
    const r = await bw.run({
      ...spec('b(){ b|b& }; b; sleep 2; exit 3', limits, out),
      timeoutMs: 6000,
      graceMs: 0,
    });
    assert.equal(standbysTaken(), taken + 1, 'the bomb did not start from the standby');
    assert.ok(
      r.notes.some((n) => /process limit of 40/.test(n)),
      `notes name the process limit: ${JSON.stringify(r.notes)} / ${out.slice(-3).join(' | ')}`,
    );
  });

  test('no standby waits as a sandbox identity: a run that starts as its host ids (network none) gets none', async () => {
    await settleCgroups();
    const limits = { processes: 55 };
    await bw.prepare({ ...spec('true', limits), network: 'none' });
    // A standby would be placed by now (the other tests wait for it this long at most).
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(
      ownCgroups('pids').filter((d) => procs(d).length > 0),
      [],
      'a standby was made for a run that starts as uid 1000',
    );
    const taken = standbysTaken();
    assert.equal((await bw.run({ ...spec('true', limits), network: 'none' })).exitCode, 0);
    assert.equal(standbysTaken(), taken);
  });

  test('settling discards the waiting standby: its process ends, no cgroup or overlay work dir is left', async () => {
    // A run (its overlay work dirs are removed in the background), then a standby waiting.
    assert.equal((await bw.run(spec('true', { processes: 50 }))).exitCode, 0);
    await bw.prepare(spec('true', { processes: 50 }));
    assert.ok((await waitingCgroups()).length > 0, 'a standby is waiting');
    await settleCgroups();
    assert.deepEqual(ownCgroups('pids'), []);
    assert.deepEqual(ownCgroups('memory'), []);
    // The neutral view's overlay work dirs (next to the writable mounts) are gone too.
    const left = readdirSync(path.dirname(fs.workspace)).filter((n) => n.startsWith('.kiln-ovl-'));
    assert.deepEqual(left, []);
  });
});
