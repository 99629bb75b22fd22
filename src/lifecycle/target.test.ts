import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { resolveRunTarget, targetEnv, targetMatches } from './target.ts';

describe('targets', () => {
  const run = { os: 'linux', arch: 'amd64', distro: { name: 'debian', version: '12' } };

  test('targetMatches(): blank fields match; listed distros must match one', () => {
    assert.ok(targetMatches(run, {}));
    assert.ok(targetMatches(run, { os: 'linux' }));
    assert.ok(!targetMatches(run, { arch: 'arm64' }));
    assert.ok(targetMatches(run, { distros: [{ name: 'ubuntu' }, { name: 'debian', version: '12' }] }));
    assert.ok(!targetMatches(run, { distros: [{ name: 'debian', version: '11' }] }));
    assert.ok(targetMatches({ ...run, variant: 'v8' }, { variant: 'v8' }));
    assert.ok(!targetMatches({ os: 'linux', arch: 'amd64' }, { distros: [{ name: 'debian' }] }));
  });

  test('resolveRunTarget() fills a missing distro from the build rootfs os-release', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-target-'));
    try {
      await mkdir(join(dir, 'etc'));
      await writeFile(join(dir, 'etc/os-release'), 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n');
      const t = await resolveRunTarget({ os: 'linux', arch: 'arm64', 'arch-variant': 'v8' }, dir);
      assert.deepEqual(t, {
        os: 'linux',
        arch: 'arm64',
        variant: 'v8',
        distro: { name: 'debian', version: '12' },
      });
      assert.deepEqual(targetEnv(t), {
        CNB_TARGET_OS: 'linux',
        CNB_TARGET_ARCH: 'arm64',
        CNB_TARGET_ARCH_VARIANT: 'v8',
        CNB_TARGET_DISTRO_NAME: 'debian',
        CNB_TARGET_DISTRO_VERSION: '12',
      });
      const kept = await resolveRunTarget({ distro: { name: 'ubuntu', version: '24.04' } }, dir);
      assert.equal(kept.distro?.name, 'ubuntu');
      assert.equal(kept.os, 'linux');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
