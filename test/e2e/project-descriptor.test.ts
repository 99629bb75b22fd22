// project.toml through the CLI with the real default builder: a project.toml (descriptor 0.2) naming
// the builder, a build env var, excludes (gitignore syntax), a post group with a local buildpack
// made by `kiln buildpack new`, and project version -> io.buildpacks.project.metadata.
// An invalid descriptor is refused naming the key.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { ImageStore } from '../../src/store/store.ts';
import { copySample, KILN_HOME, kiln, kilnOk, prepareHome, storedImage } from './samples-harness.ts';

const IMAGE = `kiln-e2e-project-${randomBytes(4).toString('hex')}`;
let sample: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  await prepareHome();
  sample = await copySample('static-binary');
  execFileSync('sh', [path.join(sample.dir, 'build.sh')]);
});
after(async () => {
  const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  await store.remove(IMAGE).catch(() => {});
  await sample?.cleanup();
});

test('project.toml 0.2: builder, build env, excludes, a post group and the project metadata label', async () => {
  const bp = path.join(path.dirname(sample.dir), 'post-bp');
  await kilnOk(['buildpack', 'new', 'e2e/post', '--path', bp]);
  // The scaffold's build, plus a line that shows what the buildpack saw.
  const build = path.join(bp, 'bin', 'build');
  const script = await readFile(build, 'utf8');
  await writeFile(
    build,
    script.replace(
      /^set -euo pipefail$/m,
      'set -euo pipefail\necho "post: PROJECT_ENV=$(printenv PROJECT_ENV || echo unset) secret=$(test -e secret && echo present || echo absent)"',
    ),
  );
  await mkdir(path.join(sample.dir, 'secret'));
  await writeFile(path.join(sample.dir, 'secret', 'token'), 'do not ship\n');
  await writeFile(path.join(sample.dir, 'notes.md'), 'not shipped either\n');
  await writeFile(
    path.join(sample.dir, 'project.toml'),
    `[_]
schema-version = "0.2"
id = "io.kiln.e2e.project"
version = "4.5.6"

[io.buildpacks]
builder = "kiln/builders/bookworm"
exclude = ["secret/", "*.md"]

[[io.buildpacks.build.env]]
name = "PROJECT_ENV"
value = "from project.toml"

[[io.buildpacks.post.group]]
uri = "${bp}"
`,
  );
  // The cache goes with the sample's temp dir (the image name is new every run).
  const cache = path.join(path.dirname(sample.dir), 'cache');
  const r = await kilnOk(['build', IMAGE, '--path', sample.dir, '--cache-dir', cache]);
  const out = r.stdout + r.stderr;
  assert.match(out, /post: PROJECT_ENV=from project\.toml secret=absent/);
  assert.match(out, /kiln\/procfile\s+\S+\s*\n\s*e2e\/post\s+0\.0\.1/, 'the post group runs after the order');

  const image = await storedImage(IMAGE);
  const cfg = await image.configFile();
  assert.deepEqual(JSON.parse(cfg.config!.Labels!['io.buildpacks.project.metadata']!), {
    source: { type: 'project', version: { declared: '4.5.6' }, metadata: { url: '' } },
  });
  const md = parseLifecycleMetadata(cfg.config!.Labels![LIFECYCLE_METADATA_LABEL]!);
  const appLayer = (await image.layers())[cfg.rootfs.diff_ids.indexOf(md.app![0]!.sha as never)]!;
  const paths: string[] = [];
  for await (const e of readTar(await appLayer.uncompressed())) {
    paths.push(e.header.path.replace(/^\.?\//, '').replace(/\/$/, ''));
    for await (const _ of e.body) {
      // drain
    }
  }
  assert.ok(paths.includes('workspace/hello-server'), paths.join(' '));
  assert.ok(!paths.some((p) => p.includes('secret') || p.endsWith('.md')), paths.join(' '));
});

test('an invalid project.toml is refused naming the key, before any build work', async () => {
  await writeFile(
    path.join(sample.dir, 'project.toml'),
    '[_]\nschema-version = "0.2"\n\n[[io.buildpacks.build.env]]\nname = "NO_VALUE"\n',
  );
  const r = await kiln(['build', `${IMAGE}-bad`, '--path', sample.dir]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /project\.toml.*io\.buildpacks\.build\.env\[0\]\.value/);
  assert.equal(
    r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('ERROR')).length,
    1,
    r.stderr,
  );
});
