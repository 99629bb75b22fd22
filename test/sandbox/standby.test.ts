// A run started from a standby (src/sandbox/standby.ts: the next run's first process made and
// moved into a fresh cgroup ahead of need) is bounded exactly as one started on its own path:
// its own cgroup with its own limits, a fork bomb held by the process limit, nothing run before
// it is placed, nothing left behind; never a standby waiting as a sandbox's host ids. Real
// bubblewrap sandboxes in a real isolated network (slirp4netns), real cgroups (v1 here).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import { SandboxCgroup, settleCgroups } from '../../src/sandbox/cgroup.ts';
import type { Limits, RunSpec } from '../../src/sandbox/executor.ts';
import { type OpenNetwork, openNetwork } from '../../src/sandbox/network.ts';
import { DEFAULT_GATE, gateMessage, standbysTaken } from '../../src/sandbox/standby.ts';
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

/**
 * isolatedSandbox gives the tests of a suite a host rootfs and an isolated network, made before
 * them and removed (with every cgroup left) after them: the builds' default, where the first
 * process starts as root and nsenter drops to the sandbox's ids.
 */
function isolatedSandbox(): { fs: () => HostRootfs; net: () => OpenNetwork } {
  let fs: HostRootfs | undefined;
  let net: OpenNetwork | undefined;
  before(async () => {
    fs = await makeHostRootfs();
    net = await openNetwork('isolated', { hostUid: 0 });
  });
  after(async () => {
    await settleCgroups();
    await net?.close();
    await fs?.cleanup();
  });
  return { fs: () => fs!, net: () => net! };
}

describe('sandbox standby', { skip }, () => {
  const { fs, net } = isolatedSandbox();
  const bw = new BubblewrapExecutor({ hostUid: 0 });
  const spec = (script: string, limits: Limits, out: string[] = []): RunSpec => ({
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/bin:/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    hostIds: { uid: 1000, gid: 1000 },
    rootfs: fs().rootfs,
    mounts: fs().mounts,
    network: net().network,
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
    const left = readdirSync(path.dirname(fs().workspace)).filter((n) => n.startsWith('.kiln-ovl-'));
    assert.deepEqual(left, []);
  });
});

// What a sandboxed process sees of its limits, identity and network: the same whether its first
// process was a standby (kiln-gate applying the wrappers itself) or started on its own path
// (nsenter and prlimit exec'd).
const PROBE = [
  'grep -E "^Max (processes|open files|file size)" /proc/self/limits',
  'grep -E "^(Uid|Gid|Groups|NoNewPrivs|CapEff|CapBnd|Seccomp):" /proc/self/status',
  'cat /proc/self/uid_map /proc/self/gid_map',
  'readlink /proc/self/ns/net',
  'tail -n +3 /proc/net/dev | cut -d: -f1',
  'rm -f /workspace/probe-owner; echo > /workspace/probe-owner',
].join('; ');

describe('sandbox standby: kiln-gate applies the wrappers itself', { skip }, () => {
  const { fs, net } = isolatedSandbox();
  const bw = new BubblewrapExecutor({ hostUid: 0 });
  const probe = (out: string[]): RunSpec => ({
    argv: ['/bin/sh', '-c', PROBE],
    env: { PATH: '/usr/bin:/bin' },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    hostIds: { uid: 1000, gid: 1000 },
    rootfs: fs().rootfs,
    mounts: fs().mounts,
    network: net().network,
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(`stderr: ${l}`),
    limits: { processes: 91, openFiles: 1234, fileSizeBytes: 5 << 20, memoryBytes: 400 << 20 },
  });

  test('the limits, ids, groups, capabilities and network namespace are those of a run without a standby', async () => {
    await settleCgroups();
    const own: string[] = [];
    const before = standbysTaken();
    assert.equal((await bw.run(probe(own))).exitCode, 0, own.join('\n'));
    assert.equal(standbysTaken(), before, 'the first run had no standby to take');
    await bw.prepare(probe([]));
    assert.equal((await waitingCgroups()).length, 1, 'a standby is waiting');
    const gated: string[] = [];
    assert.equal((await bw.run(probe(gated))).exitCode, 0, gated.join('\n'));
    assert.equal(standbysTaken(), before + 1, 'the second run did not start from the standby');
    assert.deepEqual(gated, own);
    // And they are the ones asked for (not merely equal).
    const text = gated.join('\n');
    assert.match(text, /^Max processes\s+91\s+91\s/m);
    assert.match(text, /^Max open files\s+1234\s+1234\s/m);
    assert.match(text, new RegExp(`^Max file size\\s+${5 << 20}\\s+${5 << 20}\\s`, 'm'));
    assert.match(text, /^Groups:\s*$/m);
    assert.match(text, /^CapEff:\s+0+$/m);
    assert.match(text, /^NoNewPrivs:\s+1$/m);
    // What it writes is owned by the host ids asked for (nsenter's -S/-G, the gate's +ids).
    const st = statSync(path.join(fs().workspace, 'probe-owner'));
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
    assert.ok(
      gated.some((l) => l.trim() === 'tap0'),
      `the build's isolated network (tap0): ${text}`,
    );
  });
});

