import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  configFilePath,
  emptyConfig,
  loadConfig,
  loadConfigSync,
  mirrorFor,
  parseConfig,
  saveConfig,
  updateConfig,
} from './config-file.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('configFilePath()', () => {
  test('KILN_CONFIG wins, else config.toml in the config dir', () => {
    assert.equal(configFilePath({ KILN_CONFIG: '/x/k.toml' }, '/home/u/.config/kiln'), '/x/k.toml');
    assert.equal(
      configFilePath({ KILN_CONFIG: '' }, '/home/u/.config/kiln'),
      '/home/u/.config/kiln/config.toml',
    );
    assert.equal(configFilePath({}, '/c'), '/c/config.toml');
  });
});

describe('parseConfig()', () => {
  test('reads every key', () => {
    const c = parseConfig(
      `default-builder = "reg.example.com/b:1"
insecure-registries = ["localhost:5000", "[::1]:5000"]
trusted-builders = ["reg.example.com/b"]
trust-host-ca-certs = true
ca-certs = ["/etc/corp.pem"]
npm-registry = "https://npm.example.com/"
debian-mirror = "http://deb.example.com/debian"
future-key = { a = 1 }
[[registry-mirrors]]
registry = "index.docker.io"
mirror = "mirror.example.com:5000"
[[registry-mirrors]]
registry = "*"
mirror = "catchall.example.com"
`,
      '/c.toml',
    );
    assert.equal(c.defaultBuilder, 'reg.example.com/b:1');
    assert.deepEqual(c.insecureRegistries, ['localhost:5000', '[::1]:5000']);
    assert.equal(c.trustHostCaCerts, true);
    assert.deepEqual(c.caCerts, ['/etc/corp.pem']);
    assert.equal(c.npmRegistry, 'https://npm.example.com/');
    assert.equal(c.debianMirror, 'http://deb.example.com/debian');
    assert.equal(mirrorFor(c, 'index.docker.io'), 'mirror.example.com:5000');
    assert.equal(mirrorFor(c, 'ghcr.io'), 'catchall.example.com');
    // trusted-builders (pack's) means nothing to kiln: kept in the file as an unknown key.
    assert.deepEqual(Object.keys(c.extra), ['trusted-builders', 'future-key']);
  });

  test("reads pack's table spelling of registry-mirrors", () => {
    const c = parseConfig('[registry-mirrors]\n"index.docker.io" = "m.example.com"\n', '/c.toml');
    assert.deepEqual(c.registryMirrors, [{ registry: 'index.docker.io', mirror: 'm.example.com' }]);
  });

  for (const [text, pattern] of [
    ['trust-host-ca-certs = "yes"', /\/c\.toml: trust-host-ca-certs: .*boolean/],
    ['insecure-registries = ["not a host"]', /\/c\.toml: insecure-registries\[0\]: expected a registry host/],
    ['[[registry-mirrors]]\nregistry = "a.io"', /\/c\.toml: registry-mirrors/],
    ['npm-registry = "ftp://x"', /\/c\.toml: npm-registry: expected an http\(s\) URL/],
    ['default-builder = ', /\/c\.toml: invalid TOML/],
  ] as const) {
    test(`rejects ${JSON.stringify(text)} naming the key`, () => {
      assert.throws(() => parseConfig(text, '/c.toml'), pattern);
    });
  }
});

describe('loadConfig() / saveConfig() / updateConfig()', () => {
  test('a missing file is the empty config', async () => {
    assert.deepEqual(await loadConfig(path.join(dir, 'none.toml')), emptyConfig());
  });

  test('host CA trust is on by default; false is written and read back', async () => {
    assert.equal(emptyConfig().trustHostCaCerts, true);
    assert.equal(parseConfig('', '/c.toml').trustHostCaCerts, true);
    const file = path.join(dir, 'trust', 'config.toml');
    await saveConfig(file, { ...emptyConfig(), trustHostCaCerts: false });
    assert.equal(await readFile(file, 'utf8'), 'trust-host-ca-certs = false\n');
    assert.equal((await loadConfig(file)).trustHostCaCerts, false);
  });

  test('the same text is parsed once per file (a frozen, shared value); a change is read', async () => {
    const file = path.join(dir, 'memo', 'config.toml');
    await saveConfig(file, { ...emptyConfig(), defaultBuilder: 'a/b', caCerts: ['/x.pem'] });
    const first = await loadConfig(file);
    assert.equal(await loadConfig(file), first);
    assert.equal(loadConfigSync(file), first);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.caCerts));
    const other = path.join(dir, 'memo', 'other.toml');
    await saveConfig(other, { ...emptyConfig(), defaultBuilder: 'a/b', caCerts: ['/x.pem'] });
    assert.notEqual(await loadConfig(other), first, 'another file is parsed (its errors name it)');
    await updateConfig(file, (c) => ({ ...c, defaultBuilder: 'c/d' }));
    assert.equal((await loadConfig(file)).defaultBuilder, 'c/d');
  });

  test('round-trips, keeps unknown keys and leaves no temp file', async () => {
    const file = path.join(dir, 'sub', 'config.toml');
    await saveConfig(file, {
      ...emptyConfig(),
      defaultBuilder: 'b:1',
      registryMirrors: [{ registry: 'index.docker.io', mirror: 'm:5000' }],
      trustHostCaCerts: true,
      extra: { 'x-other': 'kept' },
    });
    const text = await readFile(file, 'utf8');
    assert.match(text, /default-builder = "b:1"/);
    assert.match(text, /\[\[registry-mirrors\]\]/);
    const back = await loadConfig(file);
    assert.equal(back.defaultBuilder, 'b:1');
    assert.equal(back.trustHostCaCerts, true);
    assert.deepEqual(back.extra, { 'x-other': 'kept' });
    await updateConfig(file, (c) => ({ ...c, insecureRegistries: [...c.insecureRegistries, 'b:5000'] }));
    assert.deepEqual((await loadConfig(file)).insecureRegistries, ['b:5000']);
    assert.deepEqual(await readdir(path.dirname(file)), ['config.toml']);
  });

  test('refuses to write an invalid value and leaves the file untouched', async () => {
    const file = path.join(dir, 'guard.toml');
    await writeFile(file, 'default-builder = "ok"\n');
    await assert.rejects(
      updateConfig(file, (c) => ({ ...c, insecureRegistries: ['bad host'] })),
      /insecure-registries\[0\]/,
    );
    assert.equal(await readFile(file, 'utf8'), 'default-builder = "ok"\n');
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith('.guard')),
      [],
    );
  });
});
