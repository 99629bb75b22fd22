// What of the app reaches the image, and builders kiln cannot honour:
// - an app that is a real git checkout (commit, tag, a remote URL with credentials) plus other VCS
//   data and editor junk: buildpacks read .git during the build, but no layer of the image holds
//   any of it (every layer's tar entries listed); the commit is in io.buildpacks.project.metadata;
//   project.toml `include` naming .git exports it.
// - a builder made by `kiln builder create` from a builder.toml with [[extensions]] and
//   [[order-extensions]] carries them (/cnb/extensions, /cnb/order.toml) but fails detection with
//   one line naming them (22); --skip-extensions builds with a warning naming them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTar } from '../../src/layers/tar-reader.ts';
import { kiln, kilnOk, prepareHome, storedImage } from './samples-harness.ts';

let tmp: string;
let bp: string;

before(async () => {
  await prepareHome();
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-vcs-'));
  // A buildpack that reads the checkout's .git (as buildpacks reading the commit do).
  bp = path.join(tmp, 'reads-git');
  await mkdir(path.join(bp, 'bin'), { recursive: true });
  await writeFile(
    path.join(bp, 'buildpack.toml'),
    'api = "0.10"\n[buildpack]\nid = "test/reads-git"\nversion = "0.0.1"\n[[stacks]]\nid = "*"\n',
  );
  await writeFile(path.join(bp, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
  await writeFile(
    path.join(bp, 'bin', 'build'),
    '#!/usr/bin/env bash\nset -euo pipefail\necho "build sees HEAD: $(cat .git/HEAD)"\necho "build sees hg: $(cat .hg/requires)"\n',
  );
  for (const f of ['detect', 'build']) await chmod(path.join(bp, 'bin', f), 0o755);
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** gitCheckout makes a real checkout: two files, a commit, a tag, an origin with credentials. */
async function gitCheckout(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'src'), { recursive: true });
  await writeFile(path.join(dir, 'app.js'), 'console.log("hi")\n');
  await writeFile(path.join(dir, 'src', 'lib.js'), 'module.exports = 1\n');
  await writeFile(path.join(dir, '.gitignore'), 'node_modules/\n');
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
      cwd: dir,
      encoding: 'utf8',
    }).trim();
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'first');
  git('tag', 'v1.2.3');
  git('remote', 'add', 'origin', 'https://deploy:s3cr3t-token@git.example.com/acme/app.git');
  // Other VCS data and editor junk, at the top and deeper.
  await mkdir(path.join(dir, '.hg'));
  await writeFile(path.join(dir, '.hg', 'requires'), 'store\n');
  await mkdir(path.join(dir, 'vendor', 'lib', '.svn'), { recursive: true });
  await writeFile(path.join(dir, 'vendor', 'lib', '.svn', 'entries'), '12\n');
  await writeFile(path.join(dir, 'vendor', 'lib', 'x.js'), 'x\n');
  await writeFile(path.join(dir, '.app.js.swp'), 'swap\n');
  await mkdir(path.join(dir, '.idea'));
  await writeFile(path.join(dir, '.idea', 'dataSources.local.xml'), '<password/>\n');
  return git('rev-parse', 'HEAD');
}

/** layerPaths lists every tar entry of every layer of a stored image. */
async function layerPaths(image: string): Promise<string[]> {
  const out: string[] = [];
  for (const layer of await (await storedImage(image)).layers())
    for await (const e of readTar(await layer.uncompressed())) out.push(e.header.path.replace(/\/$/, ''));
  return out;
}

const VCS_OR_JUNK = /(^|\/)(\.git|\.hg|\.svn|\.idea|\.app\.js\.swp)(\/|$)/;

describe('no VCS data in images', () => {
  test('a git checkout: buildpacks read .git, no layer holds it, the commit is in the project metadata', async () => {
    const app = path.join(tmp, 'checkout');
    const commit = await gitCheckout(app);
    const image = 'kiln-e2e-vcs-checkout';
    const res = await kilnOk(['build', image, '--path', app, '--buildpack', bp]);
    const log = res.stdout + res.stderr;
    assert.match(log, /build sees HEAD: ref: refs\/heads\/main/);
    assert.match(log, /build sees hg: store/);
    const paths = await layerPaths(image);
    assert.ok(paths.includes('workspace/app.js'), 'the app is in the image');
    assert.ok(paths.includes('workspace/vendor/lib/x.js'));
    assert.ok(paths.includes('workspace/.gitignore'), 'VCS config files are app files');
    const leaked = paths.filter((p) => VCS_OR_JUNK.test(p));
    assert.deepEqual(leaked, [], 'no VCS data or editor junk in any layer');
    const labels = (await (await storedImage(image)).configFile()).config!.Labels!;
    const project = JSON.parse(labels['io.buildpacks.project.metadata']!) as {
      source: {
        type: string;
        version: { commit: string; describe: string };
        metadata: Record<string, unknown>;
      };
    };
    assert.equal(project.source.type, 'git');
    assert.equal(project.source.version.commit, commit);
    assert.equal(project.source.version.describe, 'v1.2.3');
    assert.deepEqual(project.source.metadata.refs, ['main', 'v1.2.3']);
    assert.equal(project.source.metadata.url, 'https://git.example.com/acme/app.git');
    assert.ok(!JSON.stringify(labels).includes('s3cr3t-token'));
  });

  test('project.toml include naming .git exports it (and nothing else it did not name)', async () => {
    const app = path.join(tmp, 'include-git');
    await gitCheckout(app);
    await writeFile(
      path.join(app, 'project.toml'),
      '[_]\nschema-version = "0.2"\n[io.buildpacks]\ninclude = [".git", ".hg", "app.js", "*.swp"]\n',
    );
    const image = 'kiln-e2e-vcs-include';
    await kilnOk(['build', image, '--path', app, '--buildpack', bp]);
    const paths = await layerPaths(image);
    assert.ok(paths.includes('workspace/.git/HEAD'), '.git is exported when named');
    assert.ok(paths.includes('workspace/.hg/requires'));
    assert.ok(paths.includes('workspace/app.js'));
    // `*.swp` is a wildcard, not a name: the swap file reaches the build, not the image.
    assert.ok(!paths.some((p) => p.endsWith('.app.js.swp')));
  });
});

