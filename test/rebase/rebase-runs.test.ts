// A rebased image runs: a run image with a static program, rebased from patch 1 to patch 2 with
// `kiln rebase` on an OCI layout, then run with podman (as the image's user, 1000) — it prints the new base's
// file and the untouched app layer's file.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { runMain } from '../helpers/cli.ts';
import { tarLayer } from '../helpers/cnb-images.ts';
import { buildStaticCat, startPodman } from '../helpers/podman.ts';

let dir: string;
let kcat: Buffer;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-rebase-run-'));
  await buildStaticCat(path.join(dir, 'kcat'));
  kcat = await readFile(path.join(dir, 'kcat'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function run(patch: string): Promise<Image> {
  const layers = [await tarLayer({ 'bin/kcat': kcat }), await tarLayer({ 'etc/patch': `patch ${patch}\n` })];
  return imageFrom({
    config: {
      os: 'linux',
      architecture: 'amd64',
      config: {
        User: '1000:1000',
        Labels: {
          'io.buildpacks.base.distro.name': 'debian',
          'io.buildpacks.base.distro.version': '12',
          'io.buildpacks.base.id': 'io.kiln.test',
          'io.buildpacks.rebasable': 'true',
        },
      },
    },
    layers,
  });
}

test('kiln rebase output runs with podman on the new base, app layer intact', async () => {
  const layoutDir = path.join(dir, 'layout');
  const layout = await Layout.init(layoutDir);
  const v1 = await run('1');
  const v2 = await run('2');
  await layout.writeImage(v1, 'run-1');
  await layout.writeImage(v2, 'run-2');
  const appLayer = await tarLayer({ 'workspace/app.txt': 'hello from the app layer\n' });
  const v1cfg = await v1.configFile();
  const app = imageFrom({
    config: {
      os: 'linux',
      architecture: 'amd64',
      config: {
        User: '1000:1000',
        Entrypoint: ['/bin/kcat', '/etc/patch', '/workspace/app.txt'],
        Labels: {
          ...v1cfg.config!.Labels!,
          'io.buildpacks.lifecycle.metadata': JSON.stringify({
            app: [{ sha: await appLayer.diffID() }],
            runImage: {
              topLayer: v1cfg.rootfs.diff_ids.at(-1),
              reference: `oci:${layoutDir}@${await v1.digest()}`,
              image: `oci:${layoutDir}:run-1`,
            },
          }),
        },
      },
    },
    layers: [...(await v1.layers()), appLayer],
  });
  await layout.writeImage(app, 'app');
  const { code, err } = await runMain(
    ['rebase', `oci:${layoutDir}:app`, '--run-image', `oci:${layoutDir}:run-2`],
    {
      HOME: dir,
      KILN_HOME: path.join(dir, 'kiln'),
    },
  );
  assert.equal(code, 0, err);
  const podman = await startPodman();
  try {
    const r = await podman.run(`oci:${layoutDir}:app`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'patch 2\nhello from the app layer\n');
  } finally {
    await podman.cleanup();
  }
});
