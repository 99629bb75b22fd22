// Limits with clear errors, through the real detect and build phases on the
// bubblewrap executor (conformance harness, uid 1000, network none): a fork bomb, a disk filler,
// a file over the per-file limit, a memory hog, a hung and a stopped buildpack. Each is contained,
// the host stays healthy (it still forks; nothing of the sandbox is left running), and the build
// fails with the phase's exit code and one line naming the limit and how to raise it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { ExitCode } from '../../src/cnb/exit-codes.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { Deadline } from '../../src/lifecycle/deadline.ts';
import { SandboxCgroup, settleCgroups } from '../../src/sandbox/cgroup.ts';
import { type Fixture, makeFixture } from '../conformance/harness.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;
const MiB = 1 << 20;

/** The build's failure: its message and exit code. */
async function failure(p: Promise<unknown>): Promise<{ message: string; exitCode: number }> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, String(e));
    return { message: e.message, exitCode: exitCodeOf(e) };
  }
  assert.fail('the build was expected to fail');
}

/** No kiln cgroup of this process is left behind (the sandbox's processes are all gone). */
async function assertNoCgroupsLeft(): Promise<void> {
  await settleCgroups();
  for (const root of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup/memory']) {
    if (!existsSync(root)) continue;
    const stack = [root];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        assert.ok(!e.name.startsWith(`kiln-${process.pid}-`), `cgroup ${dir}/${e.name} was left behind`);
        if (dir.split('/').length < 8) stack.push(`${dir}/${e.name}`);
      }
    }
  }
}

