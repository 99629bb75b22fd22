import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { appImage, runImage } from '../../test/helpers/cnb-images.ts';
import { exitCodeOf } from '../cli/exit-codes.ts';
import { parseLifecycleMetadata } from '../cnb/lifecycle-metadata.ts';
import type { Image } from '../oci/image.ts';
import { setConfig } from '../oci/mutate.ts';
import { validateImage } from '../oci/validate.ts';
import { rebase, repositoryOf } from './rebase.ts';

const RUN = 'registry.example.com/kiln/run';

async function built(opts: { rebasable?: boolean } = {}) {
  const v1 = await runImage({ patch: '1' });
  const app = await appImage({
    run: v1,
    runImageName: `${RUN}:bookworm`,
    runImageReference: `${RUN}@${await v1.digest()}`,
    mirrors: ['mirror.example.com/kiln/run:bookworm'],
    ...opts,
  });
  return { v1, app };
}

async function onto(
  app: Image,
  run: Image,
  over: { name?: string; explicit?: boolean; force?: boolean } = {},
) {
  return rebase({
    image: app,
    imageName: 'my-app',
    runImage: run,
    runImageName: over.name ?? `${RUN}:bookworm`,
    runImageReference: `${repositoryOf(over.name ?? RUN)}@${await run.digest()}`,
    explicitRunImage: over.explicit ?? false,
    force: over.force ?? false,
  });
}

