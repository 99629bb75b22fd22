// System buildpacks end to end: a builder made by kiln from a builder.toml with [system] pre/post
// groups carries /cnb/system.toml; a build runs the pre buildpack before the group and the post
// one after it (their output and the image's buildpack list say so); disableSystemBuildpacks
// (`--disable-system-buildpacks`) leaves them out; the images run.

import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readBuilderConfig } from '../../src/builder/builder-config.ts';
import { createBuilder } from '../../src/builder/builder-image.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type E2E, E2E_BUILDPACKS, makeE2E, podmanRunRetrying } from './build-fixture.ts';

let w: E2E;
let podman: Podman;
let builder: Image;

async function sysBuildpack(dir: string, id: string): Promise<void> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    `api = "0.10"\n[buildpack]\nid = "${id}"\nversion = "1.0.0"\n`,
  );
  await writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
  await writeFile(path.join(dir, 'bin', 'build'), `#!/usr/bin/env bash\necho "system buildpack ${id} ran"\n`);
  for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
}

before(async () => {
  w = await makeE2E();
  podman = await startPodman();
  await sysBuildpack(path.join(w.root, 'sys-pre'), 'sys/pre');
  await sysBuildpack(path.join(w.root, 'sys-post'), 'sys/post');
  const toml = path.join(w.root, 'system-builder.toml');
  await writeFile(
    toml,
    `[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'runtime')}"
[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'deps')}"
[[buildpacks]]
uri = "${path.join(E2E_BUILDPACKS, 'process')}"
[[buildpacks]]
uri = "${path.join(w.root, 'sys-pre')}"
[[buildpacks]]
uri = "${path.join(w.root, 'sys-post')}"
[[order]]
  [[order.group]]
  id = "e2e/runtime"
  [[order.group]]
  id = "e2e/deps"
  [[order.group]]
  id = "e2e/process"
[system]
  [system.pre]
  buildpacks = [{ id = "sys/pre" }]
  [system.post]
  buildpacks = [{ id = "sys/post", optional = true }]
[build]
image = "e2e/build"
[[run.images]]
image = "e2e/run"
`,
  );
  const buildImage = (await w.store.find('e2e/build'))!;
  builder = (
    await createBuilder(await readBuilderConfig(toml), {
      buildImage,
      store: w.store.blobs,
      kilnVersion: '0.1.0-e2e',
    })
  ).image;
});
after(async () => {
  await podman?.cleanup();
  await w?.cleanup();
});

async function groupOf(layout: string): Promise<string[]> {
  const img = await (await Layout.open(layout)).image('app');
  const label = (await img.configFile()).config?.Labels?.['io.buildpacks.build.metadata'] ?? '{}';
  return ((JSON.parse(label) as { buildpacks?: { id: string }[] }).buildpacks ?? []).map((b) => b.id);
}

async function runs(layout: string, expect: RegExp): Promise<void> {
  const r = await podmanRunRetrying(podman, `oci:${layout}:app`, [], { user: '1000:1000' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, expect);
}

describe('system buildpacks', () => {
  test('builder create writes [system] to /cnb/system.toml, resolved to versions', async () => {
    let text = '';
    for (const l of await builder.layers())
      for await (const e of readTar(await l.uncompressed()))
        if (e.header.path.replace(/^\.?\//, '') === 'cnb/system.toml')
          for await (const c of e.body) text += c.toString();
    assert.match(text, /\[\[system\.pre\.buildpacks\]\]\s*id = "sys\/pre"\s*version = "1\.0\.0"/);
    assert.match(
      text,
      /\[\[system\.post\.buildpacks\]\]\s*id = "sys\/post"\s*version = "1\.0\.0"\s*optional = true/,
    );
  });

  test('a build runs the pre system buildpack before the group and the post one after it', async () => {
    const app = await w.app('sys', 'system app');
    const out = path.join(w.root, 'out', 'sys');
    const b = await w.build(app, 'sys-app', {
      builder: { image: builder, name: 'system-builder' },
      dest: `oci:${out}:app`,
    });
    const log = b.log.lines.join('\n');
    const pre = log.indexOf('system buildpack sys/pre ran');
    const runtime = log.indexOf('runtime: installing hello');
    const post = log.indexOf('system buildpack sys/post ran');
    assert.ok(pre >= 0 && runtime > pre && post > runtime, log);
    assert.deepEqual(await groupOf(out), ['sys/pre', 'e2e/runtime', 'e2e/deps', 'e2e/process', 'sys/post']);
    await runs(out, /message=system app/);
  });

  test('disableSystemBuildpacks (--disable-system-buildpacks) leaves them out', async () => {
    const app = await w.app('nosys', 'no system app');
    const out = path.join(w.root, 'out', 'nosys');
    const b = await w.build(app, 'nosys-app', {
      builder: { image: builder, name: 'system-builder' },
      dest: `oci:${out}:app`,
      disableSystemBuildpacks: true,
    });
    assert.doesNotMatch(b.log.lines.join('\n'), /system buildpack/);
    assert.deepEqual(await groupOf(out), ['e2e/runtime', 'e2e/deps', 'e2e/process']);
    await runs(out, /message=no system app/);
  });

  test('a [system] buildpack the builder lacks is refused at builder create', async () => {
    const toml = path.join(w.root, 'bad-system.toml');
    await writeFile(
      toml,
      `[[buildpacks]]\nuri = "${path.join(E2E_BUILDPACKS, 'runtime')}"\n[[order]]\n  [[order.group]]\n  id = "e2e/runtime"\n[system.pre]\nbuildpacks = [{ id = "sys/missing" }]\n[build]\nimage = "e2e/build"\n[[run.images]]\nimage = "e2e/run"\n`,
    );
    const buildImage = (await w.store.find('e2e/build'))!;
    await assert.rejects(
      createBuilder(await readBuilderConfig(toml), { buildImage, store: w.store.blobs, kilnVersion: 'x' }),
      /system\.pre\.buildpacks\[0\]: buildpack sys\/missing is not in \[\[buildpacks\]\]/,
    );
  });
});