describe('build limits', { skip: !asRoot && 'needs root (build as uid 1000, cgroups)' }, () => {
  let f: Fixture;
  before(async () => {
    f = await makeFixture();
  });
  after(async () => {
    await f.cleanup();
  });

  test('a fork bomb is held by the process limit; the host forks fine during and after', async () => {
    const bp = await f.inline({
      id: 'limits/forkbomb',
      detect: 'exit 0',
      // A real bomb (each child forks on), plus a marker so the test knows it is running.
      build: 'touch "$CNB_LAYERS_DIR/started"; :(){ :|:& };:; sleep 600',
    });
    const started = `${f.layers}/limits_forkbomb/started`;
    const build = failure(
      f.detectAndBuild([bp.id], { limits: { processes: 64 }, deadline: Deadline.after(4000) }),
    );
    // While the bomb runs, the host (any uid) still starts processes.
    let forks = 0;
    const t0 = Date.now();
    while (!existsSync(started) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(started), 'the bomb never started');
    while (Date.now() - t0 < 2500) {
      const r = spawnSync('/bin/true');
      assert.equal(r.status, 0, `host fork failed during the bomb: ${r.error?.message}`);
      forks++;
      await new Promise((r) => setTimeout(r, 50));
    }
    const { message, exitCode } = await build;
    assert.ok(forks > 5);
    assert.equal(exitCode, ExitCode.BuildFailed);
    assert.match(
      message,
      /^buildpack limits\/forkbomb@0\.0\.1 \(build\) was stopped after the 4s build timeout \(--timeout\)/,
    );
    assert.match(message, /the process limit of 64 processes was reached.*--process-limit/);
    assert.equal(message.split('\n').length, 1);
    assert.equal(spawnSync('/bin/true').status, 0);
    await assertNoCgroupsLeft();
  });

  test('a disk filler is stopped at the disk budget of /layers and /workspace', async () => {
    const bp = await f.inline({
      id: 'limits/filler',
      detect: 'exit 0',
      build: 'cat /dev/zero > "$CNB_LAYERS_DIR/fill"',
    });
    const t0 = Date.now();
    const { message, exitCode } = await failure(
      f.detectAndBuild([bp.id], { limits: { diskBytes: 64 * MiB, fileSizeBytes: 64 * 1024 * MiB } }),
    );
    assert.equal(exitCode, ExitCode.BuildFailed);
    assert.match(
      message,
      /^buildpack limits\/filler@0\.0\.1 \(build\) was stopped: the build's disk budget of 64 MiB for .*\/layers.* was exceeded \(\d+(\.\d)? MiB written\); raise it with --disk-budget or disk-budget in the kiln config$/,
    );
    // Overshoot bound: one poll interval (250 ms) of writing, far below what cat would write.
    const written = statSync(`${f.layers}/limits_filler/fill`).size;
    assert.ok(written > 64 * MiB, `only ${written} bytes written`);
    assert.ok(written < 2048 * MiB, `the filler wrote ${written} bytes before it was stopped`);
    assert.ok(Date.now() - t0 < 15_000);
    await assertNoCgroupsLeft();
  });

  test('a file over the per-file size limit fails the build, naming the limit', async () => {
    const bp = await f.inline({
      id: 'limits/bigfile',
      detect: 'exit 0',
      build: 'head -c 5000000 /dev/zero > "$CNB_LAYERS_DIR/big"',
    });
    const { message, exitCode } = await failure(
      f.detectAndBuild([bp.id], { limits: { fileSizeBytes: 1 * MiB } }),
    );
    assert.equal(exitCode, ExitCode.BuildFailed);
    assert.match(message, /limits\/bigfile@0\.0\.1 failed: bin\/build/);
    assert.match(message, /a file reached the 1 MiB per-file size limit; raise it with --file-size-limit/);
    assert.ok(statSync(`${f.layers}/limits_bigfile/big`).size <= 1 * MiB);
  });

  test('a memory hog is killed at the memory limit, naming it', async () => {
    const bp = await f.inline({
      id: 'limits/hog',
      detect: 'exit 0',
      build: '/usr/bin/python3 -c "b = bytearray(512 << 20); print(len(b))"',
    });
    const { message, exitCode } = await failure(
      f.detectAndBuild([bp.id], { limits: { memoryBytes: 96 * MiB } }),
    );
    assert.equal(exitCode, ExitCode.BuildFailed);
    if (SandboxCgroup.available().memory)
      assert.match(
        message,
        /^buildpack limits\/hog@0\.0\.1 \(build\) was stopped: it ran out of memory: the 96 MiB memory limit was reached and the kernel killed it; raise it with --memory-limit or memory-limit in the kiln config$/,
      );
    // Without a memory cgroup, RLIMIT_DATA makes the allocation fail (MemoryError) instead.
    else assert.match(message, /memory ran out \(the limit is 96 MiB\); raise it with --memory-limit/);
    await assertNoCgroupsLeft();
  });

  test('a memory hog in detect ends the detect phase with exit 22', async () => {
    const bp = await f.inline({
      id: 'limits/detect-hog',
      detect: '/usr/bin/python3 -c "b = bytearray(512 << 20)"',
    });
    const { message, exitCode } = await failure(f.detect([bp.id], { limits: { memoryBytes: 96 * MiB } }));
    assert.equal(exitCode, ExitCode.DetectError);
    if (SandboxCgroup.available().memory)
      assert.match(
        message,
        /^buildpack limits\/detect-hog@0\.0\.1 \(detect\) was stopped: it ran out of memory/,
      );
  });

  test('without cgroups, RLIMIT_DATA bounds memory: Node.js and npm still run, a hog fails naming the limit', async () => {
    SandboxCgroup.disabled = true;
    try {
      const ok = await f.inline({
        id: 'limits/node-ok',
        detect: 'exit 0',
        build:
          "node -e \"const {Worker}=require('worker_threads'); new Worker('1',{eval:true}).on('exit',()=>console.log('node ok'))\" > \"$CNB_LAYERS_DIR/node\"; HOME=/tmp npm --version > \"$CNB_LAYERS_DIR/npm\"",
      });
      await f.detectAndBuild([ok.id], { limits: { memoryBytes: 512 * MiB } });
      assert.equal((await f.layerFile(ok.id, 'node')).trim(), 'node ok');
      assert.match(await f.layerFile(ok.id, 'npm'), /^\d+\.\d+\.\d+/);
      const hog = await f.inline({
        id: 'limits/hog-rlimit',
        detect: 'exit 0',
        build: '/usr/bin/python3 -c "b = bytearray(768 << 20)"',
      });
      const { message, exitCode } = await failure(
        f.detectAndBuild([hog.id], { limits: { memoryBytes: 512 * MiB } }),
      );
      assert.equal(exitCode, ExitCode.BuildFailed);
      assert.match(message, /memory ran out \(the limit is 512 MiB\); raise it with --memory-limit/);
    } finally {
      SandboxCgroup.disabled = false;
    }
  });

  test("buildpack processes are the OOM killer's first choice, not kiln or the host", async () => {
    const bp = await f.inline({
      id: 'limits/oom-score',
      detect: 'exit 0',
      build: 'cat /proc/self/oom_score_adj > "$CNB_LAYERS_DIR/oom"',
    });
    await f.detectAndBuild([bp.id]);
    assert.equal((await f.layerFile(bp.id, 'oom')).trim(), '1000');
  });

  test('a hung buildpack is killed at the build timeout with one line naming it', async () => {
    const bp = await f.inline({ id: 'limits/slow', version: '1.0', detect: 'exit 0', build: 'sleep 600' });
    const t0 = Date.now();
    const { message, exitCode } = await failure(
      f.detectAndBuild([bp.id], { deadline: Deadline.after(2000) }),
    );
    const took = Date.now() - t0;
    assert.equal(exitCode, ExitCode.BuildFailed);
    assert.equal(
      message,
      'buildpack limits/slow@1.0 (build) was stopped after the 2s build timeout (--timeout)',
    );
    assert.ok(took >= 1900 && took < 6000, `stopped after ${took} ms`);
  });

  test('a buildpack that stops itself (SIGSTOP) and ignores SIGTERM is killed at the timeout', async () => {
    const bp = await f.inline({
      id: 'limits/stopped',
      version: '1.0',
      detect: 'exit 0',
      build: "trap '' TERM; kill -STOP $$; sleep 600",
    });
    const t0 = Date.now();
    const { message, exitCode } = await failure(
      f.detectAndBuild([bp.id], { deadline: Deadline.after(2000) }),
    );
    assert.equal(exitCode, ExitCode.BuildFailed);
    assert.equal(
      message,
      'buildpack limits/stopped@1.0 (build) was stopped after the 2s build timeout (--timeout)',
    );
    assert.ok(Date.now() - t0 < 6000);
    await assertNoCgroupsLeft();
  });

  test('a hung detect ends the detect phase with exit 22 at the timeout', async () => {
    const bp = await f.inline({ id: 'limits/slow-detect', version: '1.0', detect: 'sleep 600' });
    const { message, exitCode } = await failure(f.detect([bp.id], { deadline: Deadline.after(1500) }));
    assert.equal(exitCode, ExitCode.DetectError);
    assert.equal(
      message,
      'buildpack limits/slow-detect@1.0 (detect) was stopped after the 1.5s build timeout (--timeout)',
    );
  });
});
