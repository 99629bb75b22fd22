import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  BLOCK_SIZE,
  DEFAULT_ID_RANGE,
  type IdentityFiles,
  kilnIdRange,
  leaseHostIds,
  leaseIdBlock,
} from './identity.ts';

const root = process.getuid?.() === 0;

describe('kiln id range', () => {
  let dir: string;
  let files: IdentityFiles;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-ids-'));
    files = {
      subuid: path.join(dir, 'subuid'),
      subgid: path.join(dir, 'subgid'),
      passwd: path.join(dir, 'passwd'),
      group: path.join(dir, 'group'),
      leaseDir: path.join(dir, 'leases'),
    };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const write = async (over: Partial<Record<'subuid' | 'subgid' | 'passwd' | 'group', string>>) => {
    await writeFile(files.subuid, over.subuid ?? '');
    await writeFile(files.subgid, over.subgid ?? '');
    await writeFile(files.passwd, over.passwd ?? 'root:x:0:0::/root:/bin/sh\n');
    await writeFile(files.group, over.group ?? 'root:x:0:\n');
  };

  test('the default range holds no account, group or subordinate range of this host', async () => {
    const r = await kilnIdRange();
    if (r.source === DEFAULT_ID_RANGE.source) assert.deepEqual(r, DEFAULT_ID_RANGE);
    assert.ok(r.uidStart + r.count - 1 < 2 ** 31, 'below 2^31');
    for (const f of ['/etc/passwd', '/etc/group']) {
      for (const line of (await readFile(f, 'utf8')).split('\n')) {
        const id = Number(line.split(':')[2]);
        assert.ok(!(id >= r.uidStart && id < r.uidStart + r.count), `${f}: ${line} is inside kiln's range`);
      }
    }
  });

  test('a kiln entry of /etc/subuid and /etc/subgid is used; other entries are skipped', async () => {
    await write({
      subuid: 'alice:100000:65536\nkiln:300000:200000\n',
      subgid: '# comment\nkiln:400000:131072\n',
    });
    const r = await kilnIdRange(files);
    assert.deepEqual(r, { uidStart: 300000, gidStart: 400000, count: 131072, source: files.subuid });
  });

  test('a range holding an account, a group or overlapping another range is refused naming it', async () => {
    await write({
      subuid: 'kiln:300000:65536\n',
      subgid: 'kiln:300000:65536\n',
      passwd: 'bob:x:300005:1::/:/bin/sh\n',
    });
    await assert.rejects(kilnIdRange(files), /contains account bob \(300005\)/);
    await write({ subuid: 'kiln:300000:65536\n', subgid: 'kiln:300000:65536\n', group: 'staff:x:365535:\n' });
    await assert.rejects(kilnIdRange(files), /gid range 300000-365535 .* contains group staff \(365535\)/);
    await write({ subuid: 'alice:300100:10\nkiln:300000:65536\n', subgid: 'kiln:300000:65536\n' });
    await assert.rejects(kilnIdRange(files), /overlaps alice's range on line 1/);
    await write({ subuid: 'kiln:300000:65536\n' });
    await assert.rejects(kilnIdRange(files), /has a kiln range but .*subgid has none/);
    await write({ subuid: 'kiln:300000:x\n', subgid: 'kiln:300000:65536\n' });
    await assert.rejects(kilnIdRange(files), /line 1: "kiln:300000:x" is not a valid kiln range/);
    // The default range against a passwd that has an account in it.
    await write({ passwd: `evil:x:${DEFAULT_ID_RANGE.uidStart + 7}:1::/:/bin/sh\n` });
    await assert.rejects(kilnIdRange(files), /kiln's default range\) contains account evil/);
  });

  describe('leases', { skip: !root && 'the lease directory must be root-owned' }, () => {
    const range = { uidStart: 500000, gidStart: 600000, count: 3 * BLOCK_SIZE, source: 'test' };

    test('concurrent leases get different ids; a released slot is reused first', async () => {
      const opts = { range, files };
      const a = await leaseHostIds(opts);
      const b = await leaseHostIds(opts);
      assert.deepEqual([a.uid, a.gid, b.uid, b.gid], [500000, 600000, 500001, 600001]);
      await a.release();
      const c = await leaseHostIds(opts);
      assert.equal(c.uid, 500000, 'lowest free slot: consecutive builds keep their ids');
      await b.release();
      await c.release();
      assert.deepEqual(await readdir(files.leaseDir), []);
    });

    test('blocks come after the slot block and are leased whole', async () => {
      const opts = { range, files };
      const a = await leaseIdBlock(65536, opts);
      const b = await leaseIdBlock(1000, opts);
      assert.deepEqual([a.uid, a.gid, a.count], [500000 + BLOCK_SIZE, 600000 + BLOCK_SIZE, 65536]);
      assert.equal(b.uid, 500000 + 2 * BLOCK_SIZE);
      await assert.rejects(leaseIdBlock(10, opts), /all 2 id blocks of kiln's id range are in use/);
      await a.release();
      await b.release();
      await assert.rejects(
        leaseIdBlock(10, { range: { ...range, count: BLOCK_SIZE }, files }),
        /needs at least/,
      );
    });

    test("a lease whose owner process was killed is taken over; a live owner's is not", async () => {
      // A real process leases slot 0 and stays alive until it is SIGKILLed.
      const script = `
        import { leaseHostIds } from ${JSON.stringify(path.join(path.dirname(fileURLToPath(import.meta.url)), 'identity.ts'))};
        const l = await leaseHostIds({ range: ${JSON.stringify(range)}, files: ${JSON.stringify(files)} });
        console.log(l.uid);
        setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const first = await new Promise<string>((resolve) =>
        child.stdout.once('data', (b: Buffer) => resolve(String(b).trim())),
      );
      assert.equal(first, '500000');
      const live = await leaseHostIds({ range, files });
      assert.equal(live.uid, 500001, 'a live owner keeps its slot');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const taken = await leaseHostIds({ range, files });
      assert.equal(taken.uid, 500000, "the dead owner's slot is taken over");
      await live.release();
      await taken.release();
    });
  });
});
