import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { installedGems, installFailure } from '../../buildpacks/ruby/src/gems.ts';
import { webProcess } from '../../buildpacks/ruby/src/process.ts';
import { hasCompiler } from '../../buildpacks/ruby/src/ruby-dev.ts';
import { rewriteRubyShebangs, rubyShebang } from '../../buildpacks/ruby/src/shebang.ts';
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
    assert.equal(await webProcess(both, '/r', '/l.rb'), undefined);
    const rack = await app('rack', { Gemfile: '', 'config.ru': '', 'app.rb': '' });
    const web = await webProcess(rack, '/r', '/l.rb');
    assert.deepEqual(web?.process.command, ['/r', '/l.rb']);
    assert.equal(web?.rack, true);
    const plain = await app('plain', { Gemfile: '', 'server.rb': '', 'main.rb': '' });
    assert.deepEqual((await webProcess(plain, '/r', '/l.rb'))?.process.command, [
      '/r',
      '-rbundler/setup',
      'main.rb',
    ]);
    assert.equal(await webProcess(await app('none', { Gemfile: '' }), '/r', '/l.rb'), undefined);
  });
});

describe('ruby shebangs', () => {
  const R = '/layers/kiln_ruby/ruby/usr/bin/ruby3.1';
  test('lines that start Ruby name the layer interpreter; others are left alone', () => {
    assert.equal(rubyShebang('#!/usr/bin/ruby', R), `#!${R}`);
    assert.equal(rubyShebang('#!/usr/bin/ruby3.1 -w', R), `#!${R} -w`);
    assert.equal(rubyShebang('#!/usr/bin/env ruby', R), `#!${R}`);
    assert.equal(rubyShebang('#! /usr/bin/env ruby3.1 ', R), `#!${R}`);
    assert.equal(rubyShebang('#!/tmp/build/ruby/usr/bin/ruby3.1', R), `#!${R}`);
    assert.equal(rubyShebang(`#!${R}`, R), undefined, 'already rewritten');
    for (const other of [
      '#!/bin/sh',
      '#!/usr/bin/env python3',
      '#!/usr/bin/rubyish',
      '# ruby',
      '#!/usr/bin/env',
    ])
      assert.equal(rubyShebang(other, R), undefined, other);
  });

  test('rewrites regular Ruby scripts of a bin dir in place, keeps modes, follows no link', async () => {
    const bin = path.join(dir, 'shebang-bin');
    await mkdir(bin, { recursive: true });
    const outside = path.join(dir, 'outside.rb');
    await writeFile(outside, '#!/usr/bin/ruby\nputs 1\n');
    await writeFile(path.join(bin, 'bundle'), '#!/usr/bin/ruby\nload "x"\n', { mode: 0o755 });
    await writeFile(path.join(bin, 'rackup'), '#!/usr/bin/env ruby\n', { mode: 0o750 });
    await writeFile(path.join(bin, 'tool'), '#!/bin/sh\necho\n', { mode: 0o755 });
    await symlink(outside, path.join(bin, 'linked'));
    assert.equal(await rewriteRubyShebangs([bin, path.join(dir, 'no-such-dir')], R), 2);
    assert.equal(await readFile(path.join(bin, 'bundle'), 'utf8'), `#!${R}\nload "x"\n`);
    assert.equal(await readFile(path.join(bin, 'rackup'), 'utf8'), `#!${R}\n`);
    assert.equal((await stat(path.join(bin, 'rackup'))).mode & 0o777, 0o750);
    assert.equal(await readFile(path.join(bin, 'tool'), 'utf8'), '#!/bin/sh\necho\n');
    assert.equal(
      await readFile(outside, 'utf8'),
      '#!/usr/bin/ruby\nputs 1\n',
      'the link target is untouched',
    );
    assert.equal(await rewriteRubyShebangs([bin], R), 0, 'idempotent');
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
