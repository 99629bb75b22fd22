// The executor's id range (how the stack's maintainer scripts run): inside ids 0..count-1 are a
// leased block of kiln's range, so inside-root is an unprivileged host id with only the file
// capabilities build-root grants, in its own session, without network, under the limits.

import assert from 'node:assert/strict';
import { chmod, chown, mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { RunSpec } from '../../src/sandbox/executor.ts';
import { type IdBlockLease, leaseIdBlock } from '../../src/sandbox/identity.ts';
import { MAINTAINER_SCRIPT_CAPABILITIES } from '../../src/stack/build-root.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const root = process.getuid?.() === 0;
const exec = new BubblewrapExecutor({ hostUid: 0 });

describe('id range (maintainer scripts)', { skip: !root && 'needs root to map a range' }, () => {
  let fs: HostRootfs;
  let block: IdBlockLease;
  let canary: string;
  before(async () => {
    block = await leaseIdBlock(65536);
    fs = await makeHostRootfs(block.uid, block.gid);
    // A host file only real root may read, as /etc/shadow is.
    canary = path.join(fs.dir, 'canary');
    await writeFile(canary, 'host-secret\n', { mode: 0o600 });
    await chmod(canary, 0o600);
    await mkdir(path.join(fs.rootfs, 'canary'));
  });
  after(async () => {
    await fs.cleanup();
    await block.release();
  });

  const spec = (script: string, out: string[], over: Partial<RunSpec> = {}): RunSpec => ({
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    cwd: '/workspace',
    uid: 0,
    gid: 0,
    allowRoot: true,
    rootfs: fs.rootfs,
    mounts: [...fs.mounts, { src: fs.dir, dst: '/canary', readonly: true }],
    network: 'none',
    idRange: { count: 65536, hostUid: block.uid, hostGid: block.gid },
    capabilities: MAINTAINER_SCRIPT_CAPABILITIES,
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(l),
    ...over,
  });

  test('inside-root writes files owned by the block on the host and chowns within it', async () => {
    const out: string[] = [];
    const r = await exec.run(
      spec(
        'id -u; id -g; echo x > /workspace/made; echo y > /workspace/given; chown 8:12 /workspace/given',
        out,
      ),
    );
    assert.equal(r.exitCode, 0, out.join('\n'));
    assert.deepEqual(out, ['0', '0']);
    const made = await stat(path.join(fs.workspace, 'made'));
    assert.deepEqual([made.uid, made.gid], [block.uid, block.gid], 'inside-root is the block, not host root');
    const given = await stat(path.join(fs.workspace, 'given'));
    assert.deepEqual([given.uid, given.gid], [block.uid + 8, block.gid + 12]);
  });

  test('inside-root cannot read a root-only host file, nor chown one', async () => {
    const out: string[] = [];
    const r = await exec.run(spec('cat /canary/canary; chown 0:0 /canary/canary; echo done', out));
    assert.equal(r.exitCode, 0);
    const text = out.join('\n');
    assert.doesNotMatch(text, /host-secret/);
    assert.match(text, /cat: \/canary\/canary: Permission denied/);
    assert.match(
      text,
      /chown: changing ownership of '\/canary\/canary': (Read-only file system|Operation not permitted)/,
    );
    // And a file of the block's own that is not mapped back to root stays the block's.
    await chown(canary, 0, 0);
  });

  test('only the file capabilities, NoNewPrivs, its own session, no network, the process limit', async () => {
    const out: string[] = [];
    const r = await exec.run(
      spec(
        'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; echo sid=$(cut -d" " -f6 /proc/self/stat); grep -c : /proc/net/dev; grep "Max processes" /proc/self/limits',
        out,
      ),
    );
    assert.equal(r.exitCode, 0, out.join('\n'));
    // CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_FOWNER (3), CAP_FSETID (4).
    const mask = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4);
    const hex = mask.toString(16).padStart(16, '0');
    assert.ok(out.includes(`CapEff:\t${hex}`), out.join('\n'));
    assert.ok(out.includes(`CapBnd:\t${hex}`), out.join('\n'));
    assert.ok(out.includes('NoNewPrivs:\t1'));
    // A session led outside the pid namespace (kiln's, a terminal's) would read as 0.
    assert.ok(out.includes('sid=1'), 'the sandbox leads its own session (--new-session)');
    assert.ok(out.includes('1'), 'only the loopback interface');
    assert.match(out.join('\n'), /Max processes\s+4096\s+4096/);
  });

  test('an id range without root, or capabilities without a range, are refused', async () => {
    const nonRoot = new BubblewrapExecutor({ hostUid: 1000 });
    await assert.rejects(nonRoot.run(spec('true', [])), /an id range needs kiln to run as root/);
    await assert.rejects(
      exec.run(spec('true', [], { idRange: undefined, uid: 1000, gid: 1000, allowRoot: false })),
      /capability "CAP_CHOWN" refused: .*only with an id range/,
    );
  });
});
