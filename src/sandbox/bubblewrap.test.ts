import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type HostRootfs, makeHostRootfs } from '../../test/helpers/sandbox-rootfs.ts';
import { KilnError } from '../internal/errors.ts';
import { BubblewrapExecutor } from './bubblewrap.ts';
import type { RunSpec } from './executor.ts';

const hostUid = process.getuid?.() ?? 0;
const exec = new BubblewrapExecutor({ hostUid });

describe('BubblewrapExecutor', () => {
  let fs: HostRootfs;
  before(async () => {
    fs = await makeHostRootfs();
  });
  after(() => fs.cleanup());

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

  async function output(argv: string[], over: Partial<RunSpec> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const r = await exec.run(spec(argv, { stdout: (l) => out.push(l), stderr: (l) => err.push(l), ...over }));
    return { ...r, out, err };
  }

  test('run() streams stdout lines and returns the exit code', async () => {
    const r = await output(['/bin/sh', '-c', 'echo one; printf "two\\nthree"; exit 7']);
    assert.deepEqual(r.out, ['one', 'two', 'three']);
    assert.equal(r.exitCode, 7);
    assert.equal(r.signal, null);
  });

  test('run() passes exactly the given environment (plus PWD, which bwrap sets on chdir)', async () => {
    process.env.KILN_TEST_LEAK = 'leaked-from-kiln';
    try {
      const r = await output(['/usr/bin/env'], { env: { PATH: '/usr/bin', ONLY: 'this', MULTI: 'a\nb' } });
      assert.deepEqual(r.out.sort(), ['MULTI=a', 'ONLY=this', 'PATH=/usr/bin', 'PWD=/workspace', 'b'].sort());
    } finally {
      delete process.env.KILN_TEST_LEAK;
    }
  });

  test('run() gives no capabilities, NoNewPrivs, the requested ids and a private pid namespace', async () => {
    const r = await output([
      '/bin/sh',
      '-c',
      'grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs)" /proc/self/status; id -u; id -g; id -G; ls /proc | grep -c "^[0-9]"',
    ]);
    assert.equal(r.exitCode, 0, r.err.join('\n'));
    assert.ok(r.out.includes('CapEff:\t0000000000000000'), r.out.join('\n'));
    assert.ok(r.out.includes('CapPrm:\t0000000000000000'));
    assert.ok(r.out.includes('CapBnd:\t0000000000000000'));
    assert.ok(r.out.includes('NoNewPrivs:\t1'));
    assert.deepEqual(r.out.slice(4, 7), ['1000', '1000', '1000']);
    assert.ok(Number(r.out[7]) <= 4, `only the sandbox's processes are visible, saw ${r.out[7]}`);
  });

  test('no nested user namespaces (bwrap >= 0.8); older bwrap gets a command line without the flag', async () => {
    const r = await output(['/bin/sh', '-c', 'unshare -U /bin/true && echo NESTED-USERNS']);
    assert.doesNotMatch(r.out.join('\n'), /NESTED-USERNS/);
    const old = new BubblewrapExecutor({ hostUid, disableUserns: false }).commandFor(spec(['/bin/true']));
    assert.equal(old.args.includes('--disable-userns'), false);
    assert.ok(exec.commandFor(spec(['/bin/true'])).args.includes('--disable-userns'));
  });

  test('files written to /workspace are owned by the sandbox uid on the host', async () => {
    const r = await output(['/bin/sh', '-c', 'echo hi > /workspace/owned && mkdir /layers/l1']);
    assert.equal(r.exitCode, 0, r.err.join('\n'));
    const st = await stat(path.join(fs.workspace, 'owned'));
    assert.equal(st.uid, hostUid === 0 ? 1000 : hostUid);
    assert.equal((await stat(path.join(fs.layers, 'l1'))).gid, hostUid === 0 ? 1000 : process.getgid?.());
  });

  test('run() refuses uid 0 with a KilnError', async () => {
    await assert.rejects(exec.run(spec(['/bin/true'], { uid: 0, gid: 0 })), (e: unknown) => {
      assert.ok(e instanceof KilnError);
      assert.match(e.message, /refusing to run \/bin\/true as uid 0/);
      return true;
    });
  });

  test('run() reports the signal that ended the process', async () => {
    const r = await output(['/bin/sh', '-c', 'kill -KILL $$']);
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(r.exitCode, 137);
  });

  test('timeoutMs stops a process that hangs', async () => {
    const t0 = Date.now();
    const r = await output(['/bin/sleep', '30'], { timeoutMs: 300, graceMs: 500 });
    assert.ok(r.timedOut);
    assert.ok(Date.now() - t0 < 5000);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.notes[0] ?? '', /300 ms time limit/);
  });

  test('abort forwards the signal named in the reason to the command', async () => {
    const ac = new AbortController();
    const out: string[] = [];
    const p = exec.run(
      spec(
        ['/bin/bash', '-c', 'trap "echo got INT; exit 3" INT; echo ready; while true; do sleep 0.05; done'],
        {
          stdout: (l) => {
            out.push(l);
            if (l === 'ready') ac.abort('SIGINT');
          },
          signal: ac.signal,
        },
      ),
    );
    const r = await p;
    assert.deepEqual(out, ['ready', 'got INT']);
    assert.equal(r.exitCode, 3);
  });

  test('a bwrap setup failure is a KilnError naming the path', async () => {
    await writeFile(path.join(fs.dir, 'not-a-dir'), '');
    await assert.rejects(
      exec.run(
        spec(['/bin/true'], {
          mounts: [...fs.mounts, { src: '/nonexistent/kiln', dst: '/platform', readonly: true }],
        }),
      ),
      /sandbox could not be set up: .*\/nonexistent\/kiln/,
    );
  });
});