describe('kiln-gate directives', { skip: existsSync(DEFAULT_GATE) ? false : `needs ${DEFAULT_GATE}` }, () => {
  test('gateMessage turns exactly the wrappers kiln writes into directives, in order, and nothing else', () => {
    const tail = ['/x/kiln-mountview', '/dev/shm', '1', 'rw', '/w', '.kiln-ovl-1', 'bwrap', '--args', '6'];
    assert.deepEqual(
      gateMessage([
        'nsenter',
        '--net=/proc/42/fd/33',
        '-S',
        '2130706434',
        '-G',
        '2130706435',
        '--',
        'prlimit',
        '--nproc=4096:4096',
        '--nofile=20000:20000',
        '--fsize=4294967296:4294967296',
        '--',
        ...tail,
      ]),
      [
        '+netns=/proc/42/fd/33',
        '+ids=2130706434:2130706435',
        '+rlimit=nproc:4096:4096',
        '+rlimit=nofile:20000:20000',
        '+rlimit=fsize:4294967296:4294967296',
        ...tail,
      ],
    );
    assert.deepEqual(gateMessage(['/usr/bin/prlimit', '--data=100:100', '--', 'bwrap', '+x']), [
      '+rlimit=data:100:100',
      'bwrap',
      '+x',
    ]);
    // Anything else goes through untouched (exec'd as before): other nsenter forms (entering a user
    // namespace, no id drop, uid 0), unknown prlimit options, a later wrapper after the command.
    for (const argv of [
      ['nsenter', '--user=/proc/1/fd/4', '--preserve-credentials', '--net=/proc/1/fd/5', '--', 'bwrap'],
      ['nsenter', '--net=/proc/1/fd/5', '--', 'bwrap'],
      ['nsenter', '--net=/proc/1/fd/5', '-S', '0', '-G', '0', '--', 'bwrap'],
      ['prlimit', '--core=0:0', '--', 'bwrap'],
      ['prlimit', '--nproc=1:1'],
      ['bwrap', '--', 'prlimit', '--nproc=1:1', '--', 'x'],
    ])
      assert.deepEqual(gateMessage(argv), argv);
  });

  test('a malformed or failing directive runs nothing and exits 125 (fail closed)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kiln-gate-'));
    try {
      const marker = path.join(dir, 'ran');
      const cases = [
        '+rlimit=nofile:300:200', // soft above hard
        '+rlimit=nofile:1x:2',
        '+rlimit=core:0:0', // not a limit kiln sets
        '+netns=/nonexistent',
        '+netns=relative',
        '+ids=0:0', // never root
        '+ids=1000',
        '+bogus',
      ];
      if (!asRoot) cases.push('+ids=1000:1000'); // cannot switch: must not run as itself instead
      for (const d of cases) {
        const msg = [d, '/bin/sh', '-c', `echo ran > ${marker}`].map((a) => `${a}\0`).join('');
        // On fd 3, as kiln gives it.
        const r3 = spawnSync('/bin/sh', ['-c', `exec "$0" 3 3<&0`, DEFAULT_GATE], {
          input: msg,
          encoding: 'utf8',
        });
        assert.equal(r3.status, 125, `${d}: exit ${r3.status}: ${r3.stderr}`);
        assert.match(r3.stderr, /^kiln-gate: /, d);
        assert.equal(existsSync(marker), false, `${d}: the command ran`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('directives are applied before the command runs: limits, then ids (as root)', {
    skip: !asRoot && 'needs root',
  }, () => {
    const msg = [
      '+rlimit=nofile:321:654',
      '+rlimit=nproc:77:88',
      '+ids=2130706400:2130706401',
      '/bin/sh',
      '-c',
      'grep -E "^Max (processes|open files)" /proc/self/limits; grep -E "^(Uid|Gid|Groups|CapEff):" /proc/self/status',
    ]
      .map((a) => `${a}\0`)
      .join('');
    const r = spawnSync('/bin/sh', ['-c', `exec "$0" 3 3<&0`, DEFAULT_GATE], {
      input: msg,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Max processes\s+77\s+88\s/m);
    assert.match(r.stdout, /^Max open files\s+321\s+654\s/m);
    assert.match(r.stdout, /^Uid:\s+2130706400\s+2130706400\s+2130706400\s+2130706400$/m);
    assert.match(r.stdout, /^Gid:\s+2130706401\s+2130706401\s+2130706401\s+2130706401$/m);
    assert.match(r.stdout, /^Groups:\s*$/m);
    assert.match(r.stdout, /^CapEff:\s+0+$/m);
  });
});
