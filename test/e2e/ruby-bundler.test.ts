import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  debianRack,
  debianWebrick,
  type GemServer,
  gemAvailable,
  startGemServer,
} from '../helpers/gem-server.ts';
import type { Podman } from '../helpers/podman.ts';
import { assertRunUserNoShell, imageFiles, serveAndGet } from './lang-harness.ts';
import { copySample, freePort, kiln, kilnOk, layerShas, podmanOnKilnStore } from './samples-harness.ts';

// kiln/ruby through `kiln build`: Debian's Ruby and bundler (from the stack's archive) shipped as
// a layer, the Gemfile's gems installed by bundler into a gems launch layer from a gem source this
// test runs on 127.0.0.1 (`gem build` + `gem generate_index`, served over HTTP). The webrick gem
// and rack gems are built from the files of Debian's ruby-webrick and ruby-rack on this host
// (scripts/bootstrap.sh installs them); the images run under podman on the shell-free run image
// (no /bin/sh, no /usr/bin/ruby, no /usr/bin/env) as the run user.

const IMAGE = 'kiln-e2e-ruby';
const ANSWER = /^Hello from kiln: ruby-app \(Ruby 3\.\d+\.\d+, WEBrick 1\.8\.1\)\n$/;
const COLORWORD = {
  name: 'colorword',
  version: '0.2',
  files: { 'colorword.rb': 'module Colorword\n  WORD = "blue"\nend\n' },
};
const SECRET = 'kiln-ruby-s3cret-token';
// A gem with a C extension, compiled during the build (the build image has build-essential; Ruby's
// headers come from a build-only layer) and loaded from the gems layer at run time.
const NATIVE = {
  name: 'nativeword',
  version: '1.0',
  files: { 'nativeword.rb': 'require "nativeword/nativeword"\n' },
  ext: {
    'nativeword/extconf.rb': 'require "mkmf"\ncreate_makefile("nativeword/nativeword")\n',
    'nativeword/nativeword.c': [
      '#include <ruby.h>',
      'static VALUE word(VALUE self) { return rb_str_new_cstr("compiled"); }',
      'void Init_nativeword(void) {',
      '  rb_define_module_function(rb_define_module("Nativeword"), "word", word, 0);',
      '}',
      '',
    ].join('\n'),
  },
};

const skip =
  !(await gemAvailable()) || !(await debianWebrick()) || !(await debianRack())
    ? 'gem, ruby-webrick and ruby-rack are not installed (scripts/bootstrap.sh installs them)'
    : false;

let podman: Podman;
let store: string;
let server: GemServer;
let sample: { dir: string; cleanup: () => Promise<void> };
let scratch: string;

