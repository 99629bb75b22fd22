import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../internal/errors.ts';
import { parseStackConfig, readStackConfig, userOf } from './config.ts';
import { diffLocks, formatLock, inputsDigest, parseLock, type StackLock } from './lock.ts';

const BOOKWORM = fileURLToPath(new URL('../../stacks/bookworm/stack.toml', import.meta.url));

const minimal = `
id = "x"
[distro]
name = "debian"
version = "12"
[archive]
arch = "amd64"
suites = ["bookworm"]
[user]
name = "cnb"
uid = 1000
gid = 1000
[run]
name = "r"
packages = ["libc6"]
[build]
name = "b"
packages = ["bash"]
`;

describe('stack config', () => {
  test('the shipped bookworm stack parses, with the security suite last', async () => {
    const c = await readStackConfig(BOOKWORM);
    assert.equal(c.id, 'io.kiln.stacks.bookworm');
    assert.equal(c.archive.suites.at(-1), 'bookworm-security');
    assert.deepEqual(c.user, { name: 'cnb', uid: 1000, gid: 1000 });
    // The run user: another uid in the build user's group (CNB platform spec, Paketo's stacks).
    assert.deepEqual(c['run-user'], { name: 'cnb', uid: 1001, gid: 1000 });
    assert.deepEqual(userOf(c, 'run'), { name: 'cnb', uid: 1001, gid: 1000 });
    assert.deepEqual(userOf(c, 'build'), c.user);
    assert.ok(c.run.exclude.includes('dpkg'));
    assert.equal(c.build.essential, true);
  });

  test('defaults fill components, keyring, exclude and compression', () => {
    const c = parseStackConfig(minimal, 's.toml');
    assert.deepEqual(c.archive.components, ['main']);
    assert.equal(c.archive.keyring, '/usr/share/keyrings/debian-archive-keyring.gpg');
    assert.deepEqual(c.run.exclude, []);
    assert.equal(c.run.compression, 'gzip');
  });

  test('without [run-user] the run image uses the build user', () => {
    const c = parseStackConfig(minimal, 's.toml');
    assert.equal(c['run-user'], undefined);
    assert.deepEqual(userOf(c, 'run'), c.user);
  });

  test('the run user is checked like the build user: never root, a plain name', () => {
    const check = (table: string, re: RegExp) =>
      assert.throws(
        () => parseStackConfig(`${minimal}[run-user]\n${table}`, 's.toml'),
        (e: Error) => e instanceof KilnError && re.test(e.message),
      );
    check('name = "cnb"\nuid = 0\ngid = 1000\n', /key "run-user\.uid": /);
    check('name = "cnb"\nuid = 1001\ngid = 0\n', /key "run-user\.gid": /);
    check('name = "../x"\nuid = 1001\ngid = 1000\n', /key "run-user\.name": expected a lower-case user name/);
    check('name = "cnb"\nuid = 1001\ngid = 1000\nshell = "/bin/sh"\n', /unknown key\(s\) shell/);
    const ok = parseStackConfig(`${minimal}[run-user]\nname = "app"\nuid = 2000\ngid = 1000\n`, 's.toml');
    assert.deepEqual(userOf(ok, 'run'), { name: 'app', uid: 2000, gid: 1000 });
  });

  test('errors name the file and the key', () => {
    const check = (text: string, re: RegExp) =>
      assert.throws(
        () => parseStackConfig(text, 's.toml'),
        (e: Error) => e instanceof KilnError && re.test(e.message),
      );
    check(minimal.replace('uid = 1000', 'uid = "x"'), /^invalid stack file s\.toml: key "user\.uid": /);
    check(
      minimal.replace('packages = ["libc6"]', 'packages = ["Bad Name"]'),
      /key "run\.packages\.0": expected a Debian package name/,
    );
    check(`${minimal}\n[extra]\nx = 1\n`, /key "\(document\)": unknown key\(s\) extra/);
    check('id = ', /^invalid stack file s\.toml: /);
    check(minimal.replace('[build]\nname = "b"\npackages = ["bash"]\n', ''), /key "build": /);
  });
});

const pkg = (name: string, version: string) => ({
  name,
  version,
  arch: 'amd64',
  source: name,
  suite: 'bookworm',
  filename: `pool/${name}.deb`,
  size: 1,
  sha256: 'c'.repeat(64),
});

describe('stack lock', () => {
  test('round-trips through TOML, sorted by name', () => {
    const lock: StackLock = {
      version: 1,
      inputs: 'sha256:x',
      run: { packages: [pkg('zlib1g', '1'), pkg('libc6', '2.36')] },
      build: { packages: [pkg('bash', '5')] },
    };
    const text = formatLock(lock);
    const back = parseLock(text, 'stack.lock');
    assert.deepEqual(
      back.run.packages.map((p) => p.name),
      ['libc6', 'zlib1g'],
    );
    assert.equal(formatLock(back), text);
    assert.throws(
      () => parseLock(text.replace(/sha256 = "c+"/, 'sha256 = "nothex"'), 'stack.lock'),
      /key "run\.packages\.0\.sha256"/,
    );
  });

  test('inputsDigest changes with the package lists and suites, not with labels or mirrors', () => {
    const a = parseStackConfig(minimal, 's');
    const b = parseStackConfig(`${minimal.replace('[run]', '[labels]\n"x" = "y"\n[run]')}`, 's');
    assert.equal(inputsDigest(a), inputsDigest(b));
    const c = parseStackConfig(minimal.replace('["libc6"]', '["libc6", "tzdata"]'), 's');
    assert.notEqual(inputsDigest(a), inputsDigest(c));
  });

  test('diffLocks reports added, removed, upgraded and downgraded packages', () => {
    const before: StackLock = {
      version: 1,
      inputs: 'i',
      run: { packages: [pkg('a', '1'), pkg('b', '2'), pkg('d', '2')] },
      build: { packages: [] },
    };
    const after: StackLock = {
      version: 1,
      inputs: 'i',
      run: { packages: [pkg('a', '1+deb12u1'), pkg('c', '1'), pkg('d', '1')] },
      build: { packages: [] },
    };
    assert.deepEqual(diffLocks(before, after), [
      { image: 'run', kind: 'upgraded', name: 'a', from: '1', to: '1+deb12u1' },
      { image: 'run', kind: 'removed', name: 'b', from: '2' },
      { image: 'run', kind: 'added', name: 'c', to: '1' },
      { image: 'run', kind: 'downgraded', name: 'd', from: '2', to: '1' },
    ]);
  });
});