describe('rebase()', () => {
  test('swaps the run image layers, keeps app layers byte for byte and rewrites the labels', async () => {
    const { v1, app } = await built();
    const v2 = await runImage({ patch: '2', layers: 3 });
    const r = await onto(app, v2);
    const out = r.image;
    await validateImage(out);
    const appManifest = await app.manifest();
    const outManifest = await out.manifest();
    const v1n = (await v1.manifest()).layers.length;
    // Layers: exactly v2's, then the app's own descriptors unchanged.
    assert.deepEqual(outManifest.layers, [...(await v2.manifest()).layers, ...appManifest.layers.slice(v1n)]);
    const outCfg = await out.configFile();
    assert.deepEqual(outCfg.rootfs.diff_ids, [
      ...(await v2.configFile()).rootfs.diff_ids,
      ...(await app.configFile()).rootfs.diff_ids.slice(v1n),
    ]);
    assert.deepEqual([r.removedBaseLayers, r.addedBaseLayers, r.appLayers], [2, 3, 4]);
    // The metadata label points at the new base.
    const md = parseLifecycleMetadata(outCfg.config!.Labels!['io.buildpacks.lifecycle.metadata']!);
    assert.equal(md.runImage.topLayer, (await v2.configFile()).rootfs.diff_ids.at(-1));
    assert.equal(md.runImage.reference, `${RUN}@${await v2.digest()}`);
    assert.equal(md.runImage.image, `${RUN}:bookworm`, 'name and mirrors kept for a routine patch');
    assert.deepEqual(md.runImage.mirrors, ['mirror.example.com/kiln/run:bookworm']);
    assert.deepEqual(
      md.app,
      parseLifecycleMetadata((await app.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!)
        .app,
    );
    // Base labels come from the new base; the app's own labels stay.
    assert.equal(outCfg.config!.Labels!['io.buildpacks.base.released'], 'patch-2');
    assert.equal(outCfg.config!.Labels!['com.example.team'], 'web');
    assert.equal(
      outCfg.config!.Labels!['io.buildpacks.build.metadata'],
      (await app.configFile()).config!.Labels!['io.buildpacks.build.metadata'],
    );
    // The rest of the config is the app's; history is the new base's plus the app's.
    assert.deepEqual(outCfg.config!.Entrypoint, ['/cnb/process/web']);
    assert.deepEqual(
      outCfg.history!.map((h) => h.created_by),
      [
        'run 2 layer 0',
        'run 2 layer 1',
        'run 2 layer 2',
        'kiln: node',
        'kiln: sbom',
        'kiln: app',
        'kiln: config',
      ],
    );
    // Rebasing back onto v1 gives the original image's layers again.
    const back = await onto(out, v1);
    assert.deepEqual((await back.image.manifest()).layers, appManifest.layers);
  });

  test("keeps the app's User onto a run image with another user, and back (as lifecycle does)", async () => {
    const { app } = await built();
    // Built on a run image whose user is the build user; the new one has a run user of its own.
    const onBuildUser = setConfig(app, { user: '1000:1000' });
    const withRunUser = setConfig(await runImage({ patch: '2' }), { user: '1001:1000' });
    const up = await onto(onBuildUser, withRunUser);
    assert.equal((await up.image.configFile()).config?.User, '1000:1000');
    assert.deepEqual(up.user, { kept: '1000:1000', runImage: '1001:1000' });
    // And an image built with the run user, rebased onto a run image with the build user.
    const onRunUser = setConfig(app, { user: '1001:1000' });
    const withBuildUser = setConfig(await runImage({ patch: '3' }), { user: '1000:1000' });
    const down = await onto(onRunUser, withBuildUser);
    assert.equal((await down.image.configFile()).config?.User, '1001:1000');
    assert.deepEqual(down.user, { kept: '1001:1000', runImage: '1000:1000' });
    await validateImage(down.image);
  });

  test("keeps the app's place (--workspace): its working dir and CNB_APP_DIR, whatever the run image says", async () => {
    const { app } = await built();
    const env = [
      'CNB_LAYERS_DIR=/layers',
      'CNB_APP_DIR=/srv/app',
      'PATH=/cnb/process:/cnb/lifecycle:/usr/bin',
    ];
    const atSrv = setConfig(app, { workingDir: '/srv/app', env });
    const run = setConfig(await runImage({ patch: '2' }), { workingDir: '/', env: ['PATH=/usr/bin'] });
    const cfg = (await (await onto(atSrv, run)).image.configFile()).config!;
    assert.equal(cfg.WorkingDir, '/srv/app');
    assert.deepEqual(cfg.Env, env);
  });

  test('is deterministic: the same inputs give the same digest', async () => {
    const { app } = await built();
    const v2 = await runImage({ patch: '2' });
    assert.equal(await (await onto(app, v2)).image.digest(), await (await onto(app, v2)).image.digest());
  });

  const refusals: Array<
    [string, () => Promise<{ run: Image; name?: string; explicit?: boolean; rebasable?: boolean }>, RegExp]
  > = [
    [
      'another architecture',
      async () => ({ run: await runImage({ patch: '2', arch: 'arm64' }) }),
      /the run image is linux\/arm64, the image is linux\/amd64/,
    ],
    [
      'another distribution',
      async () => ({ run: await runImage({ patch: '2', distro: { name: 'ubuntu', version: '24.04' } }) }),
      /distribution is ubuntu 24\.04, the image's is debian 12/,
    ],
    [
      'another base id',
      async () => ({ run: await runImage({ patch: '2', baseId: 'io.other.stack' }) }),
      /base id is io\.other\.stack/,
    ],
    [
      'an image marked not rebasable',
      async () => ({ run: await runImage({ patch: '2' }), rebasable: false }),
      /marked not rebasable/,
    ],
    [
      'another repository',
      async () => ({ run: await runImage({ patch: '2' }), name: 'other.example.com/run:1', explicit: true }),
      /run image other\.example\.com\/run is not the one the image was built on/,
    ],
  ];
  for (const [what, make, pattern] of refusals) {
    test(`refuses ${what} with a clear message; --force overrides`, async () => {
      const c = await make();
      const { app } = await built(c.rebasable === undefined ? {} : { rebasable: c.rebasable });
      const over = { ...(c.name ? { name: c.name } : {}), ...(c.explicit ? { explicit: true } : {}) };
      await assert.rejects(onto(app, c.run, over), (e: Error & { exitCode?: number }) => {
        assert.match(e.message, /^cannot rebase my-app: /);
        assert.match(e.message, pattern);
        assert.match(e.message, /--force/);
        assert.equal(exitCodeOf(e), 72);
        return true;
      });
      const forced = await onto(app, c.run, { ...over, force: true });
      assert.equal(forced.overridden.length, 1);
      await validateImage(forced.image);
    });
  }

  test('a different repository chosen with --force is recorded as the run image', async () => {
    const { app } = await built();
    const v2 = await runImage({ patch: '2' });
    const r = await onto(app, v2, { name: 'other.example.com/run:1', explicit: true, force: true });
    assert.equal(r.metadata.runImage.image, 'other.example.com/run:1');
    assert.equal(r.metadata.runImage.mirrors, undefined);
  });

  test('a mirror of the recorded run image is a routine patch', async () => {
    const { app } = await built();
    const v2 = await runImage({ patch: '2' });
    const r = await onto(app, v2, { name: 'mirror.example.com/kiln/run:bookworm', explicit: true });
    assert.equal(r.overridden.length, 0);
  });

  test('an image without CNB metadata cannot be rebased, even with --force', async () => {
    const v1 = await runImage({ patch: '1' });
    await assert.rejects(onto(v1, v1, { force: true }), /not a buildpacks app image/);
  });

  test('repositoryOf()', () => {
    assert.equal(repositoryOf('reg:5000/a/b:tag@sha256:abc'), 'reg:5000/a/b');
    assert.equal(repositoryOf('reg:5000/a/b'), 'reg:5000/a/b');
    assert.equal(repositoryOf('oci:/tmp/x:run'), 'oci:/tmp/x');
    assert.equal(repositoryOf('alpine'), repositoryOf('docker.io/library/alpine:3'));
  });
});