before(async () => {
  if (skip) return;
  ({ podman, store } = await podmanOnKilnStore());
  server = await startGemServer([(await debianWebrick())!, (await debianRack())!, COLORWORD, NATIVE]);
  sample = await copySample('ruby-app');
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-ruby-'));
});
after(async () => {
  await server?.close();
  await podman?.cleanup();
  await sample?.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const withMirror = (image: string, dir: string) => [
  'build',
  image,
  '--path',
  dir,
  '--env',
  `BUNDLE_MIRROR__ALL=${server.url}`,
  '--allow-host',
  `127.0.0.1:${server.port}`,
];

describe('kiln/ruby with bundler', { skip }, () => {
  test('the ruby-app sample: Debian Ruby, its gem from the local source, pkg:gem in the SBOM', async () => {
    const res = await kilnOk(['-v', ...withMirror(IMAGE, sample.dir)]);
    const out = res.stdout + res.stderr;
    assert.match(out, /launch check: passed/);
    assert.match(
      out,
      /bundle install \(Debian bundler 2\.\d+\.\d+\) from http:\/\/127\.0\.0\.1:\d+\/ \(BUNDLE_MIRROR__ALL\)/,
    );
    assert.match(out, /Installing webrick 1\.8\.1/);
    // Resolution and download went through this test's server.
    assert.ok(server.requests.includes('/specs.4.8.gz'), server.requests.join(' '));
    assert.ok(server.requests.includes('/gems/webrick-1.8.1.gem'), server.requests.join(' '));
    assert.match(await serveAndGet(podman, store, IMAGE, await freePort()), ANSWER);
    await assertRunUserNoShell(podman, store, IMAGE);
    const files = await imageFiles(IMAGE);
    const paths = [...files.keys()];
    assert.ok(
      paths.some((p) =>
        /^layers\/kiln_ruby\/gems\/ruby\/3\.\d+\.0\/gems\/webrick-1\.8\.1\/lib\/webrick\.rb$/.test(p),
      ),
    );
    assert.ok(
      paths.some((p) => /^layers\/kiln_ruby\/ruby\/usr\/bin\/ruby3\.\d+$/.test(p)),
      'the interpreter',
    );
    assert.deepEqual(
      paths.filter((p) =>
        /kiln_ruby\/(bundle-home|ruby-debs)|\/cache\/[^/]+\.gem$|vendor_ruby\/webrick/.test(p),
      ),
      [],
      'no bundler state, .deb cache, .gem copies or Debian webrick in the image',
    );
    const sbom = files.get('layers/sbom/launch/kiln_ruby/gems/sbom.cdx.json') ?? '';
    assert.match(sbom, /"purl": ?"pkg:gem\/webrick@1\.8\.1"/);
    assert.match(
      files.get('layers/sbom/launch/kiln_ruby/ruby/sbom.cdx.json') ?? '',
      /pkg:deb\/debian\/ruby3\.\d+@/,
    );
  });

  test('the gems layer is reused on a source-only rebuild and rebuilt when Gemfile.lock changes', async () => {
    const before = (await layerShas(IMAGE)).layers.get('kiln/ruby:gems');
    assert.ok(before);
    const app = path.join(sample.dir, 'app.rb');
    await writeFile(app, (await readFile(app, 'utf8')).replace('Hello from kiln', 'Hello again from kiln'));
    server.requests.length = 0;
    const same = await kilnOk(withMirror(IMAGE, sample.dir));
    assert.match(same.stdout + same.stderr, /reusing the gems layer \(Gemfile\.lock unchanged\)/);
    assert.equal((await layerShas(IMAGE)).layers.get('kiln/ruby:gems'), before);
    assert.deepEqual(server.requests, [], 'no request to the gem source');

    await writeFile(
      path.join(sample.dir, 'Gemfile'),
      'source "https://rubygems.org"\n\ngem "webrick", "~> 1.8"\ngem "colorword", "0.2"\n',
    );
    const lock = await readFile(path.join(sample.dir, 'Gemfile.lock'), 'utf8');
    await writeFile(
      path.join(sample.dir, 'Gemfile.lock'),
      lock
        .replace('    webrick (1.8.1)\n', '    colorword (0.2)\n    webrick (1.8.1)\n')
        .replace('  webrick (~> 1.8)\n', '  colorword (= 0.2)\n  webrick (~> 1.8)\n'),
    );
    const changed = await kilnOk(withMirror(IMAGE, sample.dir));
    assert.match(changed.stdout + changed.stderr, /Installing colorword 0\.2/);
    assert.notEqual((await layerShas(IMAGE)).layers.get('kiln/ruby:gems'), before);
    assert.match(
      await serveAndGet(podman, store, IMAGE, await freePort()),
      /^Hello again from kiln: ruby-app/,
    );
  });

  test('the source and its credentials from a bundler binding: used, and nowhere in the log or image', async () => {
    const binding = path.join(scratch, 'bundler-binding');
    await mkdir(binding, { recursive: true });
    await writeFile(path.join(binding, 'type'), 'bundler');
    await writeFile(
      path.join(binding, 'config'),
      `---\nBUNDLE_MIRROR__ALL: "${server.url}"\nBUNDLE_127__0__0__1: "kiln:${SECRET}"\n`,
    );
    const app = path.join(scratch, 'bound');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'Gemfile'), 'source "https://rubygems.org"\ngem "colorword"\n');
    await writeFile(path.join(app, 'main.rb'), 'require "colorword"\nputs Colorword::WORD\n');
    // The app's own bundler settings would send bundler elsewhere; kiln/ruby's layer wins.
    await mkdir(path.join(app, '.bundle'));
    await writeFile(path.join(app, '.bundle', 'config'), '---\nBUNDLE_PATH: "vendor/bundle"\n');
    server.requests.length = 0;
    server.authorizations.length = 0;
    const res = await kilnOk([
      'build',
      `${IMAGE}-binding`,
      '--path',
      app,
      '--binding',
      `bundler=${binding}`,
      '--allow-host',
      `127.0.0.1:${server.port}`,
    ]);
    assert.ok(server.requests.includes('/gems/colorword-0.2.gem'), server.requests.join(' '));
    const basic = `Basic ${Buffer.from(`kiln:${SECRET}`).toString('base64')}`;
    assert.ok(server.authorizations.includes(basic), 'the binding credentials reached the source');
    assert.doesNotMatch(res.stdout + res.stderr, new RegExp(SECRET));
    const run = await podman.run(`oci:${store}:docker.io/library/${IMAGE}-binding:latest`);
    assert.equal(run.stdout, 'blue\n');
    for (const [p, text] of await imageFiles(`${IMAGE}-binding`)) {
      assert.ok(!text?.includes(SECRET), `${p} holds the credential`);
      assert.ok(!text?.includes(basic.slice(6)), `${p} holds the encoded credential`);
    }
  });

  test("an unknown gem fails with bundler's error and the failed step", async () => {
    const app = path.join(scratch, 'unknown');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'Gemfile'), 'source "https://rubygems.org"\ngem "no-such-gem", "1.0"\n');
    await writeFile(path.join(app, 'app.rb'), 'puts 1\n');
    const res = await kiln(withMirror(`${IMAGE}-unknown`, app));
    assert.notEqual(res.code, 0);
    const out = res.stdout + res.stderr;
    assert.match(out, /Could not find gem 'no-such-gem \(= 1\.0\)' in rubygems repository/);
    assert.match(out, /kiln\/ruby failed at step "bundle install": see bundler's error above/);
  });

  test('a gem with a native extension is compiled and loads on the run image; no headers shipped', async () => {
    const app = path.join(scratch, 'native');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'Gemfile'), 'source "https://rubygems.org"\ngem "nativeword", "1.0"\n');
    await writeFile(path.join(app, 'main.rb'), 'require "nativeword"\nputs Nativeword.word\n');
    const res = await kilnOk(withMirror(`${IMAGE}-native`, app));
    assert.match(res.stdout + res.stderr, /Installing nativeword 1\.0 with native extensions/);
    const run = await podman.run(`oci:${store}:docker.io/library/${IMAGE}-native:latest`);
    assert.equal(run.stdout, 'compiled\n', run.stderr);
    const paths = [...(await imageFiles(`${IMAGE}-native`)).keys()];
    assert.ok(
      paths.some((p) => /kiln_ruby\/gems\/.*nativeword\.so$/.test(p)),
      'the compiled extension',
    );
    assert.deepEqual(
      paths.filter((p) => /ruby-dev|\/ruby\.h$|kiln-mkmf/.test(p)),
      [],
      'no Ruby headers in the image',
    );
  });

  test('config.ru: rackup on the PORT given at run time, without a shell; bundle and gem executables start', async () => {
    const app = path.join(scratch, 'rack');
    await mkdir(app, { recursive: true });
    await writeFile(
      path.join(app, 'Gemfile'),
      'source "https://rubygems.org"\ngem "rack", "~> 2.2"\ngem "webrick", "~> 1.8"\n',
    );
    await writeFile(
      path.join(app, 'config.ru'),
      'run ->(env) { [200, { "content-type" => "text/plain" }, ["rack on #{env["SERVER_PORT"]} (Rack #{Rack.release})\\n"]] }\n',
    );
    const res = await kilnOk(['-v', ...withMirror(`${IMAGE}-rack`, app)]);
    const out = res.stdout + res.stderr;
    assert.match(out, /Installing rack 2\.2\.\d+/);
    assert.match(out, /web: rackup config\.ru on 0\.0\.0\.0 and \$PORT \(default 8080\)/);
    assert.match(out, /launch check: passed/);
    // serveAndGet sets PORT to a free port (not 8080): the app answers there.
    const port = await freePort();
    assert.notEqual(port, 8080);
    assert.match(
      await serveAndGet(podman, store, `${IMAGE}-rack`, port),
      new RegExp(`^rack on ${port} \\(Rack 2\\.2\\.\\d+\\)\\n$`),
    );
    // The Procfile idioms: `bundle exec rackup` (Debian's bundle script) and a bare gem executable.
    const ref = `oci:${store}:docker.io/library/${IMAGE}-rack:latest`;
    for (const cmd of [
      ['bundle', 'exec', 'rackup', '--version'],
      ['rackup', '--version'],
    ]) {
      const run = await podman.run(ref, cmd, { entrypoint: '/cnb/lifecycle/launcher' });
      assert.equal(run.code, 0, `${cmd.join(' ')}: ${run.stderr}`);
      assert.match(run.stdout, /Rack 1\.\d+ \(Release: 2\.2\.\d+\)/, cmd.join(' '));
    }
  });

  test('a Procfile `web: bundle exec ruby app.rb` runs on the shell-free run image', async () => {
    const app = path.join(scratch, 'procfile');
    await mkdir(app, { recursive: true });
    for (const f of ['Gemfile', 'Gemfile.lock', 'app.rb'])
      await cp(path.join(import.meta.dirname, '../../samples/ruby-app', f), path.join(app, f));
    await writeFile(path.join(app, 'Procfile'), 'web: bundle exec ruby app.rb\n');
    const res = await kilnOk(['-v', ...withMirror(`${IMAGE}-procfile`, app)]);
    const out = res.stdout + res.stderr;
    assert.match(out, /web \(default\): bundle exec ruby app\.rb/);
    assert.match(out, /launch check: passed/);
    assert.match(await serveAndGet(podman, store, `${IMAGE}-procfile`, await freePort()), ANSWER);
  });

  test('a mirror URL with credentials is refused in one line before any download', async () => {
    const res = await kiln([
      'build',
      `${IMAGE}-refused`,
      '--path',
      sample.dir,
      '--env',
      `BUNDLE_MIRROR__ALL=http://kiln:${SECRET}@127.0.0.1:${server.port}/`,
    ]);
    assert.notEqual(res.code, 0);
    const out = res.stdout + res.stderr;
    assert.match(
      out,
      /kiln\/ruby: BUNDLE_MIRROR__ALL must not carry credentials: put them in the config of a bundler binding/,
    );
  });
});