describe('image extensions are refused, or skipped when asked', () => {
  const builderName = 'kiln-e2e-ext-builder';

  // The builder is made as a user makes one: builder.toml with [[extensions]] and [[order-extensions]].
  before(async () => {
    const dir = path.join(tmp, 'ext-builder');
    const exe = async (file: string, text: string) => {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text);
      await chmod(file, 0o755);
    };
    for (const id of ['curl', 'cowsay']) {
      const x = path.join(dir, id);
      await mkdir(x, { recursive: true });
      await writeFile(
        path.join(x, 'extension.toml'),
        `api = "0.10"\n[extension]\nid = "samples/${id}"\nversion = "0.0.1"\n`,
      );
      await exe(path.join(x, 'bin', 'detect'), '#!/bin/sh\nexit 0\n');
      await exe(
        path.join(x, 'bin', 'generate'),
        '#!/bin/sh\nprintf "FROM scratch\\n" > "$CNB_OUTPUT_DIR/run.Dockerfile"\n',
      );
    }
    const noop = path.join(dir, 'noop');
    await mkdir(noop, { recursive: true });
    await writeFile(
      path.join(noop, 'buildpack.toml'),
      'api = "0.10"\n[buildpack]\nid = "test/noop"\nversion = "0.0.1"\n[[stacks]]\nid = "*"\n',
    );
    await exe(path.join(noop, 'bin', 'detect'), '#!/bin/sh\nexit 0\n');
    await exe(path.join(noop, 'bin', 'build'), '#!/bin/sh\necho "noop buildpack ran"\n');
    await writeFile(
      path.join(dir, 'builder.toml'),
      `[[buildpacks]]
uri = "noop"

[[extensions]]
uri = "curl"

[[extensions]]
uri = "cowsay"

[[order]]
  [[order.group]]
  id = "test/noop"

[[order-extensions]]
  [[order-extensions.group]]
  id = "samples/curl"
  optional = true
  [[order-extensions.group]]
  id = "samples/cowsay"
  optional = true

[build]
image = "kiln/stacks/bookworm/build"

[[run.images]]
image = "kiln/stacks/bookworm/run"
`,
    );
    await kilnOk(['builder', 'create', builderName, '--config', path.join(dir, 'builder.toml')]);
    // What the builder carries, as a platform that runs extensions would find it.
    const paths = await layerPaths(builderName);
    assert.ok(paths.includes('cnb/extensions/samples_curl/0.0.1/bin/generate'));
    assert.ok(paths.includes('cnb/extensions/samples_cowsay/0.0.1/extension.toml'));
  });

  test('a builder with order-extensions fails detection with one line naming them (exit 22)', async () => {
    const app = path.join(tmp, 'ext-app');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'README'), 'any app\n');
    const res = await kiln(['build', 'kiln-e2e-ext-refused', '--path', app, '--builder', builderName]);
    assert.equal(res.code, 22, res.stdout + res.stderr);
    assert.match(
      res.stderr,
      /builder kiln-e2e-ext-builder has image extensions samples\/curl@0\.0\.1, samples\/cowsay@0\.0\.1 \(\[\[order-extensions\]\] in \/cnb\/order\.toml\): kiln does not run Dockerfile extensions; pass --skip-extensions/,
    );
    assert.equal((res.stderr.match(/ERROR/g) ?? []).length, 1, res.stderr);
    assert.doesNotMatch(res.stdout + res.stderr, /noop buildpack ran/);
  });

  test('--skip-extensions builds without them, with a warning naming them', async () => {
    const app = path.join(tmp, 'ext-app');
    const res = await kilnOk([
      'build',
      'kiln-e2e-ext-skipped',
      '--path',
      app,
      '--builder',
      builderName,
      '--skip-extensions',
    ]);
    const log = res.stdout + res.stderr;
    assert.match(
      log,
      /skipping image extensions samples\/curl@0\.0\.1, samples\/cowsay@0\.0\.1 .*--skip-extensions/,
    );
    assert.match(log, /noop buildpack ran/);
    await storedImage('kiln-e2e-ext-skipped');
  });
});
