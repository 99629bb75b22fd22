// The build image of kiln's bookworm stack: a configured Debian userland that buildpacks use as
// the cnb user (uid 1000), with the CNB build image metadata.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { parseDeb822 } from '../../src/debian/deb822.ts';
import { bwrapAsUid1000 } from '../helpers/sandbox-rootfs.ts';
import { cyclonedxValidator, validateSpdx } from '../helpers/sbom-schemas.ts';
import { ensureTestStack, type TestStack } from '../helpers/stack.ts';

let stack: TestStack;
let rootfs = '';
const canRunSandbox = spawnSync('bwrap', ['--version']).status === 0 && process.getuid?.() === 0;

before(async () => {
  stack = await ensureTestStack({ roles: ['build'] });
  rootfs = await stack.rootfs('build');
});

/** asCnb runs a bash script in the build image as uid 1000 inside bubblewrap, no network. */
function asCnb(script: string) {
  return bwrapAsUid1000(
    rootfs,
    [
      '--clearenv',
      '--setenv',
      'PATH',
      '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--setenv',
      'HOME',
      '/home/cnb',
    ],
    ['/bin/bash', '-c', script],
    120_000,
  );
}

describe('build image', () => {
  test('config: user 1000:1000, CNB_USER_ID/CNB_GROUP_ID, base labels, not rebasable-labelled', async () => {
    const cfg = await (await stack.image('build')).configFile();
    assert.equal(cfg.config?.User, '1000:1000');
    const env = cfg.config?.Env ?? [];
    assert.ok(env.includes('CNB_USER_ID=1000'));
    assert.ok(env.includes('CNB_GROUP_ID=1000'));
    assert.ok(env.includes('CNB_STACK_ID=io.kiln.stacks.bookworm'));
    const l = cfg.config?.Labels ?? {};
    assert.equal(l['io.buildpacks.base.id'], 'io.kiln.stacks.bookworm');
    assert.equal(l['io.buildpacks.base.distro.name'], 'debian');
    assert.equal(l['io.buildpacks.base.distro.version'], '12');
    assert.equal(l['io.buildpacks.rebasable'], undefined);
  });

  test('the toolchain works as uid 1000: bash -c, cc, node, git, python3', {
    skip: !canRunSandbox && 'needs root and bubblewrap',
  }, () => {
    const r = asCnb(
      [
        'set -e',
        'echo "user=$(id -un) uid=$(id -u) home=$HOME"',
        'cc --version | head -1',
        'node --version',
        'git --version',
        'python3 --version',
        'printf "#include <stdio.h>\\nint main(void){puts(\\"compiled\\");return 0;}\\n" > /tmp/a.c',
        'cc -O2 -o /tmp/a /tmp/a.c && /tmp/a',
        'printf "int main(){return 0;}" > /tmp/b.cc && c++ -o /tmp/b /tmp/b.cc && /tmp/b && echo cxx-ok',
        'python3 -c "import ssl, sqlite3, json; print(\'py-ok\')"',
        "node -e \"console.log(require('crypto').getHashes().length > 0 ? 'node-ok' : '')\"",
        'test -d "$HOME" && echo home-exists',
        'make --version | head -1',
        'tar --version | head -1; xz --version | head -1; gzip --version | head -1',
      ].join('\n'),
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const out = r.stdout;
    assert.match(out, /^user=cnb uid=1000 home=\/home\/cnb$/m);
    assert.match(out, /^cc \(Debian 12\./m);
    assert.match(out, /^v18\./m);
    assert.match(out, /^git version 2\./m);
    assert.match(out, /^Python 3\.11\./m);
    for (const w of [
      'compiled',
      'cxx-ok',
      'py-ok',
      'node-ok',
      'home-exists',
      'GNU Make',
      'GNU tar',
      'xz (XZ Utils)',
      'gzip',
    ]) {
      assert.ok(out.includes(w), `missing ${w} in\n${out}`);
    }
  });

  test('every package is configured in the dpkg database, and the SBOM lists exactly them', async () => {
    const status = parseDeb822(await readFile(path.join(rootfs, 'var/lib/dpkg/status'), 'utf8'));
    const bad = status
      .filter((p) => p.get('status') !== 'install ok installed')
      .map((p) => `${p.get('package')}: ${p.get('status')}`);
    assert.deepEqual(bad, []);
    const names = status.map((p) => p.get('package')!).sort();
    assert.deepEqual(names, stack.lock.build.packages.map((p) => p.name).sort());
    const cdx = JSON.parse(await readFile(path.join(stack.sbomDir, 'build.sbom.cdx.json'), 'utf8'));
    const spdx = JSON.parse(await readFile(path.join(stack.sbomDir, 'build.sbom.spdx.json'), 'utf8'));
    assert.deepEqual(cyclonedxValidator()(cdx), []);
    assert.deepEqual(validateSpdx(spdx), []);
    assert.deepEqual((cdx.components as { name: string }[]).map((c) => c.name).sort(), names);
  });

  test('dpkg itself agrees: nothing half-installed (dpkg --audit as uid 1000)', {
    skip: !canRunSandbox && 'needs root and bubblewrap',
  }, () => {
    const r = asCnb(`dpkg --audit && dpkg-query -W -f='\${Package}\\n' | wc -l`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(Number(r.stdout.trim()), stack.lock.build.packages.length);
  });

  test('the cnb user and home belong to uid 1000 in the layer; the rest to root', async () => {
    const passwd = await readFile(path.join(rootfs, 'etc/passwd'), 'utf8');
    assert.match(passwd, /^cnb:x:1000:1000:cnb:\/home\/cnb:\/bin\/bash$/m);
    assert.match(await readFile(path.join(rootfs, 'etc/group'), 'utf8'), /^cnb:x:1000:$/m);
  });
});
