import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, open, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeHostRootfs } from '../../test/helpers/sandbox-rootfs.ts';
import { BubblewrapExecutor } from './bubblewrap.ts';
import { preflight, treeBytes, watch } from './disk-budget.ts';

const MiB = 1 << 20;
const asRoot = (process.getuid?.() ?? 0) === 0;

describe('disk budget', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-disk-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('treeBytes counts allocated blocks, a hard link once, and never follows a symlink out', async () => {
    const tree = path.join(dir, 'tree');
    const outside = path.join(dir, 'outside');
    await mkdir(path.join(tree, 'sub'), { recursive: true });
    await mkdir(outside);
    await writeFile(path.join(tree, 'sub', 'a'), Buffer.alloc(2 * MiB, 1));
    await link(path.join(tree, 'sub', 'a'), path.join(tree, 'a-again'));
    await writeFile(path.join(outside, 'big'), Buffer.alloc(8 * MiB, 1));
    await symlink(outside, path.join(tree, 'link-dir'));
    await symlink(path.join(outside, 'big'), path.join(tree, 'link-file'));
    const n = await treeBytes([tree]);
    assert.ok(n >= 2 * MiB && n < 3 * MiB, `counted ${n} bytes`);
    // A sparse file costs what it allocates, not its length.
    const sparse = path.join(tree, 'sparse');
    await writeFile(sparse, '');
    await truncate(sparse, 1024 * MiB);
    assert.ok((await treeBytes([tree])) < 3 * MiB);
  });

  test('a tree already over budget when watched, which free space does not show, is caught within ~1 s of run time', async () => {
    // Written before the watch starts (as growth masked by frees elsewhere would be): the
    // filesystem's use does not grow while watched, so only the periodic walk can find it.
    const root = path.join(dir, 'masked-root');
    await mkdir(root);
    const fh = await open(path.join(root, 'filler.bin'), 'w');
    await fh.write(Buffer.alloc(32 * MiB, 2));
    await fh.sync(); // allocated now, not later under the watch (delayed allocation)
    await fh.close();
    let why: string | undefined;
    const t0 = Date.now();
    const w = watch({ roots: [{ host: root, name: '/layers' }], budgetBytes: 16 * MiB }, (r) => {
      why = r;
    });
    while (why === undefined && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
    const after = Date.now() - t0;
    await w.stop();
    assert.match(why ?? 'not caught', /disk budget of 16 MiB/);
    // Within about a second of watched time (others writing to the same filesystem can make the
    // free-space check walk sooner on a shared host).
    assert.ok(after < 3000, `caught after ${after} ms`);
  });

  test('preflight refuses a run when the host filesystem is below the reserve, naming the sandbox path', () => {
    const why = preflight({ roots: [{ host: dir, name: '/layers' }], reserveBytes: Number.MAX_SAFE_INTEGER });
    assert.match(
      why ?? '',
      /^the host filesystem of \/layers has only .* free, below the .* kiln keeps free; .*--disk-reserve/,
    );
    assert.equal(preflight({ roots: [{ host: dir, name: '/layers' }], reserveBytes: 1 }), undefined);
  });

  test('the executor does not start a sandbox below the reserve', {
    skip: !asRoot && 'needs root',
  }, async () => {
    const fs = await makeHostRootfs();
    try {
      const marker = path.join(fs.workspace, 'ran');
      const r = await new BubblewrapExecutor({ hostUid: 0 }).run({
        argv: ['/bin/sh', '-c', 'touch /workspace/ran'],
        env: { PATH: '/usr/bin:/bin' },
        cwd: '/workspace',
        uid: 1000,
        gid: 1000,
        rootfs: fs.rootfs,
        mounts: fs.mounts,
        network: 'none',
        limits: { diskReserveBytes: Number.MAX_SAFE_INTEGER },
      });
      assert.match(r.limit ?? '', /below the .* kiln keeps free/);
      assert.notEqual(r.exitCode, 0);
      assert.equal(existsSync(marker), false, 'the command ran');
    } finally {
      await fs.cleanup();
    }
  });
});
