import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { debianArchiveEnv } from './debian-archive.ts';

describe('debianArchiveEnv()', () => {
  let dir: string;
  let rootfs: string;
  let keyring: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-debian-archive-'));
    rootfs = path.join(dir, 'rootfs');
    await mkdir(path.join(rootfs, 'etc'), { recursive: true });
    await writeFile(
      path.join(rootfs, 'etc/os-release'),
      'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n',
    );
    keyring = path.join(dir, 'keyring.gpg');
    await writeFile(keyring, 'KEYS');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("passes the build image's suites with their mirrors and copies the keyring into the platform dir", async () => {
    const platform = path.join(dir, 'platform');
    const apt = new Map([
      ['bookworm', 'http://deb.example/debian'],
      ['bookworm-updates', 'http://deb.example/debian'],
      ['bookworm-security', 'http://deb.example/debian-security'],
    ]);
    const { env } = await debianArchiveEnv(
      { aptMirror: (s) => apt.get(s), keyring },
      rootfs,
      platform,
      '/platform',
    );
    assert.deepEqual(env, {
      KILN_DEBIAN_SUITES:
        'bookworm=http://deb.example/debian bookworm-updates=http://deb.example/debian bookworm-security=http://deb.example/debian-security',
      KILN_DEBIAN_COMPONENTS: 'main',
      KILN_DEBIAN_ARCH: 'amd64',
      KILN_DEBIAN_KEYRING: '/platform/kiln/debian-archive-keyring.gpg',
    });
    assert.equal(await readFile(path.join(platform, 'kiln/debian-archive-keyring.gpg'), 'utf8'), 'KEYS');
    assert.equal((await stat(path.join(platform, 'kiln/debian-archive-keyring.gpg'))).mode & 0o777, 0o644);
  });

  test('mirror overrides win over apt sources; a missing -updates suite is left out', async () => {
    const { env } = await debianArchiveEnv(
      { mirror: 'http://m/debian', securityMirror: 'http://s/sec', aptMirror: () => undefined, keyring },
      rootfs,
      path.join(dir, 'p2'),
      '/platform',
    );
    assert.equal(
      env.KILN_DEBIAN_SUITES,
      'bookworm=http://m/debian bookworm-updates=http://m/debian bookworm-security=http://s/sec',
    );
    const none = await debianArchiveEnv(
      { aptMirror: () => undefined, keyring },
      rootfs,
      path.join(dir, 'p3'),
      '/p',
    );
    assert.deepEqual(none.env, {});
    assert.match(none.why ?? '', /no Debian mirror serves bookworm/);
  });

  test('no keyring or no release name: nothing is passed, with the reason', async () => {
    const r = await debianArchiveEnv(
      { mirror: 'http://m/d', aptMirror: () => undefined, keyring: path.join(dir, 'absent.gpg') },
      rootfs,
      path.join(dir, 'p4'),
      '/platform',
    );
    assert.deepEqual(r.env, {});
    assert.match(r.why ?? '', /keyring .*absent\.gpg not found/);
    const bare = path.join(dir, 'bare');
    await mkdir(bare);
    const r2 = await debianArchiveEnv(
      { mirror: 'http://m/d', aptMirror: () => undefined, keyring },
      bare,
      path.join(dir, 'p5'),
      '/p',
    );
    assert.match(r2.why ?? '', /names no Debian release/);
  });
});
