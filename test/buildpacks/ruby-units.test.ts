import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { installedGems, installFailure } from '../../buildpacks/ruby/src/gems.ts';
import { webProcess } from '../../buildpacks/ruby/src/process.ts';
import { hasCompiler } from '../../buildpacks/ruby/src/ruby-dev.ts';
import { gemSource, mirrorUrl } from '../../buildpacks/ruby/src/source.ts';

// kiln/ruby's pure parts: the default process, the gem source settings, the SBOM of installed
// gems. The whole buildpack runs end to end in test/e2e/ruby-bundler.test.ts.

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-ruby-units-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function app(name: string, files: Record<string, string>): Promise<string> {
  const d = path.join(dir, name);
  await mkdir(d, { recursive: true });
  for (const [f, text] of Object.entries(files)) await writeFile(path.join(d, f), text);
  return d;
}

describe('webProcess', () => {
  test('Procfile: none (kiln/procfile owns it); config.ru: rackup; else app.rb with bundler/setup', async () => {
    const both = await app('procfile', { Gemfile: '', Procfile: 'web: x\n', 'config.ru': '' });
    assert.equal(await webProcess(both, '/r', '/b'), undefined);
    const rack = await app('rack', { Gemfile: '', 'config.ru': '', 'app.rb': '' });
    assert.deepEqual((await webProcess(rack, '/r', '/b'))?.process.command, [
      '/r',
      '/b',
      'exec',
      'rackup',
      '--host',
      '0.0.0.0',
      '--port',
      '8080',
      'config.ru',
    ]);
    const plain = await app('plain', { Gemfile: '', 'server.rb': '', 'main.rb': '' });
    assert.deepEqual((await webProcess(plain, '/r', '/b'))?.process.command, [
      '/r',
      '-rbundler/setup',
      'main.rb',
    ]);
    assert.equal(await webProcess(await app('none', { Gemfile: '' }), '/r', '/b'), undefined);
  });
});

describe('gem source', () => {
  test('mirror URLs: https or loopback http, never credentials', () => {
    assert.equal(mirrorUrl('BUNDLE_MIRROR__ALL', 'https://gems.example/'), 'https://gems.example/');
    assert.equal(mirrorUrl('BUNDLE_MIRROR__ALL', 'http://127.0.0.1:9/'), 'http://127.0.0.1:9/');
    assert.throws(() => mirrorUrl('BUNDLE_MIRROR__ALL', 'http://gems.example/'), /must be an https URL/);
    assert.throws(
      () => mirrorUrl('BUNDLE_MIRROR__ALL', 'https://u:p@gems.example/'),
      /must not carry credentials/,
    );
    assert.throws(() => mirrorUrl('BUNDLE_MIRROR__ALL', 'not a url'), /is not a URL/);
  });

  test('a bundler binding wins and only its digest (not its contents) is kept; two are refused', async () => {
    const root = path.join(dir, 'bindings');
    await mkdir(path.join(root, 'one'), { recursive: true });
    await writeFile(path.join(root, 'one', 'type'), 'bundler');
    await writeFile(path.join(root, 'one', 'config'), '---\nBUNDLE_GEMS__EXAMPLE: "u:secret"\n');
    const env = { SERVICE_BINDING_ROOT: root, BUNDLE_MIRROR__ALL: 'https://m.example/' };
    const s = await gemSource(env, '/platform');
    assert.deepEqual(s.env, { BUNDLE_USER_CONFIG: path.join(root, 'one', 'config') });
    assert.doesNotMatch(JSON.stringify(s), /secret/);
    const without = await gemSource({ BUNDLE_MIRROR__ALL: 'https://m.example/' }, '/platform');
    assert.notEqual(without.digest, s.digest);
    assert.match(without.describe, /https:\/\/m\.example\/ \(BUNDLE_MIRROR__ALL\)/);
    await mkdir(path.join(root, 'two'));
    await writeFile(path.join(root, 'two', 'type'), 'bundle-config');
    await assert.rejects(gemSource(env, '/platform'), /2 bindings of type bundler \(one, two\); give one/);
  });
});

describe('installedGems', () => {
  test('reads specifications/*.gemspec into pkg:gem components', async () => {
    const specs = path.join(dir, 'gems', 'specifications');
    await mkdir(specs, { recursive: true });
    await writeFile(
      path.join(specs, 'webrick-1.8.1.gemspec'),
      'Gem::Specification.new do |s|\n  s.name = "webrick".freeze\n  s.version = "1.8.1"\n  s.licenses = ["Ruby".freeze, "BSD-2-Clause".freeze]\nend\n',
    );
    await writeFile(
      path.join(specs, 'nokogiri-1.16.0-x86_64-linux.gemspec'),
      'Gem::Specification.new do |s|\n  s.name = "nokogiri".freeze\n  s.version = "1.16.0"\n  s.platform = "x86_64-linux".freeze\nend\n',
    );
    assert.deepEqual(
      (await installedGems(path.join(dir, 'gems'))).map((c) => [c.purl, c.license]),
      [
        ['pkg:gem/nokogiri@1.16.0?platform=x86_64-linux', undefined],
        ['pkg:gem/webrick@1.8.1', 'Ruby OR BSD-2-Clause'],
      ],
    );
  });
});

describe('native extensions', () => {
  test('without cc a native extension failure says so in one line; otherwise bundler said it all', async () => {
    const tail = 'Gem::Ext::BuildError: ERROR: Failed to build gem native extension.\n';
    assert.match(
      installFailure(tail, false).message,
      /a gem has a native extension and the build image has no C compiler/,
    );
    assert.equal(
      installFailure(tail, true).message,
      'kiln/ruby failed at step "bundle install": see bundler\'s error above',
    );
    assert.equal(await hasCompiler({ PATH: path.join(dir, 'nothing-here') }), false);
    const bin = path.join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    for (const t of ['cc', 'make']) await writeFile(path.join(bin, t), '', { mode: 0o755 });
    assert.equal(await hasCompiler({ PATH: bin }), true);
  });
});
