import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runMain } from '../../../test/helpers/cli.ts';
import { makeTestCa, type TestCa } from '../../../test/helpers/test-ca.ts';

let dir: string;
let file: string;
let ca: TestCa;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-cfgcli-'));
  file = path.join(dir, 'cfg', 'config.toml');
  ca = await makeTestCa();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await ca.cleanup();
});

function kiln(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runMain(argv, { KILN_CONFIG: file, HOME: dir });
}

describe('kiln config', () => {
  test('default-builder set, get, unset', async () => {
    assert.equal((await kiln('config', 'default-builder')).code, 1);
    assert.equal((await kiln('config', 'default-builder', 'reg.example.com/b:1')).code, 0);
    assert.equal((await kiln('config', 'default-builder')).out, 'reg.example.com/b:1\n');
    assert.match(await readFile(file, 'utf8'), /default-builder = "reg.example.com\/b:1"/);
    assert.equal((await kiln('config', 'default-builder', '--unset')).code, 0);
    assert.doesNotMatch(await readFile(file, 'utf8'), /default-builder/);
  });

  test('registry-mirrors add / list / remove', async () => {
    assert.equal(
      (await kiln('config', 'registry-mirrors', 'add', 'index.docker.io', '-m', 'mirror.local:5000')).code,
      0,
    );
    assert.equal((await kiln('config', 'registry-mirrors', 'add', '*', '--mirror', 'all.local')).code, 0);
    assert.equal(
      (await kiln('config', 'registry-mirrors', 'list')).out,
      'index.docker.io => mirror.local:5000\n* => all.local\n',
    );
    const bad = await kiln('config', 'registry-mirrors', 'add', 'a b', '-m', 'x');
    assert.equal(bad.code, 3);
    assert.match(bad.err, /registry "a b": expected a registry host/);
    assert.equal((await kiln('config', 'registry-mirrors', 'remove', '*')).code, 0);
    assert.equal(
      (await kiln('config', 'registry-mirrors', 'list')).out,
      'index.docker.io => mirror.local:5000\n',
    );
    assert.equal((await kiln('config', 'registry-mirrors', 'remove', 'ghcr.io')).code, 3);
  });

  test('insecure-registries add / list / remove; trusted-builders is refused with the reason', async () => {
    await kiln('config', 'insecure-registries', 'add', 'localhost:5000');
    await kiln('config', 'insecure-registries', 'add', 'localhost:5000'); // no duplicate
    assert.equal((await kiln('config', 'insecure-registries', 'list')).out, 'localhost:5000\n');
    assert.equal((await kiln('config', 'insecure-registries', 'add', 'http://x')).code, 3);
    await kiln('config', 'insecure-registries', 'remove', 'localhost:5000');
    assert.equal((await kiln('config', 'insecure-registries', 'list')).out, '');
    const trusted = await kiln('config', 'trusted-builders', 'add', 'reg.example.com/builders/bookworm');
    assert.equal(trusted.code, 3);
    assert.match(trusted.err, /kiln has no trusted builders: every builder's buildpacks run in the sandbox/);
  });

  test('trust-host-ca-certs and ca-certs (validated PEM, stored absolute)', async () => {
    // On by default (builds trust what the host trusts); false is written out and read back.
    assert.equal((await kiln('config', 'trust-host-ca-certs')).out, 'true\n');
    assert.equal((await kiln('config', 'trust-host-ca-certs', 'false')).code, 0);
    assert.equal((await kiln('config', 'trust-host-ca-certs')).out, 'false\n');
    assert.match(await readFile(file, 'utf8'), /^trust-host-ca-certs = false$/m);
    assert.equal((await kiln('config', 'trust-host-ca-certs', 'true')).code, 0);
    assert.equal((await kiln('config', 'trust-host-ca-certs')).out, 'true\n');
    assert.equal((await kiln('config', 'trust-host-ca-certs', 'yes')).code, 3);
    assert.equal((await kiln('config', 'ca-certs', 'add', ca.caFile)).code, 0);
    const notPem = path.join(dir, 'not.pem');
    await writeFile(notPem, 'nope');
    const r = await kiln('config', 'ca-certs', 'add', notPem);
    assert.equal(r.code, 3);
    assert.match(r.err, /not\.pem: no PEM certificate found/);
    assert.equal((await kiln('config', 'ca-certs', 'list')).out, `${ca.caFile}\n`);
  });

  test('show prints TOML or JSON; a broken file is reported with the key', async () => {
    await kiln('config', 'npm-registry', 'https://npm.example.com/');
    const toml = await kiln('config', 'show');
    assert.match(toml.out, /^# .*config\.toml\n/);
    assert.match(toml.out, /npm-registry = "https:\/\/npm.example.com\/"/);
    const json = JSON.parse((await kiln('config', 'show', '--json')).out);
    assert.equal(json.npmRegistry, 'https://npm.example.com/');
    assert.equal(json.trustHostCaCerts, true);
    assert.equal((await kiln('config', 'path')).out, `${file}\n`);
    await writeFile(file, 'trust-host-ca-certs = "maybe"\n');
    const broken = await kiln('config', 'show');
    assert.equal(broken.code, 3);
    assert.match(broken.err, /config\.toml: trust-host-ca-certs: /);
  });
});
